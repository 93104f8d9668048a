"""Synthetic pairs: the operators MARS and uniform augmentation draw from, and the text generation behind them.

  operators   the operator registry (paraphrase, refined_paraphrase, resample): one entry per operator
  pools       pools of synthetic pairs per source pair, cached by content
  builders    the paraphrase construction (n × n combinations) and the resample construction
  paraphrase  offline WordNet paraphrases and the seq2seq paraphraser
  refine      MARS v2's semantic refinement of pairs whose responses are too similar
  generation  batched, cached generation with a causal LM (the policy); `decoding` is its sampling loop
"""
