"""The committed reference tables agree with each other: every summary is recomputed from the
per-seed history or the per-pair outcomes it was built from, and compared."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.evaluation import claims
from mars_lib.pipeline.config import REPO_ROOT

R = REPO_ROOT / "results"
NB3 = R / "03_rm_training"
pytestmark = pytest.mark.skipif(not (NB3 / "per_pair_test.parquet").exists(), reason="no committed reference run")


def _last(history: pd.DataFrame, split="test") -> pd.DataFrame:
    return history[(history["round"] == history["round"].max()) & (history.split == split)]


def test_summary_means_are_the_last_round_means_of_the_history():
    last = _last(pd.read_csv(NB3 / "history.csv"))
    summary = pd.read_csv(NB3 / "summary.csv")
    again = last.groupby(["strategy", "metric"]).value.agg(["mean", "size"]).reset_index()
    m = summary.merge(again, on=["strategy", "metric"], suffixes=("", "_again"))
    assert len(m) == len(summary) and len(m) > 20
    np.testing.assert_allclose(m["mean"], m.mean_again, rtol=1e-5, atol=1e-6)
    assert (m.n == m["size"]).all() and (m.sd >= 0).all()
    sd_again = last.groupby(["strategy", "metric"]).value.std(ddof=1).rename("sd_again").reset_index()
    m = m.merge(sd_again, on=["strategy", "metric"])
    np.testing.assert_allclose(m.sd, m.sd_again, rtol=1e-3, atol=1e-5)  # history.csv is rounded


def test_per_pair_outcomes_reproduce_the_history_accuracy_of_every_run():
    pp = pd.read_parquet(NB3 / "per_pair_test.parquet")
    acc = pp.groupby(["strategy", "seed"]).correct.mean().rename("from_pairs").reset_index()
    last = _last(pd.read_csv(NB3 / "history.csv"))
    hist = last[last.metric == "accuracy"][["strategy", "seed", "value"]]
    m = acc.merge(hist, on=["strategy", "seed"])
    assert len(m) == len(acc) == len(hist)
    np.testing.assert_allclose(m.from_pairs, m.value, atol=1e-6)


def test_interval_means_and_claim_effects_follow_from_the_per_pair_outcomes():
    pp = pd.concat([pd.read_parquet(NB3 / f) for f in ("per_pair_test.parquet", "per_pair_human_track.parquet")
                    if (NB3 / f).exists()], ignore_index=True)
    means = pp.groupby(["track", "strategy"]).correct.mean()
    iv = pd.concat([pd.read_csv(NB3 / f) for f in ("intervals.csv", "intervals_human_track.csv")
                    if (NB3 / f).exists()], ignore_index=True)
    iv = iv[(iv.metric == "accuracy") & (iv.rm == "head")]
    assert len(iv) >= 20
    for r in iv.itertuples():
        assert abs(means[(r.track, r.strategy)] - r.mean) < 1e-6, (r.track, r.strategy)
        assert r.lo < r.mean < r.hi and r.n_pairs == pp[(pp.track == r.track) & (pp.strategy == r.strategy)].pair_id.nunique()
    table = pd.read_csv(R / "claims.csv")
    head = table[(table.rm == "head") & (table.metric == "accuracy")]
    spec = {cid: (a, b) for cid, _, a, b, metric in claims.claim_specs() if metric == "accuracy"}
    checked = 0
    for r in head.itertuples():
        if r.claim_id in spec:
            a, b = spec[r.claim_id]
            assert abs(means[(r.track, a)] - means[(r.track, b)] - r.effect) < 1e-6, (r.claim_id, r.track)
            checked += 1
    assert checked >= 15


def test_verdicts_follow_the_stated_rule():
    """Every committed verdict is `stats.verdict` of its row (BH-adjusted p over the table, δ), no MDE is
    below its interval's half-width, and identical arms are reported once, as no test."""
    from mars_lib.evaluation import stats
    table = pd.read_csv(R / "claims.csv")
    assert set(table.verdict) <= set(stats.VERDICTS)
    tested = table[table.verdict != "identical"]
    assert table[table.verdict == "identical"].p.isna().all()
    for r in tested.itertuples():
        assert r.verdict == stats.verdict(r.effect, r.lo, r.hi, r.p_adj, r.delta), r
    finite = tested[np.isfinite(tested.lo) & np.isfinite(tested.mde)]
    assert (finite.mde >= (finite.hi - finite.lo) / 2 - 1e-9).all()
    ok = tested.p.notna().to_numpy()
    np.testing.assert_allclose(tested.p_adj.to_numpy()[ok], stats.benjamini_hochberg(tested.p.to_numpy()[ok]),
                               rtol=1e-4, atol=1e-6)                 # the table holds 6 significant digits
    assert not table.duplicated(["claim_id", "track", "rm", "metric"]).any()


def test_committed_generation_bench_shows_batched_at_least_10x_the_naive_loop():
    """bench/generation_speed.py's committed table: the naive loop (model.generate, one prompt at a
    time) first, and the best batched row of our loop at >= 10x its tokens/s."""
    bench = pd.read_csv(R / "bench" / "generation_speed.csv")
    naive = bench[bench.path == "one at a time, model.generate"].tokens_per_s.item()
    best = bench[bench.path.str.startswith("batched")].tokens_per_s.max()
    assert best / naive >= 10
    assert np.allclose(bench.speedup_vs_one_at_a_time.dropna(), bench.tokens_per_s.dropna() / naive)


def test_claims_only_rebuilds_the_committed_claims_table(tmp_path):
    """`./run_all.sh --claims-only` on a copy of the committed tables gives the committed claims.csv:
    every effect, interval and verdict follows from the saved tables alone."""
    import shutil

    from mars_lib.pipeline.runner import rebuild_claims
    shutil.copytree(R, tmp_path / "r", ignore=shutil.ignore_patterns("*.png", "executed", "models"))
    assert rebuild_claims("cpu", {"results_dir": str(tmp_path / "r")}) == 0
    a, b = pd.read_csv(R / "claims.csv"), pd.read_csv(tmp_path / "r" / "claims.csv")
    assert list(a.claim_id) == list(b.claim_id) and (a.verdict == b.verdict).all()
    np.testing.assert_allclose(a[["effect", "lo", "hi", "p_adj"]], b[["effect", "lo", "hi", "p_adj"]], atol=1e-9)
