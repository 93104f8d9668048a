"""Loaders and validation: real HH rows, and a clear error for each kind of malformed input."""
import gzip
import json

import pandas as pd
import pytest

from mars_lib.data.pairs import DataError, load_hh_jsonl, load_pairs, split_hh, to_trl_jsonl


def test_hh_parser_on_real_sample(hh_sample):
    # the real file has malformed rows (e.g. row 87: an empty chosen response): strict mode names it
    with pytest.raises(DataError, match=r"row 87: column 'chosen' is empty"):
        load_hh_jsonl(hh_sample)
    df = load_hh_jsonl(hh_sample, on_error="skip")
    assert 390 <= len(df) < 400 and sum(df.attrs["skipped"].values()) == 400 - len(df)
    raw = [json.loads(l) for l in gzip.open(hh_sample, "rt", encoding="utf-8")]
    first = df.iloc[0]
    assert first.prompt.endswith("\n\nAssistant:")
    assert first.prompt + " " + first.chosen == raw[0]["chosen"] or (first.prompt + " " + first.chosen).strip() == raw[0]["chosen"].strip()
    assert first.prompt.startswith("\n\nHuman:")
    assert (df.chosen != df.rejected).all()
    assert set(["pair_id", "source_id", "origin"]) <= set(df.columns)


def test_split_hh_hand_case():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: Sure: knock knock."
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: No."
    p, cc, rr = split_hh(c, r)
    assert p == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant:"
    assert (cc, rr) == ("Sure: knock knock.", "No.")


def _jsonl(tmp_path, rows, name="pairs.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return p


GOOD = {"prompt": "Q?", "chosen": "A good answer.", "rejected": "meh"}


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q?", "chosen": "A"}, "missing column 'rejected'"),
    ({**GOOD, "chosen": "   "}, "'chosen' is empty or whitespace"),
    ({**GOOD, "rejected": ""}, "'rejected' is empty or whitespace"),
    ({**GOOD, "rejected": "A good answer."}, "chosen == rejected"),
    ({**GOOD, "chosen": None}, "'chosen' is empty (null)"),
    ({**GOOD, "chosen": 3}, "must be text"),
    ({**GOOD, "rejected": "\u200b"}, "invisible characters only"),
    ({**GOOD, "chosen": [{"role": "assistant", "content": "hi"}]}, "TRL's conversational format"),
    ({**GOOD, "gold_chosen": float("nan"), "gold_rejected": 1.0}, "finite number"),
])
def test_validation_errors_name_file_row_problem(tmp_path, row, message):
    p = _jsonl(tmp_path, [GOOD, row])
    with pytest.raises(DataError) as e:
        load_pairs(p)
    assert message in str(e.value) and "pairs.jsonl, row 2" in str(e.value)


def test_bad_utf8_names_row(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "Q", "chosen": "caf\xe9", "rejected": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, row 2: not UTF-8"):
        load_pairs(p)


def test_skip_mode_counts(tmp_path):
    p = _jsonl(tmp_path, [GOOD, {**GOOD, "chosen": ""}, GOOD])
    df = load_pairs(p, on_error="skip")
    assert len(df) == 1
    assert sum(df.attrs["skipped"].values()) == 2


def test_skipping_a_row_renumbers_no_pair_id(tmp_path):
    rows = [GOOD, {**GOOD, "chosen": ""}, {**GOOD, "chosen": "Another answer."}]
    df = load_pairs(_jsonl(tmp_path, rows), on_error="skip")
    assert df.pair_id.tolist() == ["pairs-0", "pairs-2"]          # row 3 keeps its own id


def test_a_json_array_file_is_read_as_one(tmp_path):
    p = tmp_path / "arr.json"
    p.write_text(json.dumps([GOOD, {**GOOD, "chosen": "Another answer."}]))
    assert len(load_pairs(p)) == 2
    p.write_text(json.dumps([GOOD, 3]))
    with pytest.raises(DataError, match=r"arr.json, row 2: expected a JSON object"):
        load_pairs(p)


def test_csv_and_parquet_and_export(tmp_path):
    pd.DataFrame([GOOD]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame([GOOD]).to_parquet(tmp_path / "a.parquet")
    assert load_pairs(tmp_path / "a.csv").chosen[0] == GOOD["chosen"]
    df = load_pairs(tmp_path / "a.parquet")
    out = to_trl_jsonl(df, tmp_path / "out.jsonl")
    assert json.loads(out.read_text().splitlines()[0]) == GOOD
    with pytest.raises(DataError, match="unknown file type"):
        load_pairs(tmp_path / "a.txt") if (tmp_path / "a.txt").write_text("x") else None


def test_hub_loader_refuses_offline(monkeypatch):
    from mars_lib.data.pairs import load_hh_hub
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="hub is disabled"):
        load_hh_hub()


def test_hh_missing_dialogue_column(tmp_path):
    p = _jsonl(tmp_path, [{"chosen": "\n\nHuman: a\n\nAssistant: b"}], name="hh.jsonl")
    with pytest.raises(DataError, match=r"hh.jsonl, row 1: missing or non-text column\(s\) \['rejected'\]"):
        load_hh_jsonl(p)


def test_hh_skip_mode_counts_unparseable_rows(tmp_path):
    good = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    p = _jsonl(tmp_path, [good, {"chosen": "no turns here", "rejected": "x"}], name="hh.jsonl")
    df = load_hh_jsonl(p, on_error="skip")
    assert len(df) == 1 and sum(df.attrs["skipped"].values()) == 1


# a real HH row type (harmless-base test rows 1255, 1689, ...): the two dialogues differ before the
# last assistant turn, so they have no common prompt
DIVERGED = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: more?\n\nAssistant: sure",
            "rejected": "\n\nHuman: hi\n\nAssistant: go away\n\nHuman: more?\n\nAssistant: no"}


def _hh(prompt, a, b, **extra):
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {a}", "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {b}",
            **extra}


@pytest.mark.parametrize("form", ["file", "folder"])
def test_hh_unshared_prompt_row_one_policy_for_file_and_folder(tmp_path, form):
    """The same on_error policy in the single-file and the hub-layout-folder form: "skip" (the
    tracks' default) drops the row with a count, "raise" names the file and the row."""
    from mars_lib.data.tracks import load_track
    rows = [_hh("a", "yes", "no"), _hh("b", "ok", "bad"), DIVERGED, _hh("c", "fine", "rude")]
    if form == "file":
        p = _jsonl(tmp_path, [dict(r, split="train") for r in rows], name="hh.jsonl")
        where = r"hh.jsonl, row 3"
    else:
        pytest.importorskip("datasets")
        p = tmp_path / "hh"
        p.mkdir()
        for split in ("train", "test"):
            _jsonl(p, rows, name=f"{split}.jsonl")
        where = r"\[train\], row 3"
    df = load_track("hh-rlhf", "train", path=p)
    assert len(df) == 3 and df.attrs["skipped"] == {"chosen and rejected dialogues do not share a prompt": 1}
    with pytest.raises(DataError, match=where + ": chosen and rejected dialogues do not share a prompt"):
        load_track("hh-rlhf", "train", path=p, on_error="raise")
    with pytest.raises(DataError, match=r"hh.jsonl, row 3: chosen and rejected dialogues do not share"):
        load_hh_jsonl(_jsonl(tmp_path, rows, name="hh.jsonl"))            # the loader's own default: raise


def test_hh_rows_get_prompt_id(tmp_path):
    from mars_lib.data.pairs import prompt_id
    df = load_hh_jsonl(_jsonl(tmp_path, [_hh("a", "x", "y"), _hh("a", "z", "w"), _hh("b", "x", "y")]))
    assert df.prompt_id.tolist()[0] == df.prompt_id.tolist()[1] != df.prompt_id.tolist()[2]
    assert df.prompt_id[0] == prompt_id("\n\nHuman: a\n\nAssistant:") and df.prompt_id[0].startswith("p-")


@pytest.mark.parametrize("path, local", [
    ("Anthropic/hh-rlhf", False), ("hh-rlhf", False), ("owner/data.v2", False),
    ("/data/hh", True), ("./hh", True), ("../hh", True), ("~/hh", True), (".", True),
    ("a/b/c", True), ("hh.jsonl.gz", True), ("owner/x.parquet", True), ("C:\\data\\hh", True)])
def test_path_rule(path, local):
    from mars_lib.data.pairs import looks_like_path
    assert looks_like_path(path) is local


def test_missing_local_path_is_not_a_hub_error(tmp_path):
    from mars_lib.data.pairs import load_hh_hub, resolve_source
    with pytest.raises(DataError, match="path ./no-such-folder does not exist"):
        load_hh_hub("test", dataset="./no-such-folder")
    with pytest.raises(DataError, match=r"path .*missing.jsonl does not exist"):
        load_hh_jsonl(tmp_path / "missing.jsonl")
    assert resolve_source("Anthropic/hh-rlhf") == ("Anthropic/hh-rlhf", False)
    assert resolve_source(tmp_path) == (str(tmp_path), True)
