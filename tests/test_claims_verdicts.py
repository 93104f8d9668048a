"""Verdicts a reviewer accepts: t-based MDE, p-values with multiplicity control, the "equivalent" and
"identical" verdicts, and intervals that cover with few seeds (mars_lib.evaluation.stats, .verdicts, .claims).

The simulator is the crossed design of tests/test_stats.py (strategies x seeds x prompts x pairs,
outcome Bernoulli(sigmoid(mu_k + seed offset + prompt + pair + strategy x prompt))), vectorised and
with an option for common random numbers: two RMs trained on mostly the same data are right and wrong
on mostly the same pairs, so their per-pair outcomes are strongly correlated, as in the real tables
(there a 2,880-pair, 10-seed design gives se ~0.002 on an accuracy difference).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mars_lib.evaluation import claims, stats, verdicts
from mars_lib.pipeline.config import REPO_ROOT

DELTA = verdicts.DELTA_ACCURACY


def true_mean(mu, seed_sd, cluster_sd=1.0, pair_sd=0.5, het_sd=0.2) -> float:
    """Population mean E[sigmoid(mu + Z)], Z ~ N(0, tau^2): the mean over new seeds AND new prompts."""
    tau = math.sqrt(seed_sd ** 2 + cluster_sd ** 2 + pair_sd ** 2 + het_sd ** 2)
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w / (1 + np.exp(-(mu + tau * x)))) / math.sqrt(2 * math.pi))


def mu_for_difference(target, mu0, seed_sd, het_sd) -> float:
    """The logit intercept of arm 1 whose population accuracy is ``target`` above arm 0's (bisection)."""
    base = true_mean(mu0, seed_sd, het_sd=het_sd)
    lo, hi = mu0 - 2.0, mu0 + 2.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if true_mean(mid, seed_sd, het_sd=het_sd) - base < target else (lo, mid)
    return 0.5 * (lo + hi)


class Design:
    """Two arms ("s0", "s1") x S seeds x C prompts x P pairs; ``draw`` returns one per-pair table."""

    def __init__(self, n_seeds, n_clusters, pairs_per_cluster, seed_sd, het_sd=0.2, common_noise=False,
                 cluster_sd=1.0, pair_sd=0.5, seed_corr=0.5):
        self.s, self.c, self.p = n_seeds, n_clusters, pairs_per_cluster
        self.seed_sd, self.het_sd, self.common = seed_sd, het_sd, common_noise
        self.cluster_sd, self.pair_sd, self.seed_corr = cluster_sd, pair_sd, seed_corr
        n = self.c * self.p
        self.frame = pd.DataFrame({"strategy": np.repeat(["s0", "s1"], self.s * n),
                                   "seed": np.tile(np.repeat(np.arange(self.s), n), 2),
                                   "cluster": np.tile(np.repeat(np.arange(self.c), self.p), 2 * self.s),
                                   "pair_id": np.tile(np.arange(n), 2 * self.s)})

    def truth(self, mu) -> float:
        return (true_mean(mu[1], self.seed_sd, self.cluster_sd, self.pair_sd, self.het_sd)
                - true_mean(mu[0], self.seed_sd, self.cluster_sd, self.pair_sd, self.het_sd))

    def draw(self, mu, rng) -> pd.DataFrame:
        s, c, p = self.s, self.c, self.p
        shared, own = rng.normal(size=(1, s, 1)), rng.normal(size=(2, s, 1))
        seed_off = self.seed_sd * (math.sqrt(self.seed_corr) * shared + math.sqrt(1 - self.seed_corr) * own)
        prompt = np.repeat(rng.normal(0, self.cluster_sd, c), p)[None, None, :]
        pair = rng.normal(0, self.pair_sd, c * p)[None, None, :]
        het = np.repeat(rng.normal(0, self.het_sd, (2, c)), p, axis=1)[:, None, :]
        logit = np.asarray(mu, float)[:, None, None] + seed_off + prompt + pair + het
        u = rng.random((1, s, c * p)) if self.common else rng.random(logit.shape)
        return self.frame.assign(value=(u < 1 / (1 + np.exp(-logit))).ravel().astype(float))


# ----------------------------------------------------------------------------- coverage with few seeds
@pytest.mark.parametrize("n_seeds,seed_sd,het_sd", [(3, 0.4, 0.2), (3, 0.3, 0.8), (5, 0.4, 0.2), (5, 0.3, 0.8)])
def test_interval_covers_with_few_seeds(n_seeds, seed_sd, het_sd):
    """200 data sets of 3 or 5 seeds x 40 prompts, seed variance not negligible (first case: it dominates;
    second: seeds and prompts weigh alike, where the Satterthwaite df matters most). The nominal 95 %
    interval of `stats.paired_difference` covers the true difference in >= 90 % of them; on every data
    set the MDE is at least the interval's half-width and p < 0.05 exactly when the interval excludes 0."""
    design, mu = Design(n_seeds, 40, 2, seed_sd, het_sd), [0.8, 1.1]
    truth, rng = design.truth(mu), np.random.default_rng(100 + n_seeds)
    hits, n_sims = 0, 200
    for i in range(n_sims):
        d = stats.paired_difference(design.draw(mu, rng), "s1", "s0", n_boot=200, seed=i)
        hits += d["lo"] <= truth <= d["hi"]
        assert d["mde"] >= (d["hi"] - d["lo"]) / 2 - 1e-12, d
        assert (d["p"] < 0.05) == (d["lo"] > 0 or d["hi"] < 0), d
    print(f"{n_seeds} seeds, seed sd {seed_sd}, prompt x arm sd {het_sd}: coverage {hits / n_sims:.3f}")
    assert hits / n_sims >= 0.90


# ----------------------------------------------------------------------------- the "equivalent" verdict
@pytest.mark.parametrize("n_seeds,n_clusters,min_power", [(10, 1440, 0.8), (5, 1000, 0.4)])
def test_equivalent_is_rarely_wrong_and_has_power(n_seeds, n_clusters, min_power):
    """A design powered for equivalence (correlated arms, as in the real tables). True difference = delta
    (the boundary, where a wrong "equivalent" is likeliest): called "equivalent" in <= 5 % of 200 data
    sets. True difference = 0: called "equivalent" in most, so the first check is not vacuous."""
    design = Design(n_seeds, n_clusters, 2, seed_sd=0.03, het_sd=0.1, common_noise=True)
    rng, n_sims = np.random.default_rng(7 + n_seeds), 200
    rates = {}
    for target in (DELTA, 0.0):
        mu = [0.8, mu_for_difference(target, 0.8, design.seed_sd, design.het_sd)]
        assert design.truth(mu) == pytest.approx(target, abs=1e-9)
        n_eq = 0
        for i in range(n_sims):
            d = stats.paired_difference(design.draw(mu, rng), "s1", "s0", n_boot=200, seed=i)
            n_eq += stats.verdict(d["effect"], d["lo"], d["hi"], d["p"], DELTA) == "equivalent"
        rates[target] = n_eq / n_sims
    print(f"{n_seeds} seeds: 'equivalent' when the truth is delta {rates[DELTA]:.3f}, when it is 0 {rates[0.0]:.3f}")
    assert rates[DELTA] <= 0.05
    assert rates[0.0] >= min_power


# ----------------------------------------------------------------------------- claims_table
def _per_pair(rng, n_seeds=6, n_pairs=400):
    """Per-pair outcomes of one track for mars_v1, mars_v2, uniform, none_matched, reweight, easy_first;
    reweight trains on the same data as none_matched, easy_first as mars_v1 (identical reward gaps)."""
    clusters = np.repeat(np.arange(n_pairs // 2), 2)
    gaps = {s: rng.normal(shift, 1.0, (n_seeds, n_pairs))
            for s, shift in (("mars_v1", 0.6), ("mars_v2", 0.0), ("uniform", 0.55), ("none_matched", 0.5))}
    gaps["reweight"], gaps["easy_first"] = gaps["none_matched"].copy(), gaps["mars_v1"] + 1e-12
    rows = [pd.DataFrame({"track": "t", "rm": "head", "strategy": s, "seed": k, "pair_id": np.arange(n_pairs),
                          "cluster": clusters, "reward_gap": g[k], "correct": (g[k] > 0).astype(float)})
            for s, g in gaps.items() for k in range(n_seeds)]
    return pd.concat(rows, ignore_index=True)


def test_claims_table_identical_arms_and_adjusted_p():
    pp = _per_pair(np.random.default_rng(3))
    t = claims.claims_table(pp, n_boot=200)
    assert list(t.columns) == verdicts.COLUMNS
    by = t.set_index("claim_id")
    # easy_first = mars_v1: not a claim, no p, out of the multiplicity families
    r = by.loc["mars_v1>easy_first"]
    assert r.verdict == "identical" and np.isnan(r.p) and np.isnan(r.p_adj) and np.isnan(r.p_holm)
    assert r.method == "identical to easy_first: the arms trained on the same data"
    # reweight = none_matched: mars_v1>reweight repeats mars_v1>none_matched, so it is not repeated
    assert "mars_v1>reweight" not in by.index
    assert "reweight identical to none_matched (mars_v1>reweight not repeated)" in by.loc["mars_v1>none_matched", "method"]
    # the arms that differ all stay, each with a p from its own t reference
    assert {"mars_v1>uniform", "mars_v2>uniform", "mars_v1>none_matched", "mars_v2>mars_v1"} <= set(by.index)
    tests = t[t.verdict != "identical"]
    assert tests.p.notna().all()
    for r in tests.itertuples():
        assert r.p == pytest.approx(stats.p_value(r.effect, r.se, r.df))
        assert r.mde == pytest.approx(stats.mde(r.se, r.df)) and r.mde >= (r.hi - r.lo) / 2
    np.testing.assert_allclose(t.p_adj, stats.benjamini_hochberg(t.p), equal_nan=True)
    assert (t.delta == DELTA).all()
    for r in t.itertuples():                       # the verdict reads p_adj (BH over the table)
        if r.verdict != "identical":
            assert r.verdict == stats.verdict(r.effect, r.lo, r.hi, r.p_adj, r.delta)
    # mars_v2 is far below uniform here: a rejection whatever the adjustment
    assert by.loc["mars_v2>uniform", "verdict"] == "not held"
    pd.testing.assert_frame_equal(verdicts.decide(t), t)          # idempotent (write_claims re-applies it)


def test_verdicts_families_are_claims_over_tracks_and_regimes():
    t = pd.DataFrame({"claim_id": ["x", "x", "x", "y", "y", "z"], "track": ["a", "b", "c", "a", "b", "a"],
                      "effect": [0.02, 0.01, -0.001, 0.03, 0.0, 0.0], "lo": [0.011, -0.001, -0.004, 0.02, 0.0, 0.0],
                      "hi": [0.029, 0.021, 0.002, 0.04, 0.0, 0.0], "p": [0.001, 0.04, 0.6, 0.0001, np.nan, 1.0],
                      "delta": [0.01] * 5 + [np.nan], "verdict": [None] * 4 + ["identical", None]})
    v = verdicts.decide(t)
    np.testing.assert_allclose(v.p_holm, [0.003, 0.08, 0.6, 0.0001, np.nan, 1.0], equal_nan=True)
    np.testing.assert_allclose(v.p_adj, [0.0025, 0.0667, 0.75, 0.0005, np.nan, 1.0], atol=1e-4, equal_nan=True)
    assert v.verdict.tolist() == ["held", "inconclusive", "equivalent", "held", "identical", "inconclusive"]


def test_downstream_rows_read_the_summary_interval_and_mde_covers_it():
    win = pd.DataFrame({"a": ["mars_v1", "mars_v1", "none"], "b": ["uniform", "won", "uniform"],
                        "mean": [0.53, 0.5005, 0.5], "se": [0.0065, 0.0004, 0.004], "df": [4.0, 60.0, 4.0],
                        "n_seeds": [3, 10, 3], "prompts": [480, 480, 480]})
    half = np.array([stats.t_quantile(0.975, d) for d in win.df]) * win.se
    win = win.assign(lo=win["mean"] - half, hi=win["mean"] + half)
    t = claims.downstream_claims(win)
    assert list(t.claim_id) == ["bon:mars_v1>uniform", "bon:mars_v1>won"]     # only MARS rows
    r = t.iloc[0]
    assert r.effect == pytest.approx(0.03) and r.lo == pytest.approx(win.lo[0] - 0.5) and r.se == 0.0065
    assert r.p == pytest.approx(stats.p_value(0.03, 0.0065, 4.0))
    assert (t.mde >= (t.hi - t.lo) / 2).all()
    # p(first) ~ 0.01 from t_4, BH over the two rows ~0.02: held; the second lies inside ±0.01
    assert t.verdict.tolist() == ["held", "equivalent"]


def test_win_rate_summary_uses_the_two_stage_interval():
    """notebook 05's win_rate_summary comes from stats.two_stage_bootstrap on per-prompt outcomes: with 3
    seeds its df is small and its interval wider than a seed-only percentile interval."""
    rng = np.random.default_rng(0)
    rows = [pd.DataFrame({"strategy": "mars_v1>uniform", "seed": s, "cluster": np.arange(40), "pair_id": np.arange(40),
                          "value": rng.choice([0.0, 0.5, 1.0], 40)}) for s in range(3)]
    r = stats.two_stage_bootstrap(pd.concat(rows), n_boot=500).iloc[0]
    per_seed = pd.concat(rows).groupby("seed").value.mean()
    assert r.hi - r.lo > per_seed.max() - per_seed.min()
    assert r.n_seeds == 3 and r.n_clusters == 40


def test_bon_iid_rows_repeating_another_are_not_repeated():
    base = dict(judge="gold", n=16, a="mars_v1", df=9.0, p_better=0.5, n_seeds=10, n_clusters=160, n_pairs=160)
    paired = pd.DataFrame([dict(base, b="none_matched", effect=-0.002, lo=-0.024, hi=0.020, se=0.00995),
                           dict(base, b="reweight", effect=-0.002, lo=-0.024, hi=0.020, se=0.00995),
                           dict(base, b="uniform", effect=0.0, lo=0.0, hi=0.0, se=0.0),
                           dict(base, b="none", effect=-0.06, lo=-0.11, hi=-0.006, se=0.026)])
    t = claims.bon_iid_claims(paired)
    assert t.claim_id.tolist() == ["bon_iid[gold]:mars_v1>none_matched", "bon_iid[gold]:mars_v1>uniform",
                                   "bon_iid[gold]:mars_v1>none"]
    assert "reweight identical to none_matched" in t.method.iloc[0]
    assert t.verdict.iloc[1] == "identical" and np.isnan(t.p.iloc[1])
    assert t.delta.isna().all() and (t.mde >= (t.hi - t.lo) / 2 - 1e-12).all()   # judge points: no equivalence
    assert t.mde.iloc[0] == pytest.approx((stats.t_quantile(0.975, 9) + stats.t_quantile(0.8, 9)) * 0.00995)


def test_smallest_effect_per_metric():
    assert verdicts.smallest_effect("accuracy") == verdicts.smallest_effect("gold_accuracy") == 0.01
    assert verdicts.smallest_effect("bon_win_rate") == 0.01
    # SNR: the change that moves Φ(SNR) (the accuracy of a normal gap) by one point
    snr = 0.56
    d = verdicts.smallest_effect("snr", snr)
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))                          # noqa: E731
    assert phi(snr + d / 2) - phi(snr - d / 2) == pytest.approx(0.01, rel=1e-3)
    assert verdicts.smallest_effect("mean_sigma_prime", 0.2) == pytest.approx(0.01)
    assert np.isnan(verdicts.smallest_effect("bon16_gold")) and np.isnan(verdicts.smallest_effect("snr"))


# ----------------------------------------------------------------------------- the committed tables
NB3 = REPO_ROOT / "results" / "03_rm_training"


@pytest.mark.skipif(not (NB3 / "per_pair_test.parquet").exists(), reason="no committed reference run")
def test_committed_per_pair_tables_give_no_mde_below_the_half_width():
    pp = pd.concat([pd.read_parquet(NB3 / f) for f in ("per_pair_test.parquet", "per_pair_human_track.parquet")
                    if (NB3 / f).exists()], ignore_index=True)
    t = claims.claims_table(pp, n_boot=200)
    assert set(t.verdict) <= set(stats.VERDICTS)
    assert (t.mde >= (t.hi - t.lo) / 2 - 1e-12).all()
    # on these runs reweight trains on none_matched's data: its row is folded into none_matched's
    assert "mars_v1>reweight" not in set(t.claim_id)
