"""The committed judgments of the human-labelled pairs (data/judge_human/): checksum, coverage, and equal
to what the judges say when asked again (a sample of pairs, both judges, no cache)."""
import json

import numpy as np
import pandas as pd
import pytest

from mars_lib.judges import agreement as ja
from mars_lib.judges.gold1 import FACETS


def test_committed_facets_cover_every_pair_of_both_judges():
    manifest = json.loads((ja.FACETS_DIR / ja.FACETS_MANIFEST).read_text())
    df = pd.read_parquet(ja.FACETS_DIR / ja.FACETS_FILE)
    assert len(df) == manifest["rows"] == 2 * 2 * sum(manifest["pairs"].values())
    for which, (_, jid) in ja.JUDGES.items():
        for ds in ja.DATASETS:
            pairs = ja.load_human_pairs(ds, manifest["chitchat_pairs"], manifest["seed"])
            got = ja.committed_facets(jid, ds, pairs)
            assert got is not None, (which, ds)
            assert all(f.shape == (len(pairs), len(FACETS)) and f.notna().all().all() for f in got)


def test_changed_texts_or_another_judge_are_judged_again():
    pairs = ja.load_human_pairs("mt-bench-human").head(5)
    assert ja.committed_facets(ja.JUDGES["old"][1], "mt-bench-human", pairs) is not None
    edited = pairs.assign(chosen=pairs.chosen + " (edited)")
    assert ja.committed_facets(ja.JUDGES["old"][1], "mt-bench-human", edited) is None
    assert ja.committed_facets("gold-judge-99", "mt-bench-human", pairs) is None


@pytest.mark.slow                  # real models in child processes: the full suite (and CI) runs it
@pytest.mark.parametrize("which", ["old", "new"])
def test_committed_facets_equal_a_fresh_judgment(which):
    from mars_lib.judges.gold1 import GoldJudge
    from mars_lib.judges.gold3 import GoldJudge3
    judge = GoldJudge.offline(cached=False) if which == "old" else GoldJudge3.offline(cached=False, progress=False)
    jid = ja.JUDGES[which][1]
    for ds in ja.DATASETS:
        pairs = ja.load_human_pairs(ds, 400)
        size = pairs.chosen.str.len() + pairs.rejected.str.len()
        rng = np.random.default_rng(0)
        pick = sorted(set(size.nsmallest(2).index) | {int(rng.integers(len(pairs)))})   # cheap ones + one at random
        sample = pairs.loc[pick].reset_index(drop=True)
        fresh = ja.pair_facets(judge, sample)
        committed = ja.committed_facets(jid, ds, sample)
        for f, c in zip(fresh, committed):
            assert np.allclose(f[list(FACETS)].to_numpy(float), c.to_numpy(float), atol=1e-4), (ds, f, c)
