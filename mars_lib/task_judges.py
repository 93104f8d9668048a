"""Which gold judge labels a task, and re-labelling a task with another judge.

Two gold judges exist (docs/design.md §5.3):

| name    | module            | id           | models its facets load                       |
|---------|-------------------|--------------|----------------------------------------------|
| `gold1` | `mars_lib.judge`  | gold-judge-1 | SmolLM2-135M (the policy), MiniLM (RM encoder) |
| `gold3` | `mars_lib.judge3` | gold-judge-3 | Gemma-3-270M, all-mpnet-base-v2 (neither is) |

A task folder's `manifest.json` names its judge (`"judge"`; a manifest without one is gold1's, as
task v2 was). Everywhere in the package the column and judge name **`gold` means the task's own
judge** — the annotator the reward models' labels come from; `gold1` / `gold3` name a judge
explicitly (a second opinion, e.g. in the i.i.d. Best-of-N set or on the DPO answers).

Re-label a task (same prompts and response texts, new judge; policy samples and the i.i.d. Best-of-N
set too, reusing any score the source already holds):

    python -m mars_lib.tasks relabel --source data/gold_task_v2 --judge gold3 --out data/gold_task_v3
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

JUDGES = {"gold1": "gold-judge-1", "gold3": "gold-judge-3"}
LABELS = {"gold": "the task's judge", "gold1": "gold-judge-1 (SmolLM2 + MiniLM)",
          "gold3": "the independent judge (gold-judge-3)"}
MODULES = {"gold1": "mars_lib.judge (gold-judge-1)", "gold3": "mars_lib.judge3 (gold-judge-3)"}


def label(name: str) -> str:
    """A reader's name for a judge column ("gold", "gold1", "gold3")."""
    return LABELS.get(name, name)


def make_judge(name: str, encoder=None, generator=None):
    """The judge `name` from the offline assets. gold1 may share the MiniLM `encoder` and a SmolLM2
    `generator` already in memory; gold3 loads its own models and ignores both."""
    if name == "gold3":
        from .judge3 import GoldJudge3
        return GoldJudge3.offline()
    if name == "gold1":
        from .judge import GoldJudge
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
        from .tasks import TaskError
        raise TaskError(f"{task_dir}: no manifest.json; not a task folder")
    return judge_name_of(json.loads(p.read_text()))


def task_judge(task_dir: str | Path, encoder=None, generator=None):
    """The judge that labelled the task in `task_dir` (its manifest says which)."""
    return make_judge(task_judge_name(task_dir), encoder=encoder, generator=generator)


def _strip_judged(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.startswith("facet_") or c == "gold"])


def relabel_task(source: Path, judge: str, out: Path) -> dict:
    """Write `out` as `source` re-labelled by `judge`: responses (+ policy samples, + the i.i.d.
    Best-of-N set) with that judge's facets and `gold`. Judged texts come from the judge's cache when
    already scored. Returns a cost record. The source must differ from `out`."""
    from . import bon_set
    from .io import repo_relative
    from .tasks import (TaskSpec, build_task_folder, judge_responses, load_policy_samples, load_responses,
                        write_policy_samples)
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; choose one of {sorted(JUDGES)}")
    if Path(source).resolve() == Path(out).resolve():
        raise ValueError("relabel writes a new task folder: --out must differ from --source")
    src = load_responses(source)
    man = src.attrs["manifest"]
    src_judge = judge_name_of(man)
    spec = TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in man["spec"].items()})
    jd = make_judge(judge)
    cost, t0 = {}, time.perf_counter()
    provenance = {"source": repo_relative(source), "source_judge": src_judge, "texts_sha256_of": "responses.parquet",
                  "source_responses_sha256": man["responses_sha256"], "source_regenerate": man.get("regenerate"),
                  "command": f"python -m mars_lib.tasks relabel --source {repo_relative(source)} --judge {judge} "
                             f"--out {repo_relative(out)}"}
    out.mkdir(parents=True, exist_ok=True)
    build_task_folder(spec, _strip_judged(src), out, judge_name=judge, judge=jd, generation=man.get("generation"),
                      relabelled_from=provenance)           # judges the texts (its manifest: judge_seconds)
    cost["responses_seconds"] = round(time.perf_counter() - t0, 1)
    if (Path(source) / "policy_samples.parquet").exists():
        t1 = time.perf_counter()
        ps = judge_responses(_strip_judged(load_policy_samples(source)), jd)
        meta = json.loads((Path(source) / "policy_samples.json").read_text())
        cmd = meta["regenerate"].replace(repo_relative(source), repo_relative(out))
        cmd = cmd if "--judge" in cmd else f"{cmd} --judge {judge}"
        write_policy_samples(ps, out, cmd, time.perf_counter() - t1, judge_name=judge)
        cost["policy_samples_seconds"] = round(time.perf_counter() - t1, 1)
    if (Path(source) / bon_set.FILE).exists():
        t1 = time.perf_counter()
        bon = bon_set.load_bon_set(source)
        scores = {j: bon[j].to_numpy() for j in JUDGES if j in bon}
        scores[src_judge] = bon["gold"].to_numpy()                        # columns by judge identity
        base = bon.drop(columns=["gold", *[j for j in JUDGES if j in bon]])
        if judge not in scores:
            scores[judge] = jd.score(base.prompt.tolist(), base.response.tolist(), base.finished.tolist())
        base["gold"] = scores.pop(judge)
        for j, v in scores.items():
            base[j] = v
        bmeta = json.loads((Path(source) / bon_set.MANIFEST).read_text())
        others = [j for j in JUDGES if j in base]
        cmd = bmeta["regenerate"].split(" --judges ")[0] + f" --judges {' '.join([judge, *others])} --out {repo_relative(out)}"
        bon_set.write_bon_set(base, out, cmd, {"relabelled_from": {
            "source": repo_relative(source) + "/" + bon_set.FILE, "source_sha256": bmeta["sha256"],
            "note": f"same draws; scores by judge identity: gold = {judge} (the task's judge), "
                    + ", ".join(f"{j} = {JUDGES[j]}" for j in others)}, "build_runs": bmeta.get("build_runs"),
            "seconds": round(time.perf_counter() - t1, 1)}, task_judge=judge)
    return cost
