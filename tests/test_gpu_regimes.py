"""The GPU regimes script at tiny scale on CPU: two workers share the jobs, each (track, strategy,
seed) writes per-pair outcomes once (a rerun resumes), and the claims table reads them as the
fine-tuned regime."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mars_lib.evaluation import claims
from mars_lib.pipeline.config import REPO_ROOT, RunConfig

pytestmark = pytest.mark.slow
BACKGROUND_MINUTES = 2          # its background job, cold, in the full suite on 2 cores (tests/conftest.py starts the longest first)


def _bundle(root, n=24):
    from mars_lib.data.gold_task import load_task
    pairs = load_task(RunConfig().task_path, beta=1.0, label_seed=0).pairs
    train = pairs[pairs.split == "train"].head(n).reset_index(drop=True)
    test = pairs[pairs.split == "test"].head(n).reset_index(drop=True)
    pool = pd.concat([train.assign(pair_id=train.pair_id + f"-syn{k}", source_id=train.pair_id, origin="paraphrase")
                      for k in range(3)], ignore_index=True)
    for track in ("gold", "hh-rlhf"):
        d = root / track
        d.mkdir(parents=True)
        tr, te, po = train.copy(), test.copy(), pool.copy()
        if track != "gold":        # a human track has labels but no gold scores
            tr, te, po = (x.drop(columns=["gold_chosen", "gold_rejected", "label_correct"]) for x in (tr, te, po))
        tr.to_parquet(d / "base.parquet"), te.to_parquet(d / "test.parquet"), po.to_parquet(d / "pool.parquet")
    return root


def background(tmp):
    """The script's three runs (two workers; the same again, which must resume; the CPU form), beside the
    rest of the suite (tests/conftest.py). Only subprocesses: the DeBERTa stand-in is built in one."""
    bundle = _bundle(tmp / "bundle")
    build = ("import sys; sys.path.insert(0, 'tests'); import standins; from pathlib import Path; "
             "print(standins.deberta(Path(sys.argv[1])))")
    made = subprocess.run([sys.executable, "-c", build, str(tmp / "models")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    model = made.stdout.strip().splitlines()[-1]
    results = tmp / "results"
    out = results / "gpu_regimes" / "tiny"
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "gpu_regimes.py"), "run", "--bundle", str(bundle), "--model",
           model, "--device", "cpu", "--jobs", "2", "--seeds", "0", "1", "--rounds", "1", "--batch", "4",
           "--accum", "1", "--max-length", "64", "--tracks", "gold", "hh-rlhf",
           "--strategies", "none_matched", "uniform", "mars_v1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # the CPU form: seeded subsets of base and test pairs, test scored after the last round only
    small = results / "cpu_regimes" / "tiny"
    cmd_cpu = [c for c in cmd[:cmd.index("--out")]] + ["--out", str(small), "--n-base", "12", "--n-test", "10",
                                                       "--eval-last-only", "--jobs", "1", "--tracks", "gold",
                                                       "--strategies", "uniform", "mars_v1", "v1@50", "--tau-v1", "0.3"]
    proc_cpu = subprocess.run(cmd_cpu, capture_output=True, text=True, timeout=600)
    return {"results": results, "out": out, "small": small, "proc": proc, "again": again, "proc_cpu": proc_cpu}


def test_gpu_regimes_runs_shards_resumes_and_feeds_the_claims(background_run):
    results, out, small, proc = (background_run[k] for k in ("results", "out", "small", "proc"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    files = sorted(out.glob("*/per_pair_*.parquet"))
    assert len(files) == 2 * 3 * 2                            # tracks × strategies × seeds
    pp = pd.concat([pd.read_parquet(f) for f in files])
    assert set(pp.rm) == {"full"} and pp.groupby(["track", "strategy", "seed"]).size().eq(24).all()
    assert "gold_correct" in pp and pp[pp.track == "gold"].gold_correct.notna().all()
    again = background_run["again"]
    assert again.returncode == 0 and "accuracy" not in again.stdout      # every job done: nothing re-run
    # claims.write_claims merges them as the full:<model> regime beside notebook 03's head rows
    cfg = RunConfig.resolve("smoke", results_dir=str(results), n_boot=200)
    cfg.path("03_rm_training", "x")
    pp.assign(rm="head").to_parquet(results / "03_rm_training" / "per_pair_test.parquet")
    hist = pd.concat([pd.read_csv(f) for f in sorted(out.glob("*/history_*.csv"))]).drop(columns=["track", "rm"])
    hist.to_csv(results / "03_rm_training" / "history.csv", index=False)
    proc = background_run["proc_cpu"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    small_pp = pd.concat([pd.read_parquet(f) for f in sorted(small.glob("gold/per_pair_*.parquet"))])
    assert small_pp.groupby(["strategy", "seed"]).size().eq(10).all() and small_pp.pair_id.nunique() == 10
    assert set(small_pp.strategy) == {"uniform", "mars_v1", "mars_v1@50"}     # MARS v1 at τ = 50 beside τ = 0.3
    h = pd.concat([pd.read_csv(f) for f in sorted(small.glob("gold/history_*.csv"))])
    assert set(h[h.split == "test"]["round"]) == {1}                          # rounds = 1, no round-0 evaluation
    assert h[(h.metric == "n_train")].value.max() == 12 * 3                  # 12 base + B = 2 × 12 synthetic
    run = json.loads((small / "run.json").read_text())
    assert run["settings"]["n_base"] == 12 and "CPU cores" in run["hardware"]
    table = claims.write_claims(cfg)
    assert {"full:tiny"} <= set(table.rm) and {"gold", "hh-rlhf"} <= set(table[table.rm == "full:tiny"].track)
    assert set(table[table.rm == "full-cpu:tiny"].track) == {"gold"}
    # one round allocates from an untrained RM, so v1@50 trained mars_v1's data: reported once, said so
    cpu_rows = table[table.rm == "full-cpu:tiny"]
    assert "mars_v1@50>uniform" in set(cpu_rows.claim_id) or cpu_rows.method.str.contains("mars_v1@50 identical").any()
    assert np.isfinite(table.effect).all()
