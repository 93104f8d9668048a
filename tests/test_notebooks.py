"""Every notebook end to end with papermill on the smoke profile (minutes): tables and figures."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

EXPECTED = {
    "01_margins": ["task_summary.csv", "judge_sanity.csv", "gold_gaps.csv", "reward_gaps.csv", "judge_human_agreement.csv"],
    "02_self_refinement": ["pool_stats.csv", "fidelity.csv", "fidelity_by_gap.csv", "refinement_summary.csv",
                           "refinement_fidelity.csv", "fidelity_by_operator.csv", "refinement_distances.csv"],
    "03_rm_training": ["history.csv", "summary.csv", "intervals.csv", "paired.csv", "per_pair_test.parquet",
                       "authors_protocol.csv", "summary_by_operator.csv", "history_human_track.csv",
                       "per_pair_human_track.parquet", "intervals_human_track.csv", "tau_sweep.csv", "tau_allocation.csv",
                       "ood_eval.csv", "ood_intervals.csv", "noise_ceiling.csv"],
    "04_curvature": ["curvature.csv", "tau_sweep.csv", "per_round.csv", "finetuned_hvp.csv", "base_gaps.csv"],
    "05_downstream": ["bon_curve.csv", "win_rates.csv", "win_rate_summary.csv", "dpo_win_rates.csv", "dpo_policy_stats.csv"],
}


def test_smoke_profile_runs_every_notebook(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "mars_lib.runner", "--profile", "smoke", "--force", "-p", "results_dir", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
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
    assert not [ln for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln], log[-3000:]
    for nb in EXPECTED:
        cells = json.loads((out / "executed" / f"{nb}.ipynb").read_text())["cells"]
        outputs = [o for c in cells for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb}: no inline figure"
        assert not any("TqdmWarning" in "".join(o.get("text", "")) for o in outputs), nb
    summary = pd.read_csv(out / "03_rm_training" / "summary.csv")
    from mars_lib.config import STRATEGIES
    assert set(summary.strategy) == set(STRATEGIES)
    acc = summary[summary.metric == "accuracy"]["mean"]
    assert acc.between(0.0, 1.0).all()
    # the claims table has rows for the gold task and both offline human tracks, each with a verdict
    claims = pd.read_csv(out / "claims.csv")
    assert {"gold", "chitchat", "hh-rlhf"} <= set(claims.track)
    assert set(claims.verdict) <= {"held", "not held", "inconclusive"} and claims.verdict.notna().all()
    assert (claims.n_seeds >= 2).all()
    # the summary intervals are recomputed from the committed-style per-pair table
    from mars_lib import claims as claims_mod
    per_pair = pd.read_parquet(out / "03_rm_training" / "per_pair_test.parquet")
    again_int = claims_mod.strategy_intervals(per_pair, n_boot=200)
    saved = pd.read_csv(out / "03_rm_training" / "intervals.csv")
    m = saved.merge(again_int, on=["strategy", "metric", "track", "rm"], suffixes=("", "_re"))
    assert len(m) == len(saved) and np.allclose(m["mean"], m["mean_re"], atol=1e-6)
    # a second run with unchanged inputs skips every notebook
    again = [a for a in cmd if a != "--force"]
    proc2 = subprocess.run(again, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc2.returncode == 0 and proc2.stdout.count("up to date, skipped") == 5, proc2.stdout
