"""mars_lib: margin-aware augmentation of reward-model training data (MARS), and its baselines.

Start with `mars` (the whole method in one module) and `strategies` (every arm, one entry each).
The notebooks call the stage functions and only narrate.

The method (this folder)
  mars         q(Δ) of v1 and v2, integer budgets, the per-source draw, the rounds loop
  strategies   the strategy registry: name, label, colour, rule, needs, baselines (one entry per arm)
  baselines    the rules of the arms MARS is compared with (uniform, West-of-N, the controls)
  api          score / allocate / augment / compare on DataFrames and Datasets (what the CLI calls)
  cli          `mars train|score|allocate|augment|compare` on your own data (`python -m mars_lib`)
The packages, by concern (each package's docstring lists its modules)
  data           the pair schema and loaders; HH-RLHF; the human tracks; the offline gold-judge task
  judges         the gold judges, which one labels a task, their agreement with people, labelers
  reward_models  the Bradley-Terry loss and head RM; fine-tuned RMs; Hugging Face folders; checkpoints
  synthetic      the operator registry (paraphrase, refined paraphrase, resample), pools, generation
  evaluation     metrics, one statistics module for every interval, verdicts, claims, curvature, OOD
  downstream     Best-of-N, the i.i.d. Best-of-N set, DPO (notebook 05)
  figures        every figure, drawn from saved tables alone
  pipeline       config and profiles, a run's setup, the arms, the papermill runner, tables, report

The flow of a run: pipeline.config -> pipeline.context (task, encoder, factories) -> synthetic
(operators, pools) -> pipeline.arms (strategy x seed through `mars.run_rounds`) -> reward_models.checkpoints
-> evaluation (stats, claims) -> evaluation.curvature / downstream (later notebooks) -> figures.
"""

__version__ = "0.1.0"
