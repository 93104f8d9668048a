"""`mars compare` and the Python API: real task pairs, MiniLM features, the rounds loop of notebook 03."""
import json

import pandas as pd
import pytest
from datasets import Dataset

from mars_lib import api
from mars_lib.cli import main
from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task
from mars_lib.data.pairs import DataError, to_trl_jsonl
from mars_lib.pipeline import compare as comparison

ARGS = ["--strategies", "none_matched", "uniform", "mars_v1", "--seeds", "0", "1", "--rounds", "2", "--budget", "40",
        "--n-boot", "200"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    task = load_task(DEFAULT_TASK_DIR, n_prompts=8)
    d = tmp_path_factory.mktemp("compare")
    train, test = task.split("train"), task.split("test")
    to_trl_jsonl(train, d / "train.jsonl")
    to_trl_jsonl(test, d / "test.jsonl")
    return d / "train.jsonl", d / "test.jsonl", train, test


@pytest.fixture(scope="module")
def ran(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    assert main(["compare", "--pairs", str(files[0]), "--test", str(files[1]), "--out", str(out), *ARGS]) == 0
    return out


def test_compare_writes_paired_verdicts_concentration_and_time(ran, capsys):
    claims = pd.read_csv(ran / "claims.csv")
    acc = claims[claims.metric == "accuracy"].set_index("claim_id")
    assert {"mars_v1>uniform", "mars_v1>none_matched"} <= set(acc.index)
    assert acc.verdict.isin(["held", "not held", "equivalent", "inconclusive", "identical"]).all()
    assert {"effect", "lo", "hi", "p_adj", "mde", "n_seeds"} <= set(claims)
    assert (acc.n_seeds == 2).all() and (acc.lo <= acc.effect).all() and (acc.effect <= acc.hi).all()
    conc = pd.read_csv(ran / "concentration.csv")
    assert {"uniform", "mars_v1"} <= set(conc.strategy) and set(conc["round"]) == {1, 2}
    assert conc.ess_over_n.between(0, 1).all()
    timing = pd.read_csv(ran / "timing.csv")
    assert len(timing) == 6 and (timing.seconds > 0).all()
    assert json.loads((ran / "compare.json").read_text())["config"]["rounds"] == 2


def test_compare_resumes_after_a_kill_and_refuses_another_comparison(files, ran, monkeypatch, capsys):
    before = pd.read_csv(ran / "claims.csv")
    (ran / "jobs" / "per_pair_mars_v1_seed1.parquet").unlink()          # as if killed during that job
    calls = []
    real = comparison.run_strategy
    monkeypatch.setattr(comparison, "run_strategy", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    assert main(["compare", "--pairs", str(files[0]), "--test", str(files[1]), "--out", str(ran), *ARGS]) == 0
    assert calls == ["mars_v1"]                                            # only the unfinished job trained again
    pd.testing.assert_frame_equal(pd.read_csv(ran / "claims.csv"), before)  # and the same tables
    capsys.readouterr()
    assert main(["compare", "--pairs", str(files[0]), "--test", str(files[1]), "--out", str(ran),
                 *ARGS[:-6], "--rounds", "3", "--budget", "40"]) == 2
    assert "holds another comparison" in capsys.readouterr().err and calls == ["mars_v1"]


def test_dry_run_states_the_cost_and_trains_nothing(files, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["compare", "--pairs", str(files[0]), "--test", str(files[1]), "--out", str(out), *ARGS, "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["jobs"] == 6 and plan["jobs_done"] == 0 and plan["rounds"] == 2 and plan["budget_per_round"] == 40
    n = plan["train_pairs"]
    assert plan["pairs_per_round"] == {"none_matched": n + 40, "uniform": n + 40, "mars_v1": n + 40}   # equal steps
    assert not out.exists()


def test_the_api_takes_datasets_and_gives_what_the_cli_wrote(files, ran):
    """api.compare on a datasets.Dataset and a DataFrame: the same core, so the same numbers as the CLI's run."""
    _, _, train, test = files
    res = api.compare(Dataset.from_pandas(train[["prompt", "chosen", "rejected"]]),
                      test[["prompt", "chosen", "rejected"]], arms=("none_matched", "uniform", "mars_v1"), seeds=(0, 1),
                      rounds=2, budget=40, n_boot=200, progress=False)
    cli = pd.read_csv(ran / "claims.csv").set_index("claim_id")
    mine = res.claims.set_index("claim_id")
    pd.testing.assert_series_equal(mine.effect, cli.effect.loc[mine.index], check_exact=False, atol=1e-12)
    assert res.baseline["arm"] in {"none_matched", "uniform", "mars_v1"} and 0 <= res.baseline["length_baseline"] <= 1


def test_api_score_allocate_augment_on_a_dataframe(files, tmp_path):
    _, _, train, _ = files
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(files[0]), "--out", str(rm), "--epochs", "2"]) == 0
    frame = train[["prompt", "chosen", "rejected", "pair_id"]].assign(domain="task")
    scored = api.score(frame, rm)
    assert list(scored.columns) == ["pair_id", "reward_chosen", "reward_rejected", "reward_gap"] and len(scored) == len(frame)
    alloc = api.allocate(frame, rm, budget=30, target_ess=0.5, verbose=False)
    assert alloc.budget.sum() == 30 and list(alloc.pair_id) == list(frame.pair_id)
    aug = api.augment(Dataset.from_pandas(frame), rm, budget=30, version="uniform", verbose=False)
    assert (aug.origin == "synthetic").sum() == 30 and (aug.domain == "task").all()


def test_bad_comparisons_fail_with_a_clear_message(files, tmp_path, capsys):
    train, test = str(files[0]), str(files[1])
    cases = [(["--test", train], "same set"),
             (["--test", test, "--arms", "uniform,mars_v9"], "unknown strategy 'mars_v9'"),
             (["--test", test, "--model", "x"], "--regime full or lora"),
             (["--test", test, "--seeds", "a", "b"], "--seeds takes integers")]
    for extra, message in cases:
        assert main(["compare", "--pairs", train, "--out", str(tmp_path / "bad"), *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(DataError, match="a list of dicts"):
        api.compare(42, test)


def test_printed_intervals_are_the_stats_modules_on_the_same_per_pair_outcomes(ran):
    """claims.csv's rows are `stats.paired_difference` on the per-pair outcomes the jobs wrote."""
    from mars_lib.evaluation import stats
    pp = pd.concat([pd.read_parquet(f) for f in sorted((ran / "jobs").glob("per_pair_*.parquet"))], ignore_index=True)
    claims = pd.read_csv(ran / "claims.csv").set_index("claim_id")
    for cid in ("mars_v1>uniform", "mars_v1>none_matched"):
        a, b = cid.split(">")
        r = stats.paired_difference(pp.assign(value=pp.correct), a, b, n_boot=200)
        row = claims.loc[cid]
        assert abs(row.effect - r["effect"]) < 1e-12 and abs(row.lo - r["lo"]) < 1e-9 and abs(row.hi - r["hi"]) < 1e-9


def test_the_python_api_example_in_the_docs_runs():
    """docs/reference.md's Python API example, executed as written (the committed HH-RLHF copy)."""
    from mars_lib.pipeline.io import REPO_ROOT
    doc = (REPO_ROOT / "docs" / "reference.md").read_text()
    block = doc[doc.index("### The Python API"):].split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(block, "docs/reference.md", "exec"), scope)
    assert {"mars_v1>uniform", "mars_v2>mars_v1"} <= set(scope["res"].claims.claim_id)


@pytest.mark.slow
def test_fine_tuned_regime_trains_compares_and_scores_at_tiny_scale(files, tmp_path, capsys):
    """--regime full / lora: MiniLM fine-tuned (a few steps), a Hugging Face folder `mars score` reads, and
    `mars compare --regime full` through the same rounds loop."""
    train, test = str(files[0]), str(files[1])
    tiny = ["--max-length", "48", "--epochs", "1"]
    for regime in ("full", "lora"):
        rm = tmp_path / f"rm_{regime}"
        assert main(["train", "--pairs", train, "--out", str(rm), "--regime", regime, "--batch-size", "8", *tiny]) == 0
        assert (rm / "config.json").exists() and list(rm.glob("*.safetensors"))
        assert main(["score", "--pairs", test, "--rm", str(rm), "--out", str(tmp_path / "s.csv"), "--max-length", "48"]) == 0
        assert len(pd.read_csv(tmp_path / "s.csv")) == sum(1 for _ in open(test))
    assert "are longer than --max-length 48 tokens" in capsys.readouterr().err        # truncation is said, not silent
    out = tmp_path / "ft"
    assert main(["compare", "--pairs", train, "--test", test, "--out", str(out), "--regime", "full", "--strategies",
                 "uniform", "mars_v1", "--seeds", "0", "--rounds", "1", "--budget", "8", "--batch-size", "8",
                 "--n-boot", "100", *tiny]) == 0
    claims = pd.read_csv(out / "claims.csv")
    assert "mars_v1>uniform" in set(claims.claim_id) and set(pd.read_csv(out / "timing.csv").strategy) == {"uniform", "mars_v1"}
