"""RewardBench: the row converter, RewardBench's section weighting, the authors' stratified protocol,
and loading a local copy in the hub's format (splits declared in the README's YAML header)."""
import numpy as np
import pandas as pd
import pytest

import standins
from mars_lib.evaluation.rewardbench import (SECTIONS, authors_protocol, load_rewardbench, rewardbench_pairs, section_scores,
                                  stratified_sample, subset_weights)


def test_converter_keeps_duplicates_skips_bad_rows_and_maps_sections():
    rows = [{"id": 1, "prompt": "p", "chosen": "a", "rejected": "b", "subset": "alpacaeval-easy"},
            {"id": 2, "prompt": "p", "chosen": "a", "rejected": "b", "subset": "alpacaeval-easy"},   # duplicate: kept
            {"id": 3, "prompt": "p", "chosen": "", "rejected": "b", "subset": "hep-go"},
            {"id": 4, "prompt": "p", "chosen": "same", "rejected": "same", "subset": "hep-go"},
            {"id": 5, "prompt": "q", "chosen": "c", "rejected": "d", "subset": "something-new"}]
    df = rewardbench_pairs(rows)
    assert list(df.pair_id) == ["rb-1", "rb-2", "rb-5"]
    assert df.section.tolist()[:2] == ["Chat", "Chat"] and pd.isna(df.section.iloc[2])
    assert df.attrs["skipped"] == {"missing or empty text": 1, "chosen == rejected": 1}
    with pytest.raises(ValueError, match="subset"):
        rewardbench_pairs([{"prompt": "p", "chosen": "a", "rejected": "b"}])


def test_official_weighting_counts_math_as_much_as_code():
    # math-prm: 447 pairs all correct; six hep subsets of 164 pairs all wrong
    subsets = ["math-prm"] * 447 + [f"hep-{x}" for x in ("cpp", "go", "java", "js", "python", "rust") for _ in range(164)]
    correct = [True] * 447 + [False] * 984
    w = subset_weights(pd.Series(subsets).value_counts().to_dict())
    assert w["math-prm"] == 984 and w["hep-go"] == 164
    assert section_scores(subsets, correct)["Reasoning"] == pytest.approx(0.5)       # RewardBench's leaderboard
    assert section_scores(subsets, correct, weighting="size")["Reasoning"] == pytest.approx(447 / 1431)


def test_section_scores_and_core_by_hand():
    subsets = ["alpacaeval-easy"] * 4 + ["mt-bench-med"] * 2 + ["donotanswer"] * 2 + ["not-a-subset"] * 3
    correct = [1, 1, 1, 0] + [0, 0] + [1, 0] + [1, 1, 1]
    s = section_scores(subsets, correct)
    assert s["Chat"] == pytest.approx(3 / 6) and s["Safety"] == pytest.approx(0.5)
    assert set(s) == {"Chat", "Safety", "Core"} and s["Core"] == pytest.approx(0.5)


def test_stratified_sample_is_proportional_with_one_per_subset_and_seeded():
    subsets = np.array(["big"] * 900 + ["mid"] * 95 + ["tiny"] * 5)
    idx = stratified_sample(subsets, size=100, seed=188)
    counts = pd.Series(subsets[idx]).value_counts()
    assert len(idx) == 100 and len(set(idx)) == 100
    assert counts["big"] == 90 and counts["mid"] in (9, 10) and counts["tiny"] >= 1
    np.testing.assert_array_equal(idx, stratified_sample(subsets, size=100, seed=188))
    assert not np.array_equal(idx, stratified_sample(subsets, size=100, seed=144))


def test_authors_protocol_reports_mean_and_population_std_over_two_subsamples():
    rng = np.random.default_rng(0)
    subsets = np.array([s for subs in SECTIONS.values() for s in subs for _ in range(40)])
    gap = rng.normal(0.3, 1.0, len(subsets))
    out = authors_protocol(subsets, gap, size=200)
    assert set(out.section) == {"Chat", "Chat Hard", "Safety", "Reasoning", "Core"}
    assert (out.seeds == 2).all() and (out["std"] >= 0).all() and out["mean"].between(0, 1).all()


def test_load_a_local_copy_in_the_hub_format(tmp_path):
    path = standins.reward_bench(tmp_path)
    raw, filt = load_rewardbench(str(path), "raw"), load_rewardbench(str(path), "filtered")
    assert len(raw) == len(filt) + 2 and raw.section.isna().sum() == 2 and filt.section.notna().all()
    from mars_lib.data.pairs import DataError
    with pytest.raises(DataError, match="rewardbench=None"):
        load_rewardbench("allenai/reward-bench", "filtered")            # hub disabled in the tests
