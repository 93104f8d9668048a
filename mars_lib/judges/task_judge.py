"""Which gold judge labels a task: its name in the task's manifest, and loading that judge.

Two gold judges exist (docs/design.md §5.3):

| name    | module            | id           | models its facets load                       |
|---------|-------------------|--------------|----------------------------------------------|
| `gold1` | `mars_lib.judges.gold1`  | gold-judge-1 | SmolLM2-135M (the policy), MiniLM (RM encoder) |
| `gold3` | `mars_lib.judges.gold3` | gold-judge-3 | Gemma-3-270M, all-mpnet-base-v2 (neither is) |

A task folder's `manifest.json` names its judge (`"judge"`; a manifest without one is gold1's, as
task v2 was). Everywhere in the package the column and judge name **`gold` means the task's own
judge** — the annotator the reward models' labels come from; `gold1` / `gold3` name a judge
explicitly (a second opinion, e.g. in the i.i.d. Best-of-N set or on the DPO answers).

Re-labelling a task folder with another judge: `mars_lib.data.relabel`.
"""
from __future__ import annotations

import json
from pathlib import Path

from mars_lib.judges.gold3 import GoldJudge3
from mars_lib.judges.gold1 import GoldJudge

JUDGES = {"gold1": "gold-judge-1", "gold3": "gold-judge-3"}
LABELS = {"gold": "the task's judge", "gold1": "gold-judge-1 (SmolLM2 + MiniLM)",
          "gold3": "the independent judge (gold-judge-3)"}
MODULES = {"gold1": "mars_lib.judges.gold1 (gold-judge-1)", "gold3": "mars_lib.judges.gold3 (gold-judge-3)"}


def label(name: str) -> str:
    """A reader's name for a judge column ("gold", "gold1", "gold3")."""
    return LABELS.get(name, name)


def make_judge(name: str, encoder=None, generator=None):
    """The judge `name` from the offline assets. gold1 may share the MiniLM `encoder` and a SmolLM2
    `generator` already in memory; gold3 loads its own models and ignores both."""
    if name == "gold3":
        return GoldJudge3.offline()
    if name == "gold1":
        return GoldJudge.offline(encoder=encoder, generator=generator)
    raise ValueError(f"unknown judge {name!r}; choose one of {sorted(JUDGES)}")


def judge_name_of(manifest: dict) -> str:
    """The task's judge from its manifest ("gold1" when the manifest predates the field)."""
    name = manifest.get("judge", "gold1")
    if name not in JUDGES:
        raise ValueError(f"task manifest names an unknown judge {name!r}; expected one of {sorted(JUDGES)}")
    return name


def task_judge_name(task_dir: str | Path) -> str:
    p = Path(task_dir) / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"{task_dir}: no manifest.json; not a task folder "
                                "(build one with: python -m mars_lib.data.gold_task build --out <folder>)")
    return judge_name_of(json.loads(p.read_text()))


def task_judge(task_dir: str | Path, encoder=None, generator=None):
    """The judge that labelled the task in `task_dir` (its manifest says which)."""
    return make_judge(task_judge_name(task_dir), encoder=encoder, generator=generator)
