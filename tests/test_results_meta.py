"""Every table's .meta.json records the code's git commit, package versions and the sha256 of the
data files the run read."""
import hashlib
import json
import re

import pandas as pd

from mars_lib.pipeline.config import REPO_ROOT, RunConfig
from mars_lib.pipeline.tables import config_inputs, save_table


def test_meta_records_commit_versions_and_real_input_checksums(tmp_path):
    cfg = RunConfig.resolve("cpu")
    path = save_table(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.csv", cfg, inputs={"extra.json": "abc"})
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    git = meta["environment"]["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    assert meta["environment"]["versions"]["torch"]
    inputs = meta["inputs"]
    assert inputs["extra.json"] == "abc"
    task = "data/gold_task_v3/responses.parquet"
    assert inputs[task] == hashlib.sha256((REPO_ROOT / task).read_bytes()).hexdigest()
    assert "data/hh_rlhf_harmless/test.jsonl.gz" in inputs          # the cpu profile's hh-rlhf track reads it


def test_config_inputs_follow_the_config(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "responses.parquet").write_bytes(b"one")
    cfg = RunConfig.resolve("cpu", task_dir=str(tmp_path / "task"), human_track="chitchat")
    first = config_inputs(cfg)
    assert list(first) == [str(tmp_path / "task" / "responses.parquet")]      # no HH file without that track
    assert first[str(tmp_path / "task" / "responses.parquet")] == hashlib.sha256(b"one").hexdigest()
    (tmp_path / "task" / "responses.parquet").write_bytes(b"two!")
    assert config_inputs(cfg) != first                                        # a changed file, a new checksum
