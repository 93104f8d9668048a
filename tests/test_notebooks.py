"""Every notebook end to end with papermill on the smoke profile (minutes): tables and figures."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

EXPECTED = {
    "01_margins": ["task_summary.csv", "judge_sanity.csv", "gold_gaps.csv", "reward_gaps.csv"],
    "02_self_refinement": ["pool_stats.csv", "fidelity.csv", "fidelity_by_gap.csv", "refinement_summary.csv",
                           "refinement_fidelity.csv", "fidelity_by_operator.csv"],
    "03_rm_training": ["history.csv", "summary.csv", "paired.csv", "test_reward_gaps.csv", "authors_protocol.csv",
                       "summary_by_operator.csv"],
    "04_curvature": ["curvature.csv", "tau_sweep.csv", "per_round.csv", "finetuned_hvp.csv"],
    "05_downstream": ["bon_curve.csv", "win_rates.csv", "win_rate_summary.csv", "dpo_win_rates.csv", "dpo_policy_stats.csv"],
}


def test_smoke_profile_runs_every_notebook(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "mars_lib.runner", "--profile", "smoke", "--force", "-p", "results_dir", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for nb, tables in EXPECTED.items():
        for t in tables:
            df = pd.read_csv(out / nb / t)
            assert len(df) > 0, f"{nb}/{t} is empty"
            meta = json.loads((out / nb / t.replace(".csv", ".meta.json")).read_text())
            assert meta["config"]["profile"] == "smoke" and meta["environment"]["versions"]["torch"]
        assert list((out / "figures").glob(f"{nb[:2]}_*.png")), f"no figure from {nb}"
        assert (out / "executed" / f"{nb}.ipynb").exists()
    summary = pd.read_csv(out / "03_rm_training" / "summary.csv")
    assert set(summary.strategy) == {"none", "uniform", "won", "won_pace", "mars_v1", "mars_v2"}
    acc = summary[summary.metric == "accuracy"]["mean"]
    assert acc.between(0.0, 1.0).all()
    # a second run with unchanged inputs skips every notebook
    again = [a for a in cmd if a != "--force"]
    proc2 = subprocess.run(again, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc2.returncode == 0 and proc2.stdout.count("up to date, skipped") == 5, proc2.stdout
