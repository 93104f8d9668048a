"""Evaluation: every metric, interval and verdict, computed from saved tables.

  metrics             pairwise accuracy, ROC-AUC, SNR of reward gaps (as the authors define them)
  stats               every interval and p: paired differences over test prompts and seeds (one method)
  verdicts            held / not held / equivalent / inconclusive / identical; δ; Holm and BH
  claims              the claims table, read from notebook 03's saved tables (trains nothing)
  findings            each notebook's closing "What we found", written from its tables
  curvature           Bradley-Terry curvature / Fisher information of the linear head
  finetune_curvature  the same for fine-tuned transformers (Lanczos, Hutchinson)
  ood, rewardbench    LLMBar / MT-Bench human judgments; RewardBench sections and protocols
"""
