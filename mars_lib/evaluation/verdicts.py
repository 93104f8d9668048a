"""The verdicts of the claims table (`mars_lib.evaluation.claims`): the smallest effect of interest per metric,
arms that are one RM, and multiplicity control. The rules and their reasons: docs/method.md §11.

Every row of a claims table has a two-sided p from the t reference of its interval (`stats.p_value`).
`decide` adjusts it twice: Holm within the claim's family (``p_holm``; the rows sharing a ``claim_id``,
i.e. one claim over every track and rm regime) and Benjamini-Hochberg over the whole table
(``p_adj``), and gives each row its verdict from **p_adj** (`stats.verdict`): held / not held /
equivalent (the plain 95 % interval inside ±delta) / inconclusive. Rows whose two arms are one RM are
"identical" and no test (`identical_arms`, `merge_identical`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mars_lib.evaluation import stats

ALPHA = 0.05                 # level of every test; the verdict reads the BH-adjusted p (p_adj) at this level
DELTA_ACCURACY = 0.01        # smallest effect of interest on a 0-1 scale: one accuracy (or win-rate) point
DELTA_CURVATURE_REL = 0.05   # mean σ′: 5 % of the baseline's, the information of 5 % more (or fewer) pairs
IDENTICAL_ATOL = 1e-9        # reward gaps this close on every test pair and seed: the arms are the same RM
COLUMNS = ["claim_id", "claim", "track", "rm", "metric", "effect", "lo", "hi", "se", "df", "n_seeds", "n_test_pairs",
           "ess_a", "ess_b", "p", "p_holm", "p_adj", "delta", "verdict", "mde", "method"]


def smallest_effect(metric: str, baseline: float = float("nan")) -> float:
    """δ of the "equivalent" verdict for ``metric`` (NaN: no equivalence verdict on this scale).

    accuracy, gold_accuracy, bon_win_rate (win rate − 0.5): one point, 0.01. snr: the SNR change
    that moves accuracy by one point when the reward gap is normal (accuracy = Φ(SNR)), i.e.
    0.01 / φ(SNR of the baseline arm b, ``baseline``). mean_sigma_prime: 5 % of the baseline arm's
    mean σ′ (Fisher information per pair; 5 % of it is worth 5 % more or fewer training pairs).
    Best-of-n judge points (``bon{n}_{judge}``) and any other scale: NaN (no common unit)."""
    if metric in ("accuracy", "gold_accuracy", "bon_win_rate"):
        return DELTA_ACCURACY
    baseline = float(baseline)
    if metric == "snr" and np.isfinite(baseline):
        return DELTA_ACCURACY / (np.exp(-baseline ** 2 / 2) / np.sqrt(2 * np.pi))
    if metric == "mean_sigma_prime" and np.isfinite(baseline) and baseline > 0:
        return DELTA_CURVATURE_REL * baseline
    return float("nan")


def identical_arms(g: pd.DataFrame) -> dict:
    """strategy -> the first strategy (in order of appearance) whose per-pair reward gaps equal its
    own within `IDENTICAL_ATOL` on every test pair and seed of ``g`` (one track and rm): arms that
    trained on the same data give the same RM. Without a ``reward_gap`` column every arm is its own."""
    order = list(pd.unique(g.strategy))
    if "reward_gap" not in g:
        return {s: s for s in order}
    wide = g.set_index(["seed", "pair_id", "strategy"]).reward_gap.unstack("strategy")
    rep, firsts = {}, []
    for s in order:
        x = wide[s].to_numpy(float)
        rep[s] = next((f for f in firsts if np.array_equal(np.isnan(x), np.isnan(y := wide[f].to_numpy(float)))
                       and np.all(np.abs(np.nan_to_num(x - y)) <= IDENTICAL_ATOL)), s)
        if rep[s] == s:
            firsts.append(s)
    return rep


def same_by_numbers(rows: list[dict]):
    """For tables without per-pair gaps (Best-of-N): a ``same(row, x, y)`` that counts arms x and y as
    one RM when two rows of the same (track, rm, metric) share one arm and have the same effect,
    interval and se (the same paired differences), or when a row's difference is exactly 0 with se 0."""
    rep = {}

    def find(key):
        while rep.get(key, key) != key:
            key = rep[key]
        return key

    def union(scope, x, y):
        fx, fy = find((scope, x)), find((scope, y))
        if fx != fy:
            rep[fy] = fx
    nums = ("effect", "lo", "hi", "se")
    for i, r in enumerate(rows):
        scope = (r["track"], r["rm"], r["metric"])
        if r["effect"] == 0 and r["se"] == 0:
            union(scope, r["_a"], r["_b"])
        for k in rows[:i]:
            if (k["track"], k["rm"], k["metric"]) == scope and all(np.isclose(r[c], k[c], rtol=1e-12, atol=1e-15)
                                                                  for c in nums):
                if k["_a"] == r["_a"]:
                    union(scope, k["_b"], r["_b"])
                elif k["_b"] == r["_b"]:
                    union(scope, k["_a"], r["_a"])
    return lambda r, x, y: find(((r["track"], r["rm"], r["metric"]), x)) == find(((r["track"], r["rm"], r["metric"]), y))


def merge_identical(rows: list[dict], same, why: str = "the arms trained on the same data") -> list[dict]:
    """Rows of one table, each with its arms in ``_a`` / ``_b``: a row whose two arms are one RM
    (``same(row, x, y)``) becomes verdict "identical" with method "identical to <b>: <why>" and no p
    (it counts in no family); a later row of the same (track, rm, metric) whose arms are the same as
    an earlier row's is dropped, and the earlier row's method notes "<b2> identical to <b1>" (or
    "<a2> identical to <a1>") and "(<claim_id> not repeated)"."""
    kept = []
    for r in rows:
        first = next((k for k in kept if (k["track"], k["rm"], k["metric"]) == (r["track"], r["rm"], r["metric"])
                      and same(r, k["_a"], r["_a"]) and same(r, k["_b"], r["_b"])), None)
        if first is not None:
            notes = [f"{r[x]} identical to {first[x]}" for x in ("_a", "_b") if r[x] != first[x]]
            first["method"] += "; " + ", ".join(notes) + f" ({r['claim_id']} not repeated)"
            continue
        if same(r, r["_a"], r["_b"]):
            r.update(verdict="identical", p=np.nan, method=f"identical to {r['_b']}: {why}")
        kept.append(r)
    return kept


def decide(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """(Re)compute ``p_holm``, ``p_adj`` and ``verdict`` of a claims table from its columns
    ``p, effect, lo, hi, delta``; rows whose verdict is "identical" keep it and are no test.

    - ``p_holm``: Holm over the claim's family = the rows sharing a ``claim_id`` (claim ids name no
      track or regime, so a family is one claim over every track and rm regime that answers it).
    - ``p_adj``: Benjamini-Hochberg over every row of the table (false discovery rate).
    - ``verdict`` (`stats.verdict` with ``p_adj``): "held" if p_adj < alpha and the effect is
      positive, "not held" if p_adj < alpha and it is negative, "equivalent" if the plain 95 %
      interval [lo, hi] lies inside ±delta, else "inconclusive".
    Returns the columns `COLUMNS`. Idempotent: `claims.write_claims` applies it again to the whole
    table after adding the Best-of-N rows."""
    t = table.reset_index(drop=True).copy()
    if t.empty:
        return t.reindex(columns=COLUMNS)
    ident = t["verdict"].eq("identical").to_numpy() if "verdict" in t else np.zeros(len(t), bool)
    p = pd.to_numeric(t["p"], errors="coerce").to_numpy(float).copy()
    p[ident] = np.nan
    t["p"] = p
    holm = np.full(len(t), np.nan)
    for idx in t.groupby("claim_id", sort=False).indices.values():
        holm[idx] = stats.holm(p[idx])
    t["p_holm"] = holm
    t["p_adj"] = stats.benjamini_hochberg(p)
    t["verdict"] = ["identical" if i else stats.verdict(e, lo, hi, pa, d, alpha)
                    for i, e, lo, hi, pa, d in zip(ident, t.effect, t.lo, t.hi, t.p_adj, t.delta)]
    return t.reindex(columns=COLUMNS)
