"""The i.i.d. Best-of-N set: n samples of one policy, one decoding configuration, per test prompt.

The task's own responses are one sample from each of four decoding arms, so "best of 4" there is a
choice among differently-decoded texts, not best-of-n of one policy: the unbiased estimator
(`downstream.bon_expected_gold`) and KL_bon = log n − (n − 1)/n assume n i.i.d. draws of one
policy. This set is what they assume: for the first `n_test_prompts` test prompts of the task (in
the task's prompt order), `n` samples of SmolLM2-135M-Instruct with one arm of `tasks.ARMS`
(default: "default", T = 1.0, top-p 0.95, repetition penalty 1.1, 80 new tokens), each judged by
both gold judges (`mars_lib.judges.task_judge`):
- `gold`  — the task's judge (the annotator the reward models' labels come from; gold-judge-3 in
  task v3, which shares no model with the policy or the reward models);
- the other judge under its own name (`gold1` in task v3: gold-judge-1, SmolLM2 + MiniLM).

Build (resumable: every generated batch and every judged chunk is committed to the caches in
`.cache/`, so a killed build restarts where it stopped; the table is written once, at the end):

    python -m mars_lib.downstream.bon_set --n 16 --n-test-prompts 160 --out data/gold_task_v3

The table (`bon_iid.parquet`, zstd) and its manifest (`bon_iid.json`: sha256, sizes, the
regenerate command, cost) go into the task folder; `load_bon_set` verifies the checksum.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import pandas as pd

from mars_lib.synthetic.generation import GenerationCache, Generator, Request
from mars_lib.pipeline.io import atomic_write_json, repo_relative, write_parquet
from mars_lib.data.prompts import collect_prompts, split_prompts
from mars_lib.data.gold_task import ARMS, DEFAULT_TASK_DIR, TaskError, TaskSpec
from mars_lib.pipeline.assets import cache_dir, set_offline
from mars_lib.judges.task_judge import JUDGES, make_judge, MODULES, task_judge_name

BON_SAMPLE_OFFSET = 2000       # sample index of these draws: never collides with task responses (0-3) or policy samples (1000+)
FILE, MANIFEST = "bon_iid.parquet", "bon_iid.json"
COLUMNS = ["prompt_id", "prompt", "split", "arm", "sample", "response", "finished", "n_tokens", "gold", "gold1", "gold3"]


def bon_requests(spec: TaskSpec, n: int, n_test_prompts: int, arm: str = "default") -> list[tuple[str, str, Request]]:
    """(prompt_id, prompt, request) for n draws of each of the first `n_test_prompts` test prompts."""
    if n < 2 or n_test_prompts < 1:
        raise ValueError(f"need n >= 2 samples and >= 1 prompt, got n={n}, n_test_prompts={n_test_prompts}")
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {sorted(ARMS)}")
    prompts = split_prompts(collect_prompts(spec.n_prompts, spec.seed), spec.split_fractions, spec.seed)
    test = prompts[prompts.split == "test"]
    if len(test) < n_test_prompts:
        raise ValueError(f"the task has {len(test)} test prompts; asked for {n_test_prompts}")
    test = test.head(n_test_prompts)
    return [(pid, text, Request(text, ARMS[arm], sample=BON_SAMPLE_OFFSET + s, seed=spec.seed))
            for pid, text in zip(test.prompt_id, test.prompt) for s in range(n)]


def build_bon_set(spec: TaskSpec, n: int, n_test_prompts: int, arm: str = "default", batch_size: int = 32,
                  judges: tuple[str, ...] = ("gold3", "gold1"), task_judge: str = "gold3") -> tuple[pd.DataFrame, dict]:
    """Generate (cached) and judge (cached) the set, judges in the given order. The task's judge
    (`task_judge`) writes column `gold`, any other its own name. Returns (table, cost record)."""
    if set(judges) - set(JUDGES) or not judges or task_judge not in judges:
        raise ValueError(f"judges must be among {sorted(JUDGES)} and include the task's judge {task_judge!r}, got {judges}")
    t0 = time.perf_counter()
    reqs = bon_requests(spec, n, n_test_prompts, arm)
    gen = Generator.smollm2(GenerationCache(cache_dir() / "generations.sqlite"), batch_size=batch_size)
    outs = gen.generate_with_info([r for *_, r in reqs], desc="Best-of-N i.i.d. samples")
    df = pd.DataFrame([{"prompt_id": pid, "prompt": text, "split": "test", "arm": arm, "sample": r.sample - BON_SAMPLE_OFFSET,
                        "response": t, "finished": f, "n_tokens": len(gen.tok(t, add_special_tokens=False).input_ids)}
                       for (pid, text, r), (t, f) in zip(reqs, outs)])
    st = gen.stats
    cost = {"generation_seconds": round(time.perf_counter() - t0, 1), "generated": st.generated, "new_tokens": st.new_tokens,
            "tokens_per_s": round(st.tokens_per_s, 1) if st.new_tokens else None, "finished_share": round(float(df.finished.mean()), 4)}
    args = (df.prompt.tolist(), df.response.tolist(), df.finished.tolist())
    for judge in judges:
        t1 = time.perf_counter()
        df["gold" if judge == task_judge else judge] = make_judge(judge, generator=gen).score(*args)
        cost[f"{judge}_seconds"] = round(time.perf_counter() - t1, 1)
    return df[[c for c in COLUMNS if c in df]], cost


def write_bon_set(df: pd.DataFrame, task_dir: Path, command: str, cost: dict, task_judge: str = "gold3") -> Path:
    sha = write_parquet(df, task_dir / FILE)
    atomic_write_json(task_dir / MANIFEST, {
        "sha256": sha, "n_rows": len(df), "n_prompts": int(df.prompt_id.nunique()),
        "samples_per_prompt": int(df.groupby("prompt_id").size().min()), "arm": str(df.arm.iloc[0]),
        "decoding": ARMS[str(df.arm.iloc[0])].__dict__,
        "judges": {c: MODULES[task_judge if c == "gold" else c] for c in ("gold", *MODULES) if c in df},
        "regenerate": command, **cost})
    return task_dir / FILE


def load_bon_set(task_dir: str | Path = DEFAULT_TASK_DIR) -> pd.DataFrame:
    """The committed i.i.d. Best-of-N set of a task folder, checksum-verified."""
    task_dir = Path(task_dir)
    p, meta = task_dir / FILE, task_dir / MANIFEST
    if not p.exists() or not meta.exists():
        raise TaskError(f"{task_dir}: no i.i.d. Best-of-N set ({FILE}). Build it with: python -m mars_lib.downstream.bon_set "
                        f"--n 16 --n-test-prompts 160 --out {task_dir}")
    if hashlib.sha256(p.read_bytes()).hexdigest() != json.loads(meta.read_text())["sha256"]:
        raise TaskError(f"{p}: checksum does not match {MANIFEST}; restore it from git or rebuild it")
    return pd.read_parquet(p)


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mars_lib.downstream.bon_set", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="i.i.d. samples per prompt (default: %(default)s)")
    ap.add_argument("--n-test-prompts", type=int, default=160, help="first test prompts of the task (default: %(default)s)")
    ap.add_argument("--arm", default="default", choices=sorted(ARMS), help="decoding arm (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=32, help="generation batch (default: %(default)s)")
    ap.add_argument("--n-prompts", type=int, default=TaskSpec.n_prompts, help="the task's prompt count (default: %(default)s)")
    ap.add_argument("--split-fractions", type=float, nargs=3, default=TaskSpec.split_fractions, metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judges", nargs="+", default=["gold3", "gold1"], choices=["gold3", "gold1"],
                    help="judges to score every draw with, in this order; the task's own judge (its manifest's) "
                         "writes column `gold` (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_TASK_DIR, help="task folder (default: %(default)s)")
    a = ap.parse_args(argv)
    set_offline()
    spec = TaskSpec(n_prompts=a.n_prompts, seed=a.seed, split_fractions=tuple(a.split_fractions))
    tj = task_judge_name(a.out)
    df, cost = build_bon_set(spec, a.n, a.n_test_prompts, a.arm, a.batch_size, tuple(a.judges), task_judge=tj)
    cmd = (f"python -m mars_lib.downstream.bon_set --n {a.n} --n-test-prompts {a.n_test_prompts} --arm {a.arm} --n-prompts {a.n_prompts} "
           f"--split-fractions {' '.join(str(f) for f in a.split_fractions)} --seed {a.seed} --judges {' '.join(a.judges)} "
           f"--out {repo_relative(a.out)}")
    write_bon_set(df, a.out, cmd, cost, task_judge=tj)
    print(f"[bon_set] {len(df)} samples ({df.prompt_id.nunique()} prompts) written to {a.out}")


if __name__ == "__main__":
    _cli()
