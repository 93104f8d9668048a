"""The practitioners' command line, end to end on real task pairs (MiniLM features, seconds)."""
import json

import pandas as pd
import pytest

from mars_lib.cli import main
from mars_lib.data import to_trl_jsonl
from mars_lib.tasks import DEFAULT_TASK_DIR, load_task


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    task = load_task(DEFAULT_TASK_DIR, n_prompts=12)
    p = tmp_path_factory.mktemp("cli") / "pairs.jsonl"
    to_trl_jsonl(task.split("train"), p)
    return p


def test_train_score_allocate_augment(pairs_file, tmp_path, capsys):
    rm = tmp_path / "rm"
    n = sum(1 for _ in open(pairs_file))
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "3"]) == 0
    assert (rm / "head.safetensors").exists() and json.loads((rm / "head.json").read_text())["pairs"] == n
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]) == 0
    scored = pd.read_csv(tmp_path / "s.csv")
    assert len(scored) == n and (scored.reward_gap == scored.reward_chosen - scored.reward_rejected).all()
    assert main(["allocate", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "50", "--version", "v2",
                 "--out", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv").budget.sum() == 50
    assert main(["augment", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "30",
                 "--out", str(tmp_path / "aug.jsonl")]) == 0
    rows = [json.loads(l) for l in open(tmp_path / "aug.jsonl")]
    assert n < len(rows) <= n + 30 and set(rows[0]) == {"prompt", "chosen", "rejected"}


@pytest.mark.parametrize("extra, message", [
    (["--budget", "-5"], "--budget must be >= 0"),
    (["--budget", "5", "--tau", "0"], "--tau must be > 0"),
])
def test_cli_rejects_bad_numbers(pairs_file, tmp_path, capsys, extra, message):
    assert main(["allocate", "--pairs", str(pairs_file), "--rm", str(tmp_path), "--out", str(tmp_path / "x.csv")] + extra) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_rm_and_bad_file(pairs_file, tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a reward model folder"):
        main(["score", "--pairs", str(pairs_file), "--rm", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    assert main(["train", "--pairs", str(bad), "--out", str(tmp_path / "rm")]) == 2
    assert "bad.jsonl, row 1: chosen == rejected" in capsys.readouterr().err


def test_truncated_checkpoint_is_reported(pairs_file, tmp_path):
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "1"]) == 0
    data = (rm / "head.safetensors").read_bytes()
    (rm / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match="cannot load"):
        main(["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")])
