"""mars_lib: margin-aware augmentation of reward-model training data (MARS), and its baselines.

Modules (each small, named for what it holds):
  config      profiles (smoke / cpu / paper) as one validated dataclass per run
  assets      offline models and data inside installed packages; checksums; GGUF -> safetensors
  data        the preference-pair schema, loaders (HH-RLHF, JSONL/CSV/Parquet), validation
  generation  batched, cached text generation with the offline generator
  tasks       the offline gold-judge task: real prompts, sampled responses, gold judge, noisy labels
  features    frozen-encoder features of (prompt, response), cached by content
  reward_model  Bradley-Terry loss, linear/MLP head reward model, scoring
  finetune    fine-tuned reward model (AutoModelForSequenceClassification, full or LoRA), same interface
  selection   reward gaps, MARS allocation, integer budgets, strategies' selection rules
  augment     synthetic-pair operators (WordNet paraphrase; resample: close pairs among policy samples)
  labelers    who labels synthetic pairs: simulated gold annotator, the RM itself, an LLM judge
  tracks      real-human preference tracks (chitchat ratings offline; HH, UltraFeedback, PKU from the hub)
  training    the rounds loop: no-aug / uniform / West-of-N / MARS v1 / MARS v2
  curvature   Hessian / Fisher information of the BT loss for the linear head
  downstream  Best-of-N with each reward model, unbiased best-of-n estimator
  dpo         DPO of a LoRA policy on RM-labelled pairs (own loop; reference = adapters disabled)
  metrics     pairwise accuracy, ROC-AUC, SNR, bootstrap confidence intervals
  results     atomic tidy-table writing with config, seed and versions beside it
  plotting    one style, one colour per method; figures drawn from saved tables
  experiment  the stages the notebooks run (setup, pools, training all strategies, summaries)
  runner      executes the notebooks with papermill (./run_all.sh)
  cli         `python -m mars_lib train|score|allocate|augment` on your own data
  prompts, judge, io   real prompts; the gold judge; atomic writes
"""

__version__ = "0.1.0"
