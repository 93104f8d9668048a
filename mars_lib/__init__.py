"""mars_lib: margin-aware augmentation of reward-model training data (MARS), and its baselines.

Start with `mars` (the whole method in one module) and `strategies` (every arm, one entry each).
The notebooks call the stage modules and only narrate.

The flow of a run: config -> context (setup: task, encoder, factories) -> operators / pools
(synthetic pairs) -> runs (strategy x seed through `mars.run_rounds`) -> checkpoints (save / load
RMs) -> stats / claims (intervals, verdicts) -> curvature / downstream / dpo_eval (later notebooks).

The method
  mars        q(Δ) of v1 and v2, integer budgets, the per-source draw, the rounds loop
  strategies  the strategy registry: name, label, colour, rule, needs, baselines (one entry per arm)
  baselines   the rules of the arms MARS is compared with (uniform, West-of-N, the controls)
  operators   the synthetic-pair operator registry (paraphrase, refined_paraphrase, resample)
  augment, paraphrase, refine, pools, labelers
              paraphrase pools and on-demand builds; WordNet / seq2seq paraphrases; v2's semantic
              refinement; pool builders cached by content; who labels generated pairs
Data and tasks
  data, hh, tracks, prompts   the pair schema and loaders; HH-RLHF; the real-human track registry; prompts
  tasks, task_judges, task_relabel  the offline gold-judge task; which judge labels it; re-labelling
Reward models
  features, reward_model, finetune  cached encoder features; BT loss and the head RM; fine-tuned RMs
  hf_rm, checkpoints          Hugging Face RM folders; saving and loading the runs' RMs
Judges and generation
  judge, judge3, judge_agreement   the gold judges (v1 SmolLM2-based; gold3 sharing no model with
                              policy or RMs) and their agreement with people
  generation, decoding, split_assets, assets  batched cached generation; offline assets and checksums
Evaluation
  metrics, stats, verdicts, claims   accuracy / AUC / SNR; every interval and p; δ, identical arms and
                              multiplicity (Holm, BH); the claims table, read from saved tables
  findings                    each notebook's closing "What we found", written from its tables
  curvature, finetune_curvature   BT curvature of the linear head; Lanczos / Hutchinson for fine-tuned RMs
  ood, rewardbench            LLMBar and MT-Bench human judgments; RewardBench sections and protocols
  downstream, bon_set, dpo, dpo_eval  Best-of-N; the i.i.d. Best-of-N set; DPO; notebook 05's DPO stage
Pipeline and output
  config, profiles, context, runs, runner   one RunConfig per run; profiles and presets; setup and
                              factories; strategy x seed runs; the papermill runner (./run_all.sh)
  results, io, memory         tables with provenance; atomic writes; freed heap back to the OS
  plotting, figure_registry, figures, figures_downstream, report   one style; every figure from saved
                              tables; the README's generated sections
  distributed                 data parallelism of the fine-tuning and DPO loops
  cli, __main__               `mars train|score|allocate|augment` on your own data
"""

__version__ = "0.1.0"
