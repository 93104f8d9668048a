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

ARGS = ["--arms", "none_matched,uniform,mars_v1", "--seeds", "0,1", "--rounds", "2", "--budget", "40", "--n-boot", "200"]


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
             (["--test", test, "--seeds", "a,b"], "comma-separated integers")]
    for extra, message in cases:
        assert main(["compare", "--pairs", train, "--out", str(tmp_path / "bad"), *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(DataError, match="a list of dicts"):
        api.compare(42, test)
