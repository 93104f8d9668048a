"""The pipeline: one config per run, its setup, the arms it trains, and the tables it writes.

  config, profiles  `RunConfig` (one object per run, saved with its results); the profiles smoke / cpu / paper
  context           a run's setup: the task, the cached encoder, the policy, reward-model factories
  arms              every strategy × seed under one budget and schedule (through `mars.run_rounds`)
  margins           notebook 01's stages: the task, the gold judges, the first RM's gaps and MARS's allocation
  self_refinement   notebook 02's stages: synthetic pairs (paraphrase, resample, semantic refinement) and their label fidelity
  rm_training       notebook 03's stages: each trains or computes one part, saves its tables, returns them
  curvature_checks  notebook 04's stages: the BT loss's curvature under uniform and MARS weights, per head, τ and round
  downstream_stages notebook 05's stages: Best-of-N and DPO with each reward model, judged by the gold judge
  compare           `mars compare`: the user's arms × seeds × rounds, resumable, with paired verdicts
  helps_map         the when-MARS-helps map over label noise × τ × version × operator
  backbones         the head on a stronger frozen encoder (all-mpnet-base-v2) beside MiniLM, with the length baseline
  runner            runs the numbered notebooks with papermill (`./run_all.sh`)
  run_log           each notebook run's wall time and largest process, appended to <results_dir>/run_log.csv
  tables, io        result tables with provenance (config, commit, versions); atomic writes
  report            the generated results in docs/results.md and the README's glance
  assets, split_assets  the offline models and data shipped in registry packages, with checksums
  memory            freed heap back to the operating system after a heavy stage
"""
