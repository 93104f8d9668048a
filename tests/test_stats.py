"""Tests for mars_lib.evaluation.stats: interval coverage on simulated RM evaluations, and the small rules.

The simulator draws a crossed design like the real one: K strategies x S training seeds, each scored
on the same C prompts (clusters) x P pairs. Outcome of (strategy k, seed s, pair j of cluster c):
    y ~ Bernoulli(sigmoid(mu_k + a_{k,s} + b_c + p_j + h_{k,c}))
with a = training-seed offset (correlated across strategies that share the seed), b = prompt
difficulty, p = pair difficulty, h = strategy x prompt interaction, all normal with mean 0.
The truth is the population mean over NEW seeds and NEW prompts: E[sigmoid(mu_k + Z)] with
Z ~ N(0, tau^2), tau^2 the sum of the four variances, computed exactly by Gauss-Hermite quadrature.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from mars_lib.evaluation.stats import (METHOD, VERDICTS, benjamini_hochberg, holm, mde, norm_quantile, p_value,
                            paired_difference, t_quantile, two_stage_bootstrap, verdict)


def simulate_per_pair(mu, n_seeds, n_clusters, pairs_per_cluster, seed_sd, cluster_sd, rng,
                      pair_sd=0.5, het_sd=0.2, seed_corr=0.5) -> pd.DataFrame:
    """Per-pair table for strategies s0, s1, ... with logit intercepts ``mu`` (see module doc)."""
    k, s, c, p = len(mu), n_seeds, n_clusters, pairs_per_cluster
    shared = rng.normal(size=(1, s, 1))
    own = rng.normal(size=(k, s, 1))
    seed_off = seed_sd * (math.sqrt(seed_corr) * shared + math.sqrt(1 - seed_corr) * own)
    cluster = np.repeat(rng.normal(0, cluster_sd, c), p)[None, None, :]
    pair = rng.normal(0, pair_sd, c * p)[None, None, :]
    het = np.repeat(rng.normal(0, het_sd, (k, c)), p, axis=1)[:, None, :]
    logit = np.asarray(mu, float)[:, None, None] + seed_off + cluster + pair + het
    y = (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(float)
    n = c * p
    return pd.DataFrame({
        "strategy": np.repeat([f"s{i}" for i in range(k)], s * n),
        "seed": np.tile(np.repeat(np.arange(s) + 100, n), k),
        "cluster": np.tile(np.repeat([f"prompt{i}" for i in range(c)], p), k * s),
        "pair_id": np.tile(np.arange(n), k * s),
        "value": y.ravel(),
    })


def true_mean(mu, seed_sd, cluster_sd, pair_sd=0.5, het_sd=0.2) -> float:
    """Population mean E[sigmoid(mu + Z)], Z ~ N(0, tau^2), by 80-point Gauss-Hermite (exact here)."""
    tau = math.sqrt(seed_sd ** 2 + cluster_sd ** 2 + pair_sd ** 2 + het_sd ** 2)
    x, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w / (1 + np.exp(-(mu + tau * x)))) / math.sqrt(2 * math.pi))


def naive_interval(per_pair, strategy, rng, n_boot=1000, level=0.95):
    """The old method: percentile bootstrap over seed means only, test set held fixed."""
    seed_means = per_pair[per_pair.strategy == strategy].groupby("seed")["value"].mean().to_numpy()
    idx = rng.integers(0, len(seed_means), size=(n_boot, len(seed_means)))
    reps = seed_means[idx].mean(1)
    return np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])


def coverage(n_sims, mu, n_seeds, n_clusters, pairs_per_cluster, seed_sd, cluster_sd, rng_seed,
             with_naive=False, n_boot=1000):
    """Fractions of simulations whose 95% intervals cover the true mean of s0 and true s1 - s0."""
    rng = np.random.default_rng(rng_seed)
    truth0 = true_mean(mu[0], seed_sd, cluster_sd)
    truth_diff = true_mean(mu[1], seed_sd, cluster_sd) - truth0
    hit_mean = hit_diff = hit_naive = 0
    for i in range(n_sims):
        df = simulate_per_pair(mu, n_seeds, n_clusters, pairs_per_cluster, seed_sd, cluster_sd, rng)
        r = two_stage_bootstrap(df[df.strategy == "s0"], n_boot=n_boot, seed=i).iloc[0]
        hit_mean += r.lo <= truth0 <= r.hi
        d = paired_difference(df, "s1", "s0", n_boot=n_boot, seed=i)
        hit_diff += d["lo"] <= truth_diff <= d["hi"]
        if with_naive:
            lo, hi = naive_interval(df, "s0", rng)
            hit_naive += lo <= truth0 <= hi
    return hit_mean / n_sims, hit_diff / n_sims, hit_naive / n_sims


# ----------------------------------------------------------------------------- coverage
def test_coverage_10_seeds():
    cov_mean, cov_diff, _ = coverage(200, mu=[0.8, 1.1], n_seeds=10, n_clusters=150, pairs_per_cluster=2,
                                     seed_sd=0.15, cluster_sd=1.0, rng_seed=2024)
    print(f"10 seeds: coverage mean {cov_mean:.3f}, difference {cov_diff:.3f}")
    assert cov_mean >= 0.90 and cov_diff >= 0.90, (cov_mean, cov_diff)


def test_coverage_5_seeds_seed_variation_dominant():
    # large seed SD: the seed stage dominates, so the small-S correction (t_{S-1}-like) matters
    cov_mean, cov_diff, _ = coverage(200, mu=[0.8, 1.1], n_seeds=5, n_clusters=150, pairs_per_cluster=2,
                                     seed_sd=0.4, cluster_sd=1.0, rng_seed=7)
    print(f"5 seeds: coverage mean {cov_mean:.3f}, difference {cov_diff:.3f}")
    assert cov_mean >= 0.90 and cov_diff >= 0.90, (cov_mean, cov_diff)


def test_naive_seed_only_bootstrap_undercovers():
    # seed SD small relative to test-sampling noise: ignoring the test sample misses most of the error
    cov_mean, _, cov_naive = coverage(200, mu=[0.8, 1.1], n_seeds=10, n_clusters=150, pairs_per_cluster=2,
                                      seed_sd=0.05, cluster_sd=1.0, rng_seed=11, with_naive=True)
    print(f"small seed SD: coverage two-stage {cov_mean:.3f} vs naive seed-only {cov_naive:.3f}")
    assert cov_mean >= 0.90
    assert cov_mean - cov_naive >= 0.25, (cov_mean, cov_naive)
    assert cov_naive < 0.8


# ----------------------------------------------------------------------------- exact cases
def _small():
    rows = []
    vals = {("A", 1): [1, 0, 1, 1], ("A", 2): [0, 0, 1, 1], ("B", 1): [1, 1, 1, 0], ("B", 2): [1, 1, 0.5, 1]}
    for (strategy, seed), v in vals.items():
        for pair_id, (cluster, value) in enumerate(zip(["x", "x", "y", "z"], v)):
            rows.append(dict(strategy=strategy, seed=seed, cluster=cluster, pair_id=pair_id, value=value))
    return pd.DataFrame(rows)


def test_point_estimates_are_plain_means():
    df = _small()
    out = two_stage_bootstrap(df, n_boot=200).set_index("strategy")
    assert list(out.columns) == ["mean", "lo", "hi", "se", "df", "n_seeds", "n_clusters", "n_pairs", "method"]
    assert out.loc["A", "mean"] == pytest.approx(5 / 8)
    assert out.loc["B", "mean"] == pytest.approx(6.5 / 8)
    assert out.loc["A", ["n_seeds", "n_clusters", "n_pairs"]].tolist() == [2, 3, 4]
    assert (out["lo"] <= out["mean"]).all() and (out["mean"] <= out["hi"]).all()
    assert (out["method"] == METHOD).all()
    d = paired_difference(df, "B", "A", n_boot=200)
    assert d["effect"] == pytest.approx(6.5 / 8 - 5 / 8)
    assert (d["n_seeds"], d["n_clusters"], d["n_pairs"]) == (2, 3, 4)
    assert d["lo"] <= d["effect"] <= d["hi"] and 0 <= d["p_better"] <= 1
    assert d["mde"] == pytest.approx(mde(d["se"], d["df"]))
    assert d["mde"] > t_quantile(0.975, d["df"]) * d["se"] == pytest.approx(d["hi"] - d["effect"])
    assert d["p"] == pytest.approx(p_value(d["effect"], d["se"], d["df"]))


def test_difference_with_itself_is_exactly_zero():
    d = paired_difference(_small(), "A", "A", n_boot=300)
    assert d["effect"] == 0.0 and d["lo"] == 0.0 and d["hi"] == 0.0 and d["se"] == 0.0
    assert d["p_better"] == 0.0 and d["mde"] == 0.0 and d["p"] == 1.0


def test_deterministic_given_seed():
    df = simulate_per_pair([0.5, 0.7], 4, 30, 2, 0.2, 1.0, np.random.default_rng(0))
    assert paired_difference(df, "s1", "s0", seed=3) == paired_difference(df, "s1", "s0", seed=3)
    pd.testing.assert_frame_equal(two_stage_bootstrap(df, seed=3), two_stage_bootstrap(df, seed=3))


def test_speed_10_seeds_1000_clusters_2000_reps():
    df = simulate_per_pair([0.5], 10, 1000, 1, 0.2, 1.0, np.random.default_rng(1))
    t0 = time.perf_counter()
    two_stage_bootstrap(df, n_boot=2000)
    assert time.perf_counter() - t0 < 2.0      # typically ~0.05 s; generous for a shared CPU


# ----------------------------------------------------------------------------- small rules
def test_quantiles_and_mde():
    assert mde(1.0, math.inf) == pytest.approx(2.8016, abs=5e-4)                 # z only for df = inf
    assert mde(2.0, math.inf, alpha=0.05, power=0.5) == pytest.approx(2 * 1.959964, abs=1e-5)
    # the interval's t quantiles: t_{4, .975} + t_{4, .8} = 2.776445 + 0.940965
    assert mde(1.0, 4) == pytest.approx(2.776445 + 0.940965, abs=1e-5)
    for df in (1, 2, 4, 9, 30, 1e6):                                  # never below the half-width t * se
        assert mde(0.01, df) > t_quantile(0.975, df) * 0.01
    assert math.isnan(mde(float("nan"), 4)) and math.isnan(mde(1.0, float("nan")))
    assert norm_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    for df, q in [(1, 12.706205), (4, 2.776445), (9, 2.262157), (30, 2.042272), (math.inf, 1.959964)]:
        assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-5)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-5)
    assert t_quantile(0.95, 4) < t_quantile(0.95, 3.5) < t_quantile(0.95, 3)  # non-integer df


def test_verdict_rule():
    assert VERDICTS == ("held", "not held", "equivalent", "inconclusive", "identical")
    # held / not held read the (adjusted) p and the sign of the effect
    assert verdict(0.03, 0.01, 0.05, 0.001) == "held"
    assert verdict(-0.03, -0.05, -0.01, 0.001) == "not held"
    assert verdict(0.03, 0.01, 0.05, 0.2) == "inconclusive"        # interval above 0, but not after adjustment
    # equivalent: the whole interval inside ±delta, and only where the test does not reject
    assert verdict(0.0005, -0.003, 0.004, 0.8, delta=0.01) == "equivalent"
    assert verdict(0.0005, -0.003, 0.004, 0.8) == "inconclusive"              # no delta: no equivalence
    assert verdict(0.004, -0.003, 0.011, 0.3, delta=0.01) == "inconclusive"   # reaches past +delta
    assert verdict(-0.004, -0.01, 0.002, 0.3, delta=0.01) == "inconclusive"   # touches -delta
    assert verdict(0.004, 0.002, 0.006, 0.001, delta=0.01) == "held"          # a small but real effect
    assert verdict(0.02, np.nan, np.nan, np.nan, delta=0.01) == "inconclusive"  # one seed: no interval, no p


def test_p_value_uses_the_interval_t_reference():
    assert p_value(2.776445, 1.0, 4) == pytest.approx(0.05, abs=1e-6)
    assert p_value(-1.959964, 1.0, math.inf) == pytest.approx(0.05, abs=1e-6)
    assert p_value(0.0, 0.0, 5) == 1.0 and p_value(0.1, 0.0, 5) == 0.0
    assert math.isnan(p_value(0.1, float("nan"), 5))


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # Holm, m = 4 (NaN is no test): sorted 0.005, 0.01, 0.03, 0.04 -> 4*.005, 3*.01, 2*.03, 1*.04, running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02, np.nan], equal_nan=True)
    # BH: m/rank * p = 4*.005/1, 4*.01/2, 4*.03/3, 4*.04/4 = .02, .02, .04, .04, running min from the top
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02, np.nan], equal_nan=True)
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])                      # capped at 1
    np.testing.assert_allclose(benjamini_hochberg([0.5, 0.01, 0.02]), [0.5, 0.03, 0.03])
    assert holm([]).size == 0 and np.isnan(benjamini_hochberg([np.nan])).all()
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        holm([1.2])


# ----------------------------------------------------------------------------- bad input
def test_missing_column():
    with pytest.raises(ValueError, match="missing column.*cluster"):
        two_stage_bootstrap(_small().drop(columns="cluster"))


def test_strategy_absent():
    with pytest.raises(ValueError, match="strategy 'C' not in per_pair"):
        paired_difference(_small(), "C", "A")


def test_seeds_do_not_match():
    df = _small()
    df.loc[df.strategy == "B", "seed"] = df.loc[df.strategy == "B", "seed"] + 10
    with pytest.raises(ValueError, match="seeds of 'A' and 'B' do not match"):
        paired_difference(df, "A", "B")


def test_pairs_do_not_match_or_unbalanced():
    df = _small()
    df = df[~((df.strategy == "B") & (df.pair_id == 0))]
    df.loc[df.strategy == "B", "pair_id"] = df.loc[df.strategy == "B", "pair_id"].replace({1: 0})
    with pytest.raises(ValueError, match="same pair_ids"):
        paired_difference(df, "A", "B")
    with pytest.raises(ValueError, match="same 4 pairs"):
        two_stage_bootstrap(_small().iloc[1:])


def test_one_seed_and_nan_rejected():
    df = _small()
    with pytest.raises(ValueError, match="need >= 2"):
        two_stage_bootstrap(df[df.seed == 1])
    df.loc[0, "value"] = np.nan
    with pytest.raises(ValueError, match="missing or non-numeric"):
        two_stage_bootstrap(df)


def test_claims_with_one_seed_give_no_interval_and_no_verdict():
    """The paper profile trains one seed (the authors' 42): means and differences are reported, but
    with no interval, since seed variation cannot be estimated, and every verdict is inconclusive."""
    from mars_lib.evaluation import claims
    rng = np.random.default_rng(0)
    rows = [{"track": "t", "rm": "head", "strategy": s, "seed": 42, "pair_id": f"p{i}", "cluster": f"c{i // 2}",
             "correct": float(rng.random() < (0.7 if s == "mars_v1" else 0.6))}
            for s in ("mars_v1", "uniform") for i in range(40)]
    pp = pd.DataFrame(rows)
    iv = claims.strategy_intervals(pp, metrics=("accuracy",))
    assert iv.lo.isna().all() and (iv.n_seeds == 1).all() and iv.method.str.contains("one training seed").all()
    table = claims.claims_table(pp)
    row = table[table.claim_id == "mars_v1>uniform"].iloc[0]
    assert np.isnan(row.lo) and row.verdict == "inconclusive"
    assert row.effect == pytest.approx(pp[pp.strategy == "mars_v1"].correct.mean() - pp[pp.strategy == "uniform"].correct.mean())


def test_cluster_mean_covers_the_true_mean_with_correlated_prompts():
    """One fixed model's accuracy over prompts that each hold several correlated pairs: the cluster t
    interval covers the true mean in >= 90 % of 300 simulated test sets (a per-pair interval would not)."""
    from mars_lib.evaluation.stats import cluster_mean
    rng = np.random.default_rng(3)
    true = float(np.mean(np.clip(0.6 + rng.normal(0, 0.25, 1_000_000), 0, 1)))
    hits = 0
    for _ in range(300):
        p_prompt = np.clip(0.6 + rng.normal(0, 0.25, 40), 0, 1)          # prompt difficulty varies
        v = (rng.random((40, 6)) < p_prompt[:, None]).astype(float).ravel()
        r = cluster_mean(v, np.repeat(np.arange(40), 6))
        hits += r["lo"] <= true <= r["hi"]
    assert hits / 300 >= 0.90
    one = cluster_mean([1.0, 0.0], ["a", "a"])
    assert one["n_clusters"] == 1 and np.isnan(one["lo"])
