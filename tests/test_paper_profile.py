"""The paper profile end to end (issue 7): `./run_all.sh --profile paper` with every hub model and
data set replaced by a tiny local stand-in in the hub's format (tests/standins.py), on CPU in fp32 and
with tiny sizes. Only identifiers, device, precision and sizes are overridden; every other value is
the paper profile's (DeBERTa-architecture RM fully fine-tuned, MPNet encoder, T5 paraphraser with the
prompt paraphrased, Llama policy and rewriter, HH-RLHF track, RewardBench, DPO, fine-tuned HVPs).
The hub stays disabled (`-p offline True`, HF_*_OFFLINE=1): a step that reached for it would fail here."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import cache_seed
from conftest import REPO

pytestmark = pytest.mark.slow
BACKGROUND_MINUTES = 8          # its background job in the full suite on 2 cores, cache seeded: 468 s (tests/conftest.py starts the longest first)

EXPECTED = {
    "01_margins": ["task_summary.csv", "reward_gaps.csv", "human_track_summary.csv"],
    "02_self_refinement": ["pool_stats.csv", "fidelity.csv", "refinement_summary.csv"],
    "03_rm_training": ["history.csv", "summary.csv", "authors_protocol.csv", "history_human_track.csv",
                       "authors_protocol_human_track.csv", "rewardbench.csv", "rewardbench_authors.csv",
                       "rewardbench_summary.csv", "models.csv"],
    "04_curvature": ["curvature.csv", "finetuned_hvp.csv", "finetuned_sigma_prime.csv"],
    "05_downstream": ["bon_curve.csv", "win_rates.csv", "dpo_win_rates.csv", "dpo_policy_stats.csv", "dpo_paired.csv"],
}


def background(tmp):
    """The stand-ins, the dry run and the run; started when collection ends and run beside the rest of the
    suite (tests/conftest.py), on one torch thread. Only subprocesses: the stand-ins are built in one."""
    root = tmp / "standins"
    build = ("import json, sys; sys.path.insert(0, 'tests'); import standins; from pathlib import Path; r = Path(sys.argv[1]); "
             "print(json.dumps({k: str(getattr(standins, k)(r)) for k in ('llama', 'mpnet', 'deberta', 't5', 'hh_rlhf', 'reward_bench')}))")
    made = subprocess.run([sys.executable, "-c", build, str(root)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    sp = json.loads(made.stdout.strip().splitlines()[-1])
    params = {
        # identifiers: the hub ids of the paper profile -> local stand-ins in the same formats
        "encoder": sp["mpnet"], "rm_model": sp["deberta"], "paraphraser": sp["t5"],
        "policy_model": sp["llama"], "refine_model": sp["llama"], "human_track_path": sp["hh_rlhf"],
        "rewardbench": sp["reward_bench"],
        # a CPU and a few minutes
        "device": "cpu", "precision": "fp32", "threads": 1, "results_dir": tmp / "results",
        "offline": True,         # the paper profile air-gapped on local copies: no hub look-up is even attempted
        "n_prompts": 12, "n_base": 12, "seeds": [0], "rounds": 1, "max_length": 64, "batch_size": 4, "grad_accum": 2,
        "n_paraphrases": 2, "human_max_pairs": 12, "human_eval_max_pairs": 8, "refine_max_pairs": 2,
        "refine_attempts": 1, "fidelity_sources": 4, "dpo_train_prompts": 3, "dpo_eval_prompts": 2,
        "dpo_strategies": ["none", "mars_v1"], "bon_iid_prompts": 4, "hvp_pairs": 4, "lanczos_iters": 3, "hutchinson_samples": 3,
        "n_boot": 50,
    }
    cmd = [sys.executable, "-m", "mars_lib.pipeline.runner", "--profile", "paper", "--force"]
    for k, v in params.items():
        cmd += ["-p", k, repr(v) if isinstance(v, (list, int, float)) else str(v)]
    cache = cache_seed.seeded_cache(tmp / "cache", "paper")     # the committed seed of model outputs
    env = {**os.environ, "MARS_CACHE_DIR": str(cache)}
    dry = subprocess.run(cmd + ["--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=2400, env=env)
    return {"params": params, "dry": dry, "proc": proc, "out": tmp / "results", "seed_new_rows": cache_seed.finish(cache, "paper", ("judge3.sqlite",))}


def test_paper_profile_runs_every_notebook_on_standins(background_run):
    params, dry, proc = background_run["params"], background_run["dry"], background_run["proc"]
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    out = background_run["out"]
    for nb, tables in EXPECTED.items():
        for t in tables:
            df = pd.read_csv(out / nb / t)
            assert len(df) > 0, f"{nb}/{t} is empty"
        cfg = json.loads((out / nb / "config.json").read_text())
        assert cfg["profile"] == "paper" and cfg["encoder"] == str(params["encoder"])
    cfg3 = json.loads((out / "03_rm_training" / "config.json").read_text())
    # the paper profile's own values, untouched by the overrides
    assert cfg3["rm"] == "full" and cfg3["human_track"] == ["hh-rlhf"] and cfg3["paraphrase_prompt"] is True
    assert cfg3["ft_lr"] == 2e-5 and cfg3["rm_model"] == str(params["rm_model"]) and cfg3["offline"] is True
    # fine-tuned RMs were saved whole and reloaded by notebooks 04 and 05
    models = pd.read_csv(out / "03_rm_training" / "models.csv")
    assert all((out.parent / p / "mars_finetune.json").exists() for p in models.path)
    hvp = pd.read_csv(out / "04_curvature" / "finetuned_hvp.csv")
    assert set(hvp.rm) == set(models.strategy) and hvp.value.notna().all()
    # RewardBench: four sections + Core per RM, trained on the HH track; the authors' two subsamples
    rb = pd.read_csv(out / "03_rm_training" / "rewardbench.csv")
    assert set(rb.section) == {"Chat", "Chat Hard", "Safety", "Reasoning", "Core"}
    assert (rb.trained_on == "hh-rlhf").all() and rb.value.between(0, 1).all()
    auth = pd.read_csv(out / "03_rm_training" / "rewardbench_authors.csv")
    assert (auth.seeds == 2).all()
    # DPO ran with the Llama stand-in policy
    stats = pd.read_csv(out / "05_downstream" / "dpo_policy_stats.csv")
    assert set(stats.policy) == {"base", "none_seed0", "mars_v1_seed0"}
