"""mars_lib: margin-aware augmentation of reward-model training data (MARS), and its baselines.

Modules (each of one job; the notebooks call the stage modules and only narrate).

The flow of a run: config -> context (setup: task, encoder, factories) -> pools (synthetic pairs)
-> runs (strategy x seed, through training's rounds loop) -> checkpoints (save / load RMs) ->
metrics (summaries) -> finetune_curvature / downstream / rewardbench (later notebooks).

Modules:
  config      profiles (smoke / cpu / paper) as one validated dataclass per run
  assets      offline models and data inside installed packages; checksums; GGUF -> safetensors
  data        the preference-pair schema, loaders (HH-RLHF, JSONL/CSV/Parquet), validation
  generation  batched, cached text generation with the offline generator
  tasks       the offline gold-judge task: real prompts, sampled responses, gold judge, noisy labels
  features    frozen-encoder features of (prompt, response), cached by content
  reward_model  Bradley-Terry loss, the one RewardModel interface, the linear/MLP head reward model
  finetune    fine-tuned reward model (AutoModelForSequenceClassification, full or LoRA), same interface
  finetune_curvature  Lanczos / Hutchinson curvature of a fine-tuned RM by Hessian-vector products
  selection   reward gaps, MARS allocation, integer budgets, strategies' selection rules
  augment     synthetic-pair operators (WordNet paraphrase; resample: close pairs among policy samples)
  labelers    who labels synthetic pairs: simulated gold annotator, the RM itself, an LLM judge
  tracks      real-human preference tracks (chitchat ratings offline; HH, UltraFeedback, PKU from the hub)
  training    the rounds loop: no-aug / uniform / West-of-N / MARS v1 / MARS v2
  curvature   Hessian / Fisher information of the BT loss for the linear head
  downstream  Best-of-N (unbiased best-of-n estimator), notebook 05's Best-of-N pool and i.i.d. set
  dpo_eval    notebook 05's DPO stage: each RM labels pairs, a policy per RM, judged answers, paired comparisons
  dpo         DPO of a LoRA policy on RM-labelled pairs (own loop; reference = adapters disabled)
  distributed data parallelism of the finetune and dpo loops under accelerate launch / torchrun
  memory      release_memory(): freed heap back to the OS after encoding, generation, judging, each DPO policy
  metrics     pairwise accuracy, ROC-AUC, SNR, bootstrap confidence intervals, run summaries
  results     atomic tidy-table writing with config, seed and versions beside it
  plotting    one style, one colour per method; figures drawn from saved tables
  figures     every notebook figure as a function of the saved tables (`./run_all.sh --figures-only`);
              figures_downstream (notebook 05's), figure_registry (name -> function, tables read)
  ood         out-of-distribution evaluation offline: LLMBar subsets and MT-Bench human judgments
  judge3, judge_agreement  the gold judge sharing no model with policy or RMs (task v3's); judges vs people
  task_judges, task_relabel  which judge labels a task ("gold" = the task's own; gold1, gold3); re-labelling one
  split_assets  the second judge's models, shipped split over several registry packages
  context     a run's setup (task, cached encoder) and factories (policy, reward models, rewriter)
  pools       synthetic pools of every operator, cached by content; label fidelity of paraphrases
  runs        every strategy x seed under one budget and schedule; extra operators; human tracks
  checkpoints where reward models are saved and how notebooks 04 / 05 load them
  rewardbench RewardBench loading, section scores, both protocols
  runner      executes the notebooks with papermill (./run_all.sh)
  cli         `python -m mars_lib train|score|allocate|augment` on your own data
  prompts, judge, io   real prompts; the gold judge; atomic writes
"""

__version__ = "0.1.0"
