"""Re-label a task folder with another gold judge (`mars_lib.judges.task_judge`): the same prompts and
response texts, that judge's facets and `gold`; the policy samples too, and the i.i.d. Best-of-N set,
whose scores are mapped by judge identity (a score the source already holds is reused, not re-judged).

    python -m mars_lib.data.relabel --source data/gold_task_v2 --judge gold3 --out data/gold_task_v3

Task v3 was made this way from task v2 (v2 is in git history). Judged texts come from the judge's
cache when already scored, so a killed run resumes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from mars_lib.downstream import bon_set
from mars_lib.pipeline.io import repo_relative
from mars_lib.judges.task_judge import JUDGES, judge_name_of, make_judge
from mars_lib.data.gold_task import TaskSpec, build_task_folder, judge_responses, load_policy_samples, load_responses, write_policy_samples
from mars_lib.pipeline.assets import set_offline


def _strip_judged(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.startswith("facet_") or c == "gold"])


def relabel_task(source: Path, judge: str, out: Path) -> dict:
    """Write `out` as `source` re-labelled by `judge`: responses (+ policy samples, + the i.i.d.
    Best-of-N set) with that judge's facets and `gold`. Judged texts come from the judge's cache when
    already scored. Returns a cost record. The source must differ from `out`."""
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
                  "command": f"python -m mars_lib.data.relabel --source {repo_relative(source)} --judge {judge} "
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


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mars_lib.data.relabel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="the task folder to re-label")
    ap.add_argument("--judge", choices=sorted(JUDGES), default="gold3", help="the new judge (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="the new task folder (must differ from --source)")
    a = ap.parse_args(argv)
    set_offline()
    cost = relabel_task(a.source, a.judge, a.out)
    print(f"[task_relabel] {a.source} re-labelled by {a.judge} into {a.out}: {cost}")


if __name__ == "__main__":
    _cli()
