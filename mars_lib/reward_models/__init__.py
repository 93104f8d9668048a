"""Reward models: the Bradley-Terry loss, the head on frozen features, the fine-tuned transformer.

  head         the Bradley-Terry loss and the linear / MLP head on frozen encoder features
  features     frozen-encoder features of texts, cached by content
  finetune     the fine-tuned reward model (full or LoRA), a Hugging Face sequence classifier
  packing      packed (padding-free) training forwards of a BERT-family classifier
  hf_folder    any local Hugging Face reward-model folder used as a MARS reward model
  checkpoints  saving and loading the runs' reward models (notebook 03 saves, 04 and 05 load)
  distributed  data parallelism of the package's training loops (fine-tuning, DPO)
"""
