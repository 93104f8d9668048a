"""A notebook run killed with SIGKILL mid-training resumes with ./run_all.sh to the same tables as an
uninterrupted run. (That an offline run makes no network call is tested on the whole smoke run:
tests/test_notebooks.py.)"""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import cache_seed
from conftest import REPO

pytestmark = pytest.mark.slow
BACKGROUND_MINUTES = 4          # its background job, cold, in the full suite on 2 cores (tests/conftest.py starts the longest first)


def _runner(out, *extra):
    return [sys.executable, "-m", "mars_lib.pipeline.runner", "--profile", "smoke", "--only", "03", "-p", "results_dir", str(out),
            "-p", "extra_operators", "[]", "-p", "human_track", "off", "-p", "human_eval_max_pairs", "20", "-p", "threads", "1", *extra]


def background(tmp):
    """An uninterrupted run (a); a run (b) killed with SIGKILL once training starts; b resumed without
    --force. Beside the rest of the suite (tests/conftest.py): only subprocesses."""
    a, b = tmp / "a", tmp / "b"
    env = {**os.environ, "MARS_CACHE_DIR": str(cache_seed.seeded_cache(tmp / "cache", "smoke"))}   # smoke's seed
    first = subprocess.run(_runner(a, "--force"), cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    p = subprocess.Popen(_runner(b, "--force"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and not (b / "03_rm_training" / "synthetic_accounting.csv").exists():
        time.sleep(0.05)                                 # the pool is built: training starts next
    time.sleep(0.5)                                      # (the smoke training itself takes only seconds)
    alive = p.poll() is None
    os.killpg(p.pid, signal.SIGKILL)                     # the runner and its kernel
    p.wait()
    killed_early = not (b / "03_rm_training" / "summary.csv").exists()
    resumed = subprocess.run(_runner(b), cwd=REPO, capture_output=True, text=True, timeout=900, env=env)   # no --force
    return {"a": a, "b": b, "first": first, "alive": alive, "killed_early": killed_early, "resumed": resumed}


def test_notebook_killed_mid_training_resumes_to_the_uninterrupted_tables(background_run):
    r, a, b = background_run["first"], background_run["a"], background_run["b"]
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert background_run["alive"], "the run finished before it could be killed"
    assert background_run["killed_early"]
    r = background_run["resumed"]
    assert r.returncode == 0 and "up to date, skipped" not in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    for t in ("history.csv", "summary.csv", "allocations_seed0.csv", "intervals.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a / "03_rm_training" / t), pd.read_csv(b / "03_rm_training" / t))
    pd.testing.assert_frame_equal(pd.read_parquet(a / "03_rm_training" / "per_pair_test.parquet"),
                                  pd.read_parquet(b / "03_rm_training" / "per_pair_test.parquet"))
