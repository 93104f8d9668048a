"""Judges: who decides which response is better, when no person is asked.

  gold1       the first gold judge of the offline task (SmolLM2-based)
  gold3       "gold-judge-3", which shares no model with the policy or the reward models (the task's judge)
  task_judge  which gold judge labels a task, by the name in its manifest
  agreement   how often each gold judge agrees with people (LLMBar, MT-Bench human judgments)
  labelers    labelers of synthetic pairs (gold judge, a reward model: RLAIF)
"""
