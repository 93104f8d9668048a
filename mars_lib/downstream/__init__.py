"""Downstream use of the reward models (notebook 05).

  best_of_n  Best-of-N selection against the gold judge, and win rates
  bon_set    the i.i.d. Best-of-N set: n policy samples per test prompt, judged
  dpo        Direct Preference Optimization of a causal-LM policy on RM-labelled pairs
  dpo_stage  notebook 05's DPO stage: each reward model labels the same policy samples, DPO, judged win rates
"""
