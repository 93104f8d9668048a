"""Data: the preference-pair schema and every source of pairs.

  pairs      the pair schema (prompt, chosen, rejected, ...), loaders for CSV / JSON Lines / Parquet, validation
  hh         HH-RLHF harmless-base: the committed copy and its fixed split by dialogue
  tracks     the real-human track registry (gold, chitchat, hh-rlhf and the hub tracks)
  prompts    real prompts for the offline task (MT-Bench questions, chit-chat messages)
  gold_task  the offline gold-judge task: prompts, sampled responses, gold and noisy labels
  relabel    re-labelling a task folder with another gold judge
"""
