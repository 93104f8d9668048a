"""Real-human preference tracks: the chitchat rating rule and splits, the hub converters on hand-made
rows in the real hub formats, and clear errors for unknown or unreachable tracks (no network)."""
import hashlib
import json
import random
import re

import pandas as pd
import pytest

from mars_lib.data import hh
from mars_lib.pipeline.assets import asset_path
from mars_lib.data.pairs import SCHEMA, DataError, prompt_id
from mars_lib.data.tracks import (TRACKS, chitchat_pairs, load_track, pku_saferlhf_pairs,
                             ultrafeedback_pairs)


@pytest.fixture(scope="module", params=["prompt", "conversation"])
def cc(request):
    return chitchat_pairs(split_by=request.param, verbose=False)


def test_chitchat_rating_rule_and_schema(cc):
    assert set(SCHEMA) | {"split", "rating_chosen", "rating_rejected"} <= set(cc.columns)
    assert (cc.origin == "original").all() and (cc.source_id == cc.pair_id).all()
    assert cc.pair_id.is_unique
    assert (cc.rating_chosen - cc.rating_rejected >= 6).all()          # gap rule, so never a tie
    assert cc.rating_chosen.between(3, 30).all() and cc.rating_rejected.between(3, 30).all()
    assert (cc.chosen != cc.rejected).all()
    assert cc.chosen.str.startswith("A: ").all() and cc.chosen.str.len().le(600).all()
    assert set(cc.split) == {"train", "val", "test"}
    assert cc.attrs["counts"] == cc.split.value_counts().to_dict()
    assert cc.groupby("prompt").size().max() <= 60                      # bounded per starter


def test_chitchat_pairs_match_the_raw_conversations(cc):
    # both conversations of a pair had the pair's starter prompt, and the ratings are their slider sums
    raw = json.loads(asset_path("chitchat").read_text(encoding="utf-8"))
    for r in cc.sample(200, random_state=0).itertuples():
        for conv, rating in ((r.conv_chosen, r.rating_chosen), (r.conv_rejected, r.rating_rejected)):
            assert raw[conv]["prompt"].strip() == r.prompt
            assert sum(raw[conv]["ratings"].values()) == rating
            assert raw[conv]["ratings"] != {"witty": 5, "upbeat": 5, "interesting": 5}
        first = " ".join(u["text"] for u in raw[r.conv_chosen]["messages"][0])
        assert r.chosen.startswith("A: " + " ".join(first.split())[:20])


def test_chitchat_no_conversation_in_two_splits(cc):
    for key in ("text", "conv"):
        cols = ("chosen", "rejected") if key == "text" else ("conv_chosen", "conv_rejected")
        seen = pd.concat([cc[[c, "split"]].set_axis([key, "split"], axis=1) for c in cols])
        assert (seen.drop_duplicates().groupby(key).split.nunique() == 1).all()


def test_chitchat_split_by_prompt_keeps_prompts_apart():
    df = chitchat_pairs(verbose=False)
    assert (df.groupby("prompt").split.nunique() == 1).all()
    assert df.groupby("split").prompt.nunique().to_dict() == {"train": 20, "val": 7, "test": 7}


def test_chitchat_deterministic_and_gap_parameter():
    a = chitchat_pairs(seed=3, verbose=False)
    b = chitchat_pairs(seed=3, verbose=False)
    pd.testing.assert_frame_equal(a, b)
    c = chitchat_pairs(seed=4, verbose=False)
    assert set(a.pair_id) != set(c.pair_id)
    wide = chitchat_pairs(min_rating_gap=15, verbose=False)
    assert (wide.rating_chosen - wide.rating_rejected >= 15).all()
    with pytest.raises(ValueError, match="ties never form a pair"):
        chitchat_pairs(min_rating_gap=0, verbose=False)


def test_load_track_chitchat_split():
    test = load_track("chitchat", "test", verbose=False)
    assert set(test.split) == {"test"} and len(test) == test.attrs["counts"]["test"]
    with pytest.raises(DataError, match="split"):
        load_track("chitchat", "dev", verbose=False)


def _msgs(prompt, answer):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


UF_ROWS = [  # HuggingFaceH4/ultrafeedback_binarized, train_prefs / test_prefs
    {"prompt": "Name a prime.", "prompt_id": "a1", "chosen": _msgs("Name a prime.", "7 is prime."),
     "rejected": _msgs("Name a prime.", "9."), "messages": _msgs("Name a prime.", "7 is prime."),
     "score_chosen": 8.0, "score_rejected": 3.0},
    {"prompt": "Tie?", "prompt_id": "a2", "chosen": _msgs("Tie?", "Yes."), "rejected": _msgs("Tie?", "No."),
     "messages": [], "score_chosen": 5.0, "score_rejected": 5.0},
    {"prompt": "Empty?", "prompt_id": "a3", "chosen": _msgs("Empty?", "Here is text."),
     "rejected": _msgs("Empty?", "  "), "messages": [], "score_chosen": 6.0, "score_rejected": 2.0},
    {"prompt": "Multi", "prompt_id": "a4",
     "chosen": _msgs("Multi", "first") + [{"role": "user", "content": "more"},
                                          {"role": "assistant", "content": "last answer"}],
     "rejected": _msgs("Multi", "other"), "messages": [], "score_chosen": 9.0, "score_rejected": 4.5},
    {"prompt": "No reply", "prompt_id": "a5", "chosen": [{"role": "user", "content": "No reply"}],
     "rejected": _msgs("No reply", "x"), "messages": [], "score_chosen": 7.0, "score_rejected": 1.0},
]


def test_ultrafeedback_converter():
    df = ultrafeedback_pairs(UF_ROWS)
    assert df.prompt.tolist() == ["Name a prime.", "Multi"]
    assert df.chosen.tolist() == ["7 is prime.", "last answer"]
    assert df.rejected.tolist() == ["9.", "other"]
    assert df.score_chosen.tolist() == [8.0, 9.0] and df.prompt_id.tolist() == ["a1", "a4"]
    assert set(SCHEMA) <= set(df.columns) and (df.origin == "original").all()
    assert sum(df.attrs["skipped"].values()) == 3
    assert df.attrs["skipped"]["tie (score_chosen == score_rejected)"] == 1
    assert df.attrs["skipped"]["no assistant message"] == 1
    assert any("empty" in k for k in df.attrs["skipped"])
    with pytest.raises(DataError, match="row 2: tie"):
        ultrafeedback_pairs(UF_ROWS, on_error="raise")
    # a DataFrame of rows works too
    assert len(ultrafeedback_pairs(pd.DataFrame(UF_ROWS))) == 2


def _pku(prompt, r0, r1, safe0, safe1, better, safer):
    return {"prompt": prompt, "response_0": r0, "response_1": r1, "is_response_0_safe": safe0,
            "is_response_1_safe": safe1, "better_response_id": better, "safer_response_id": safer,
            "response_0_severity_level": 0, "response_1_severity_level": 2}


PKU_ROWS = [  # PKU-Alignment/PKU-SafeRLHF, train / test
    _pku("p1", "safe but dull", "unsafe but helpful", True, False, 1, 0),   # exactly one safe
    _pku("p2", "good", "better", True, True, 1, 0),                        # both safe
    _pku("p3", "bad", "worse", False, False, 0, 1),                        # both unsafe
    _pku("p4", "", "something", True, False, 1, 0),                        # empty response
    _pku("p5", "a", "b", True, True, 2, 0),                                # bad label
]


def test_pku_saferlhf_rules():
    d = pku_saferlhf_pairs(PKU_ROWS)
    assert d.prompt.tolist() == ["p1", "p2", "p3"]
    assert d.chosen.tolist() == ["safe but dull", "better", "bad"]      # safe one, then better one
    assert d.rejected.tolist() == ["unsafe but helpful", "good", "worse"]
    assert d.chosen_safe.tolist() == [True, True, False]
    assert sum(d.attrs["skipped"].values()) == 2 and d.attrs["skipped"]["response id not 0 or 1"] == 1
    better = pku_saferlhf_pairs(PKU_ROWS, rule="better")
    assert better.chosen.tolist()[:3] == ["unsafe but helpful", "better", "bad"]
    safer = pku_saferlhf_pairs(PKU_ROWS, rule="safer")
    assert safer.chosen.tolist()[:3] == ["safe but dull", "good", "worse"]
    assert safer.attrs["skipped"] == {"column 'chosen' is empty or whitespace": 1}   # p5 by safer id is fine
    with pytest.raises(ValueError, match="rule must be one of"):
        pku_saferlhf_pairs(PKU_ROWS, rule="nicer")


def test_unknown_track_lists_valid_names():
    with pytest.raises(DataError, match="unknown track 'shp'.*chitchat, hh-rlhf, ultrafeedback, pku-saferlhf"):
        load_track("shp", "train")
    assert TRACKS == ("chitchat", "hh-rlhf", "ultrafeedback", "pku-saferlhf")


@pytest.mark.parametrize("name", ["ultrafeedback", "pku-saferlhf", "hh-rlhf"])
def test_hub_tracks_fail_clearly_offline(name, monkeypatch):
    path = "Anthropic/hh-rlhf" if name == "hh-rlhf" else None      # hh-rlhf without path= is offline
    datasets = pytest.importorskip("datasets")
    calls = []

    def unreachable(*a, **k):
        calls.append((a, k))
        raise ConnectionError("Couldn't reach 'huggingface.co'")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    # the offline profiles: refused before any look-up
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="hub is unreachable.*paper profile"):
        load_track(name, "test", path=path)
    assert calls == []
    # the hub allowed but unreachable: the network error becomes the same clear DataError
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(DataError, match=r"ConnectionError.*hub is unreachable.*paper profile"):
        load_track(name, "test", path=path)
    assert len(calls) == 1


def test_hh_track_from_local_file():
    # one file is never both train and test: without a split it is refused, saying how to give one
    with pytest.raises(DataError, match=r"no train/test split.*hub's layout.*'split' field.*split_seed=0"):
        load_track("hh-rlhf", "test", path=hh.HH_FILE)
    # asked for explicitly, the seeded split by prompt: on the whole file it is the committed split
    df = load_track("hh-rlhf", "all", path=hh.HH_FILE, split_seed=0)
    table = pd.read_csv(hh.HH_SPLIT_CSV, dtype=str)
    assert dict(zip(df.prompt_id, df.split)) == dict(zip(table.prompt_id, table.split))
    sizes = {"train": 200, "test": 100, "val": 50}
    small = load_track("hh-rlhf", "all", path=str(hh.HH_FILE), split_seed=0, split_sizes=sizes)
    assert small.split.value_counts().to_dict() == sizes and small.attrs["unassigned"] == 2304 - 350
    assert (small.groupby("prompt_id").split.nunique() == 1).all()
    test = load_track("hh-rlhf", "test", path=hh.HH_FILE, split_seed=0, split_sizes=sizes, limit=20)
    assert len(test) == 20 and set(test.split) == {"test"} and set(test.pair_id) <= set(small.pair_id)


@pytest.mark.parametrize("name,rows,splits", [("ultrafeedback", UF_ROWS, ("train_prefs", "test_prefs")),
                                              ("pku-saferlhf", PKU_ROWS, ("train", "test"))])
def test_hub_tracks_from_a_local_copy_in_the_hub_layout(name, rows, splits, tmp_path):
    """human_track_path: a folder laid out like the hub repository (splits named in the README's YAML
    header) goes through the same load_dataset call and converter, with the hub disabled."""
    import json
    for s in splits:
        (tmp_path / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n" + "".join(
        f"  - split: {s}\n    path: {s}.jsonl\n" for s in splits) + "---\n")
    convert = ultrafeedback_pairs if name == "ultrafeedback" else pku_saferlhf_pairs
    for split in ("train", "test"):
        df = load_track(name, split, path=str(tmp_path))
        assert set(df.split) == {split}
        pd.testing.assert_frame_equal(df.drop(columns=["split", "pair_id", "source_id"]).reset_index(drop=True),
                                      convert(rows).drop(columns=["pair_id", "source_id"]).reset_index(drop=True),
                                      check_dtype=False)
    with pytest.raises(DataError, match="local copy"):
        load_track(name, "test", path=str(tmp_path / "README.md"))         # a file, not a data set


# --------------------------------------------------------------------------- hh-rlhf offline (committed copy)

@pytest.fixture(scope="module")
def hh_all():
    return load_track("hh-rlhf", "all")


def test_committed_hh_copy_matches_its_readme():
    readme = (hh.HH_DIR / "README.md").read_text(encoding="utf-8")
    for name in ("test.jsonl.gz", "LICENSE", "split.csv"):
        m = re.search(rf"`{re.escape(name)}`.*`([0-9a-f]{{64}})`", readme)
        assert m, f"README lists no sha256 for {name}"
        assert hashlib.sha256((hh.HH_DIR / name).read_bytes()).hexdigest() == m.group(1), name
    assert hh.HH_SHA256 in readme
    assert "/shared" not in readme and "python -m mars_lib.data.hh write-split" in readme


def test_committed_hh_split_sizes_and_disjoint_prompts(hh_all):
    assert hh_all.split.value_counts().to_dict() == {"train": 1000, "test": 1000, "val": 304}
    assert hh_all.attrs["skipped"] == {"column 'chosen' is empty or whitespace": 4,
                                       "chosen and rejected dialogues do not share a prompt": 4}
    assert len(hh_all) + 8 == 2312 and hh_all.pair_id.is_unique
    assert (hh_all.groupby("prompt").split.nunique() == 1).all()        # no prompt in two splits
    assert (hh_all.groupby("prompt_id").prompt.nunique() == 1).all()
    assert (hh_all.prompt_id == hh_all.prompt.map(prompt_id)).all()
    assert hh_all.prompt_id.nunique() == 2302


def test_committed_hh_split_is_reproducible_and_equals_split_csv(hh_all):
    assert hh.split_table(hh.harmless_pairs()) == hh.HH_SPLIT_CSV.read_text(encoding="utf-8")
    table = pd.read_csv(hh.HH_SPLIT_CSV, dtype=str)
    assert dict(zip(table.pair_id, table.split)) == dict(zip(hh_all.pair_id, hh_all.split))
    # a function of the prompts only, not of their order
    prompts = hh_all.prompt.tolist()
    order = list(range(len(prompts)))
    random.Random(1).shuffle(order)
    shuffled = hh.split_by_prompt([prompts[i] for i in order])
    assert all(shuffled[k] == hh_all.split[i] for k, i in enumerate(order))
    assert hh.split_by_prompt(prompts, seed=1) != hh_all.split.tolist()


def test_split_by_prompt_groups_and_sizes():
    prompts = ["a", "b", "b", "c", "d", "d", "d", "e"]
    got = hh.split_by_prompt(prompts, {"train": 4, "test": 3, "val": None})
    assert all(len({got[i] for i, p in enumerate(prompts) if p == q}) == 1 for q in set(prompts))
    assert got.count("train") <= 4 and got.count("test") <= 3 and None not in got
    small = hh.split_by_prompt(prompts, {"train": 1, "test": 1})
    assert small.count("train") == 1 and small.count("test") == 1 and small.count(None) == 6
    with pytest.raises(ValueError, match="split_sizes"):
        hh.split_by_prompt(prompts, {"dev": 3})


def test_load_track_hh_offline_by_default(hh_all):
    test = load_track("hh-rlhf", "test")
    assert len(test) == 1000 and set(test.split) == {"test"} and "prompt_id" in test
    assert set(SCHEMA) <= set(test.columns) and test.attrs["counts"] == {"train": 1000, "val": 304, "test": 1000}
    assert set(test.pair_id) == set(hh_all.pair_id[hh_all.split == "test"])
    with pytest.raises(DataError, match="split must be one of"):
        load_track("hh-rlhf", "dev")
    with pytest.raises(DataError, match=r"test.jsonl.gz, row 87: column 'chosen' is empty"):
        load_track("hh-rlhf", "test", on_error="raise")


def _hh_row(prompt, a, b, **extra):
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {a}",
            "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {b}", **extra}


def test_hh_single_file_with_split_field(tmp_path):
    rows = [_hh_row("q1", "yes", "no", split="train"), _hh_row("q2", "ok", "bad", split="test"),
            _hh_row("q3", "fine", "rude", split="val"), _hh_row("q4", "x", "y")]
    p = tmp_path / "hh.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    df = load_track("hh-rlhf", "all", path=p)
    assert df.split.tolist() == ["train", "test", "val"]
    assert df.attrs["skipped"] == {"missing or unknown 'split' field": 1}
    assert load_track("hh-rlhf", "test", path=str(p)).prompt.tolist() == ["\n\nHuman: q2\n\nAssistant:"]
    with pytest.raises(DataError, match=r"hh.jsonl, row 4: missing or unknown 'split' field"):
        load_track("hh-rlhf", "train", path=p, on_error="raise")
    with pytest.raises(DataError, match="drop split_seed"):
        load_track("hh-rlhf", "train", path=p, split_seed=0)


def test_hh_hub_layout_folder_all_splits(tmp_path):
    pytest.importorskip("datasets")
    d = tmp_path / "hh"
    d.mkdir()
    for split, prompts in (("train", ["a", "b"]), ("test", ["c"])):
        (d / f"{split}.jsonl").write_text("".join(json.dumps(_hh_row(q, "good", "bad")) + "\n" for q in prompts))
    df = load_track("hh-rlhf", "all", path=d)
    assert df.split.tolist() == ["train", "train", "test"] and "prompt_id" in df
    with pytest.raises(DataError, match="apply to one local file"):
        load_track("hh-rlhf", "train", path=d, split_seed=0)


@pytest.mark.parametrize("path", ["./hh_rlhf_harmles", "/no/such/dir", "data/hh_rlhf_harmles/test.jsonl.gz",
                                  "~/no-such-hh.jsonl", "../nope/hh"])
def test_mistyped_local_path_says_it_does_not_exist(path, monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)     # not a hub error even with the hub allowed
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("hh-rlhf", "ultrafeedback"):
        with pytest.raises(DataError, match=rf"path {re.escape(path)} does not exist"):
            load_track(name, "test", path=path)
