"""Out-of-distribution evaluation (mars_lib.evaluation.ood): the committed LLMBar / MT-Bench human copy, the
loader's validation, the accuracy table against hand values, and an end-to-end run of a head RM."""
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mars_lib.data.pairs import DataError
from mars_lib.evaluation import ood
from mars_lib.figures import rm_training

# the digests given by the source (princeton-nlp/LLMBar @ 900616bf), independent of the committed README
SOURCE_SHA256 = {
    "LLMBar_Natural.json": "f7127b7aa78104cb8e03a2b1b3ac0077e95b125714dd441a8ee63666145a3375",
    "LLMBar_Adversarial_Neighbor.json": "6712c7eda6342602e0bc7c06c282fa95e2110d4e741a284026a62d937f9780a0",
    "LLMBar_Adversarial_GPTInst.json": "1002425f73c2cf54b6e6de99bce3f6c60fa2a17d13194772e37d7481c1351d42",
    "LLMBar_Adversarial_GPTOut.json": "1ff56e520d7607750a9866a3be0f5b850392ca4477a1f69d80f32bd3e310f561",
    "LLMBar_Adversarial_Manual.json": "0d9598769a39cdbbd265778c37e49939d41d5f76dcfb17bd75dcfa07516d3837",
    "MT-Bench_human.json": "c152249bc095d152485954bd2abd9ea79528ee5e4c045bfe9ef78755b03c20d8",
}
COUNTS = {"llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47,
          "llmbar-adver-manual": 46, "mt-bench-human": 195}


@pytest.fixture(scope="module")
def committed():
    return ood.load_ood()


def test_committed_copy_matches_the_source_and_its_readme():
    listed = ood.readme_sha256(ood.OOD_DIR)
    for name, digest in SOURCE_SHA256.items():
        assert listed[name] == digest, name
        assert hashlib.sha256((ood.OOD_DIR / name).read_bytes()).hexdigest() == digest, name
    assert (ood.OOD_DIR / "LICENSE").read_text().startswith("MIT License")
    assert "/shared" not in (ood.OOD_DIR / "README.md").read_text()


def test_loader_reads_the_committed_files(committed):
    df = committed
    assert len(df) == 419 + 195 and df.pair_id.is_unique
    assert df.groupby("subset", sort=False).size().to_dict() == COUNTS
    assert set(df[df.section == "LLMBar"].subset) == set(list(COUNTS)[:5])
    assert set(df[df.section == "MT-Bench human"].subset) == {"mt-bench-human"}
    assert df.attrs["skipped"] == {"MT-Bench_human.json": {"listed again (kept once)": 5}}
    assert (df.chosen != df.rejected).all() and df.prompt.str.strip().astype(bool).all()
    # chosen is the labelled output of the item the pair_id points at, in every file
    by_id = df.set_index("pair_id")
    for name, (subset, _) in ood.FILES.items():
        items = json.loads((ood.OOD_DIR / name).read_text(encoding="utf-8"))
        for row, it in enumerate(items, start=1):
            pid = f"{subset}-{row}"
            if pid in by_id.index:
                r = by_id.loc[pid]
                assert r.prompt == it["input"] and r.chosen == it[f"output_{it['label']}"]
                assert r.rejected == it[f"output_{3 - it['label']}"]
    assert len(ood.load_ood("LLMBar")) == 419 and len(ood.load_ood("llmbar-adver-GPTOut")) == 47


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


GOOD = {"input": "Say hi.", "output_1": "Hi!", "output_2": "Bye.", "label": 1}


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("[{\"input\": ", "not valid JSON"),
    ({"input": "x"}, "expected a JSON list"),
    ([], "the list has no items"),
    ([GOOD, ["a", "b"]], "row 2: expected an object"),
    ([GOOD, {k: v for k, v in GOOD.items() if k != "label"}], "row 2: missing key\\(s\\) label"),
    ([{**GOOD, "label": 3}], "row 1: 'label' must be the integer 1 or 2"),
    ([{**GOOD, "label": "1"}], "row 1: 'label' must be the integer 1 or 2"),
    ([{**GOOD, "label": True}], "row 1: 'label' must be the integer 1 or 2"),
    ([GOOD, GOOD, {**GOOD, "input": 7}], "row 3: 'input' must be text"),
    ([{**GOOD, "output_2": "  "}], "row 1: 'output_2' is empty"),
    ([{**GOOD, "output_2": "Hi! "}], "row 1: output_1 == output_2"),
])
def test_malformed_files_are_rejected_naming_file_and_row(tmp_path, content, message):
    path = _write(tmp_path / "LLMBar_Natural.json", content)
    with pytest.raises(ValueError, match=message) as e:
        ood.load_ood(path)
    assert isinstance(e.value, DataError) and str(path) in str(e.value)


def test_checksums_unknown_names_and_missing_files(tmp_path):
    folder = tmp_path / "llmbar"
    shutil.copytree(ood.OOD_DIR, folder)
    assert len(ood.load_ood(folder)) == 614                 # a faithful copy with its README loads
    manual = folder / "LLMBar_Adversarial_Manual.json"
    manual.write_bytes(manual.read_bytes().replace(b'"label": 2', b'"label": 1', 1))
    with pytest.raises(DataError, match="sha256 .* != 0d9598769a39"):
        ood.load_ood(folder)
    with pytest.raises(DataError, match="sha256"):
        ood.load_ood(manual)
    (folder / "LLMBar_Natural.json").unlink()
    with pytest.raises(DataError, match="LLMBar_Natural.json: missing"):
        ood.load_ood(folder)
    with pytest.raises(DataError, match="unknown file name"):
        ood.load_ood(_write(tmp_path / "other.json", [GOOD]))
    with pytest.raises(DataError, match="neither an OOD subset"):
        ood.load_ood("llmbar-nope")


def test_repeated_pairs_kept_once_by_majority_and_split_votes_dropped(tmp_path):
    a = {"input": "q", "output_1": "A", "output_2": "B", "label": 1}
    items = [a, {**a, "output_1": "B", "output_2": "A", "label": 2},       # same pair, swapped, same winner
             {**a, "input": "r"}, {**a, "input": "r", "label": 2},          # split vote: dropped
             {**a, "input": "s"}, {**a, "input": "s", "label": 2}, {**a, "input": "s", "label": 2}]   # 2 of 3: B
    df = ood.load_ood(_write(tmp_path / "MT-Bench_human.json", items))
    assert df[["pair_id", "prompt", "chosen", "rejected"]].values.tolist() == [
        ["mt-bench-human-1", "q", "A", "B"], ["mt-bench-human-5", "s", "B", "A"]]
    assert df.attrs["skipped"] == {"MT-Bench_human.json": {"listed again (kept once)": 3,
                                                           "split vote between listings (dropped)": 2}}


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score method without continuity correction)
    for (k, n), (lo, hi) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611)}.items():
        assert ood.wilson_interval(k, n) == pytest.approx((lo, hi), abs=6e-5)
    with pytest.raises(ValueError):
        ood.wilson_interval(5, 4)


class FixedScores:
    """A text-reading reward model stand-in that returns given scores (no features needed)."""

    def __init__(self, rc, rr):
        self.rc, self.rr = np.asarray(rc, float), np.asarray(rr, float)

    def pair_scores(self, pairs):
        assert len(pairs.df) == len(self.rc)
        return self.rc, self.rr


def test_accuracy_table_by_hand():
    df = pd.DataFrame({"subset": ["llmbar-natural"] * 4 + ["llmbar-adver-manual"] * 2 + ["mt-bench-human"] * 3,
                       "section": ["LLMBar"] * 6 + ["MT-Bench human"] * 3, "prompt": list("abcdefghi"),
                       "chosen": ["c"] * 9, "rejected": ["r"] * 9, "pair_id": [f"p{i}" for i in range(9)]})
    #            natural: 2 right, 1 tie, 1 wrong | manual: 1 right, 1 wrong | mt-bench: 3 right
    rc = [1.0, 2.0, 0.5, 0.0, 3.0, 1.0, 1.0, 1.0, 1.0]
    rr = [0.0, 1.0, 0.5, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    t = ood.ood_accuracy(ood.score_ood({("mars_v1", 3): FixedScores(rc, rr), "flip": FixedScores(rr, rc)}, None, df))
    assert list(dict.fromkeys(t.model)) == ["mars_v1/seed3", "flip"]
    a = t[t.model == "mars_v1/seed3"].set_index(["level", "subset", "section"])
    assert a.strategy.iloc[0] == "mars_v1" and a.seed.iloc[0] == 3
    nat = a.loc[("subset", "llmbar-natural", "LLMBar")]
    assert (nat.n, nat.correct, nat.ties, nat.accuracy) == (4, 2, 1, 0.5)            # the tie counts as wrong
    assert (nat.lo, nat.hi) == pytest.approx(ood.wilson_interval(2, 4))
    sec = a.loc[("section", "all", "LLMBar")]
    assert (sec.n, sec.correct, sec.n_subsets) == (6, 3, 2)
    assert sec.accuracy == pytest.approx(3 / 6)                     # size-weighted = (4 * 2/4 + 2 * 1/2) / 6
    assert sec.unweighted_mean == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert (sec.lo, sec.hi) == pytest.approx(ood.wilson_interval(3, 6))
    mt = a.loc[("section", "all", "MT-Bench human")]
    assert (mt.n, mt.correct, mt.accuracy) == (3, 3, 1.0)
    f = t[t.model == "flip"].set_index(["level", "subset"])
    assert pd.isna(f.seed.iloc[0]) and f.loc[("subset", "llmbar-natural")].correct == 1   # the tie is wrong both ways
    assert f.loc[("subset", "mt-bench-human")].accuracy == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        ood.ood_accuracy(ood.score_ood({"nan": FixedScores([np.nan] * 9, rr)}, None, df))
    from mars_lib.reward_models.head import HeadRewardModel
    with pytest.raises(ValueError, match="pass the encoder"):
        ood.ood_accuracy(ood.score_ood({"head": HeadRewardModel(4)}, None, df))


def test_end_to_end_head_rm_on_ood_rows(tmp_path, committed):
    """A linear head trained on 12 OOD pairs (2 per subset) ranks them all correctly; its negation
    gets none right, a constant head ties everywhere; scores equal the head on freshly embedded texts;
    the figure is drawn from the saved table."""
    import matplotlib
    matplotlib.use("Agg")
    import torch

    from mars_lib.pipeline.tables import load_table, save_table
    from mars_lib.reward_models.features import Encoder, FeatureCache
    from mars_lib.reward_models.head import HeadConfig, HeadRewardModel
    torch.set_num_threads(1)
    df = committed.groupby("subset", sort=False).head(2).reset_index(drop=True)
    enc = Encoder.minilm(FeatureCache(tmp_path / "features.sqlite"), max_length=128)
    phi_c, phi_r = enc.embed_pairs(df.prompt, df.chosen), enc.embed_pairs(df.prompt, df.rejected)
    m = HeadRewardModel(enc.dim, HeadConfig(lr=0.05, epochs=200, seed=0))
    m.fit(phi_c, phi_r)
    neg, flat = HeadRewardModel(enc.dim), HeadRewardModel(enc.dim)
    with torch.no_grad():
        neg.net.weight.copy_(-m.net.weight)
        flat.net.weight.zero_()
    per_pair = ood.score_ood({"trained": m, "negated": neg, "constant": flat}, enc, df)
    tr = per_pair[per_pair.model == "trained"]
    np.testing.assert_allclose(tr.r_chosen, m.score_features(phi_c), rtol=1e-6)
    np.testing.assert_allclose(tr.r_rejected, m.score_features(phi_r), rtol=1e-6)
    table = ood.ood_accuracy(per_pair)
    subs = table[table.level == "subset"].set_index(["model", "subset"])
    assert (subs.loc["trained"].accuracy == 1.0).all() and (subs.loc["trained"].n == 2).all()
    assert (subs.loc["negated"].accuracy == 0.0).all()
    assert (subs.loc["constant"].ties == 2).all() and (subs.loc["constant"].accuracy == 0.0).all()
    secs = table[table.level == "section"].set_index(["model", "section"])
    assert secs.loc[("trained", "LLMBar")].n == 10 and secs.loc[("trained", "MT-Bench human")].n == 2
    path = save_table(table, tmp_path / "ood_eval.csv")
    ax = rm_training.plot_ood(load_table(path))
    labels = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert labels == [*list(COUNTS)[:5], "LLMBar (all)", "mt-bench-human"]
    assert len(ax.containers) == 3 and any(np.allclose(ln.get_ydata(), 0.5) for ln in ax.get_lines())
    with pytest.raises(ValueError, match="filter the table"):
        rm_training.plot_ood(pd.concat([table, table]))
