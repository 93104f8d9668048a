"""Every notebook end to end with papermill on the smoke profile (minutes): tables and figures, a rerun
that skips, and no network call. The run is made once, in the background beside the rest of the suite (`background` below), and read by
every test here."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cache_seed
from conftest import REPO

pytestmark = pytest.mark.slow
BACKGROUND_MINUTES = 12         # its background job in the full suite on 2 cores, cache seeded: 695 s (tests/conftest.py starts the longest first)


# Every non-loopback socket refused, in the runner and in each kernel (a sitecustomize on PYTHONPATH);
# an attempt is logged to $MARS_NET_LOG.
GUARD = r'''
import os, socket
_log = os.environ["MARS_NET_LOG"]
def _local(addr):
    host = addr[0] if isinstance(addr, tuple) else addr
    return not isinstance(host, str) or host.startswith("127.") or host in ("localhost", "::1", "0.0.0.0", "")
def _deny(what):
    with open(_log, "a") as f:
        f.write(what + "\n")
    raise OSError("network disabled by the test: " + what)
_connect, _connect_ex, _gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def connect(self, addr):
    return _connect(self, addr) if self.family == socket.AF_UNIX or _local(addr) else _deny(f"connect {addr}")
def connect_ex(self, addr):
    return _connect_ex(self, addr) if self.family == socket.AF_UNIX or _local(addr) else _deny(f"connect_ex {addr}")
def getaddrinfo(host, *a, **k):
    return _gai(host, *a, **k) if _local((host,)) else _deny(f"getaddrinfo {host}")
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''

EXPECTED = {
    "01_margins": ["task_summary.csv", "judge_sanity.csv", "gold_gaps.csv", "reward_gaps.csv", "judge_human_agreement.csv"],
    "02_self_refinement": ["pool_stats.csv", "fidelity.csv", "fidelity_by_gap.csv", "refinement_summary.csv",
                           "refinement_fidelity.csv", "fidelity_by_operator.csv", "refinement_distances.csv"],
    "03_rm_training": ["history.csv", "summary.csv", "intervals.csv", "paired.csv", "per_pair_test.parquet",
                       "authors_protocol.csv", "summary_by_operator.csv", "history_human_track.csv",
                       "per_pair_human_track.parquet", "intervals_human_track.csv", "tau_sweep.csv", "tau_allocation.csv",
                       "when_mars_helps.csv", "when_mars_helps_runs.csv",
                       "ood_eval.csv", "ood_intervals.csv", "noise_ceiling.csv"],
    "04_curvature": ["curvature.csv", "tau_sweep.csv", "per_round.csv", "finetuned_hvp.csv", "base_gaps.csv"],
    "05_downstream": ["bon_curve.csv", "win_rates.csv", "win_rate_summary.csv", "dpo_win_rates.csv", "dpo_policy_stats.csv", "dpo_paired.csv"],
}


def _guarded_env(tmp) -> tuple[dict, object]:
    """The environment of an air-gapped user: the socket guard on, the HF offline variables *unset* (the
    package's own offline handling must keep the run off the network)."""
    guard = tmp / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=f"{guard}{os.pathsep}{env.get('PYTHONPATH', '')}", MARS_NET_LOG=str(log))
    return env, log


def background(tmp):
    """`./run_all.sh --profile smoke --force` into a fresh results folder, under the socket guard; started
    when collection ends and run beside the rest of the suite (tests/conftest.py), on one torch thread.
    Its cache starts from the committed seed of model outputs (tests/cache_seed.py)."""
    env, log = _guarded_env(tmp)
    cache = cache_seed.seeded_cache(tmp / "cache", "smoke")
    env["MARS_CACHE_DIR"] = str(cache)
    out = tmp / "results"
    cmd = [sys.executable, "-m", "mars_lib.pipeline.runner", "--profile", "smoke", "--force", "-p", "results_dir", str(out),
           "-p", "threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, env=env)
    return {"out": out, "cmd": cmd, "proc": proc, "env": env, "net_log": log, "seed_new_rows": cache_seed.finish(cache, "smoke")}


@pytest.fixture(scope="module")
def smoke_run(background_run):
    return background_run


def test_smoke_run_makes_no_network_call(smoke_run):
    assert smoke_run["proc"].returncode == 0, smoke_run["proc"].stderr[-3000:]
    log = smoke_run["net_log"]
    assert not log.exists(), f"network calls attempted:\n{log.read_text()[:2000]}"
    # the guard itself works: a non-loopback connection from the same interpreter setup is refused
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('203.0.113.1', 80), 1)"],
                           capture_output=True, text=True, env=smoke_run["env"], timeout=60)
    assert probe.returncode != 0 and "network disabled by the test" in probe.stderr


def test_smoke_profile_runs_every_notebook(smoke_run):
    out, proc = smoke_run["out"], smoke_run["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for nb, tables in EXPECTED.items():
        for t in tables:
            df = pd.read_parquet(out / nb / t) if t.endswith(".parquet") else pd.read_csv(out / nb / t)
            assert len(df) > 0, f"{nb}/{t} is empty"
            meta = json.loads((out / nb / (t.rsplit(".", 1)[0] + ".meta.json")).read_text())
            assert meta["config"]["profile"] == "smoke" and meta["environment"]["versions"]["torch"]
        assert list((out / "figures").glob(f"{nb[:2]}_*.png")), f"no figure from {nb}"
        assert (out / "executed" / f"{nb}.ipynb").exists()
    # a successful run prints no WARNING / ERROR line a user must read past, and its executed copies
    # are readable without running: figures inline, no widget warning
    log = proc.stdout + proc.stderr
    assert not [ln for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln or "Unable to parse" in ln], log[-3000:]
    for nb in EXPECTED:
        cells = json.loads((out / "executed" / f"{nb}.ipynb").read_text())["cells"]
        outputs = [o for c in cells for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb}: no inline figure"
        assert not any("TqdmWarning" in "".join(o.get("text", "")) for o in outputs), nb
    summary = pd.read_csv(out / "03_rm_training" / "summary.csv")
    from mars_lib.pipeline.config import RunConfig
    assert set(summary.strategy) == set(RunConfig.resolve("smoke").strategies)
    acc = summary[summary.metric == "accuracy"]["mean"]
    assert acc.between(0.0, 1.0).all()
    # the claims table has rows for the gold task and both offline human tracks, each with a verdict
    claims = pd.read_csv(out / "claims.csv")
    assert {"gold", "chitchat", "hh-rlhf"} <= set(claims.track)
    from mars_lib.evaluation.stats import VERDICTS
    assert set(claims.verdict) <= set(VERDICTS) and claims.verdict.notna().all()
    assert (claims.n_seeds >= 2).all()
    # the summary intervals are recomputed from the committed-style per-pair table
    from mars_lib.evaluation import claims as claims_mod
    per_pair = pd.read_parquet(out / "03_rm_training" / "per_pair_test.parquet")
    again_int = claims_mod.strategy_intervals(per_pair, n_boot=200)
    saved = pd.read_csv(out / "03_rm_training" / "intervals.csv")
    m = saved.merge(again_int, on=["strategy", "metric", "track", "rm"], suffixes=("", "_re"))
    assert len(m) == len(saved) and np.allclose(m["mean"], m["mean_re"], atol=1e-6)
    # the smoke run's key numbers match the committed smoke reference within the stated tolerances
    compare_with_smoke_reference(out, write=os.environ.get("MARS_WRITE_SMOKE_REFERENCE") == "1")


def test_smoke_rerun_with_unchanged_inputs_skips_every_notebook(smoke_run):
    assert smoke_run["proc"].returncode == 0, smoke_run["proc"].stderr[-3000:]
    again = [a for a in smoke_run["cmd"] if a != "--force"]
    proc2 = subprocess.run(again, cwd=REPO, capture_output=True, text=True, timeout=600, env=smoke_run["env"])
    assert proc2.returncode == 0 and proc2.stdout.count("up to date, skipped") == 5, proc2.stdout


SMOKE_REFERENCE = REPO / "tests" / "smoke_reference.csv"
# counts must match exactly; accuracies and allocation concentrations within 0.02 (a few test pairs of the
# smoke task: room for float differences between CPUs, not for a change in what the code computes)
TOL = {"pairs": 0.0, "n_test_pairs": 0.0, "accuracy": 0.02, "ess_over_n": 0.02}


def smoke_key_numbers(out) -> pd.DataFrame:
    """The smoke run's numbers a code change would move: task size, each strategy's test accuracy on the
    gold task, the τ sweep's allocation concentration, and the test-set size behind each claim."""
    rows = []
    task = pd.read_csv(out / "01_margins" / "task_summary.csv")
    rows += [("pairs", f"01 task {r.split}", r.pairs) for r in task.itertuples()]
    summ = pd.read_csv(out / "03_rm_training" / "summary.csv")
    rows += [("accuracy", f"03 {r.strategy}", r.mean) for r in summ[summ.metric == "accuracy"].itertuples()]
    tau = pd.read_csv(out / "03_rm_training" / "tau_sweep.csv")
    rows += [("ess_over_n", f"03 tau {r.track} {r.strategy} {r.tau:g}", r.ess_over_n) for r in tau.itertuples()]
    cl = pd.read_csv(out / "claims.csv")
    rows += [("n_test_pairs", f"claims {r.claim_id} {r.track} {r.rm}", r.n_test_pairs) for r in cl.itertuples()]
    return pd.DataFrame(rows, columns=["quantity", "key", "value"])


def compare_with_smoke_reference(out, write: bool = False) -> None:
    now = smoke_key_numbers(out)
    if write:
        now.assign(tolerance=now.quantity.map(TOL)).to_csv(SMOKE_REFERENCE, index=False)
    ref = pd.read_csv(SMOKE_REFERENCE)
    m = ref.merge(now, on=["quantity", "key"], how="outer", suffixes=("_ref", ""), indicator=True)
    assert (m._merge == "both").all(), m[m._merge != "both"][["quantity", "key", "_merge"]].to_string()
    off = m[(m.value - m.value_ref).abs() > m.tolerance + 1e-9]
    assert off.empty, "smoke numbers moved beyond tolerance (rerun with MARS_WRITE_SMOKE_REFERENCE=1 if " \
        "the change is intended):\n" + off[["key", "value_ref", "value", "tolerance"]].to_string()


def test_smoke_reference_comparison_can_fail(tmp_path):
    """The comparison above flags a moved number and a missing key (it is not a test that cannot fail)."""
    import pytest
    ref = pd.read_csv(SMOKE_REFERENCE)
    out = tmp_path / "r"
    for sub in ("01_margins", "03_rm_training"):
        (out / sub).mkdir(parents=True)
    task = ref[ref.quantity == "pairs"]
    pd.DataFrame({"split": task.key.str.split().str[-1], "pairs": task.value}).to_csv(
        out / "01_margins" / "task_summary.csv", index=False)
    acc = ref[ref.quantity == "accuracy"]
    pd.DataFrame({"strategy": acc.key.str.split().str[-1], "metric": "accuracy", "mean": acc.value + 0.05}).to_csv(
        out / "03_rm_training" / "summary.csv", index=False)
    tau = ref[ref.quantity == "ess_over_n"]
    parts = tau.key.str.split()
    pd.DataFrame({"track": parts.str[2], "strategy": parts.str[3], "tau": parts.str[4].astype(float),
                  "ess_over_n": tau.value}).to_csv(out / "03_rm_training" / "tau_sweep.csv", index=False)
    cl = ref[ref.quantity == "n_test_pairs"]
    p = cl.key.str.split()
    pd.DataFrame({"claim_id": p.str[1], "track": p.str[2], "rm": p.str[3], "n_test_pairs": cl.value}).to_csv(
        out / "claims.csv", index=False)
    with pytest.raises(AssertionError, match="moved beyond tolerance"):
        compare_with_smoke_reference(out)
