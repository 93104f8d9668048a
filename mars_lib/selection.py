"""Reward gaps, the MARS allocation, integer budgets, and the baselines' selection rules.

Naming: `reward_gap` Δ = r(x, y+) − r(x, y−) is what MARS selects on; `label_margin` is a fixed
offset in a loss (TRL's `margin` column). Never a bare "margin".
"""
from __future__ import annotations

import numpy as np

GAP_TRANSFORMS = ("abs", "signed")


def allocation_probs(reward_gap, tau: float, gap: str = "abs", easy: bool = False) -> np.ndarray:
    """MARS sampling distribution q_i = softmax(−τ · g(Δ_i)) over the original pairs.

    easy=True gives the easy-first control, q_i = softmax(+τ · g(Δ_i)): the budget goes where the
    RM is already confident (the opposite of MARS).

    g(Δ) = |Δ| in v1 (docs/method.md §2.1 step 2, [S-zh1][C1]); g(Δ) = Δ in v2 (signed: mis-ranked
    pairs, Δ < 0, get the most weight; §2.2, [C2]). Numerically stable softmax. τ → 0 gives the
    uniform distribution. Shapes: [N] -> [N], sums to 1.
    """
    d = np.asarray(reward_gap, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"reward_gap must be a non-empty 1-D array, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"reward_gap has {np.sum(~np.isfinite(d))} non-finite values (NaN/inf): "
                         "check the reward model's scores")
    if not tau > 0:
        raise ValueError(f"tau must be > 0 (tau -> 0 is uniform allocation; use strategy 'uniform'), got {tau}")
    if gap not in GAP_TRANSFORMS:
        raise ValueError(f"gap must be one of {GAP_TRANSFORMS}, got {gap!r}")
    g = np.abs(d) if gap == "abs" else d
    s = (tau if easy else -tau) * g
    s -= s.max()
    q = np.exp(s)
    return q / q.sum()


def integer_budgets(q, budget: int, seed: int | None = 0) -> np.ndarray:
    """Largest-remainder rounding of B·q_i to integers that sum exactly to B [C1].

    Ties among equal remainders are broken at random with `seed` (the authors use 42 + 1000·t).
    Shapes: q [N] -> int64 [N].
    """
    q = np.asarray(q, dtype=np.float64)
    if not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
    if q.ndim != 1 or q.size == 0 or np.any(q < 0) or not np.isclose(q.sum(), 1.0):
        raise ValueError("q must be a non-empty probability vector (non-negative, summing to 1)")
    raw = budget * q
    base = np.floor(raw).astype(np.int64)
    left = int(budget - base.sum())
    rem = raw - base
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(q.size)
    order = np.lexsort((tiebreak, -rem))          # largest remainder first, random among ties
    base[order[:left]] += 1
    return base


def capped_budgets(q, budget: int, cap: int, seed: int | None = 0) -> np.ndarray:
    """`integer_budgets` with at most `cap` per pair: pairs that would exceed it get `cap`, and the
    rest of the budget is spread over the others in proportion to q (repeated until none exceeds).
    Shapes: q [N] -> int64 [N]; the result sums to B exactly."""
    q = np.asarray(q, dtype=np.float64)
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if cap * q.size < budget:
        raise ValueError(f"a cap of {cap} per pair over {q.size} pairs holds at most {cap * q.size} < budget {budget}")
    fixed = np.zeros(q.size, dtype=bool)
    while True:
        rest = budget - cap * int(fixed.sum())
        free_q = np.where(fixed, 0.0, q)
        if free_q.sum() == 0:                       # all probability mass is on capped pairs: spread evenly
            free_q = (~fixed).astype(np.float64)
        b = integer_budgets(free_q / free_q.sum(), rest, seed)
        b[fixed] = cap
        over = (b > cap) & ~fixed
        if not over.any():
            return b
        fixed |= over


def uniform_budgets(n: int, budget: int, seed: int | None = 0) -> np.ndarray:
    """The uniform baseline's per-source counts under the same rounding."""
    return integer_budgets(np.full(n, 1.0 / n), budget, seed)


def concentration(b) -> dict:
    """How concentrated an allocation (budgets, or probabilities) over N pairs is: share of the total
    in the top 10 % of pairs, Gini, max/mean, and the effective sample size over N,
    ESS/N = (Σb)² / (N Σb²) — 1 for a uniform allocation, 1/N when one pair takes everything."""
    b = np.sort(np.asarray(b, dtype=float))[::-1]
    tot = b.sum()
    if tot == 0:
        return {"top10_share": 0.0, "gini": 0.0, "max_over_mean": 0.0, "ess_over_n": 0.0}
    k = max(1, int(np.ceil(0.1 * b.size)))
    x = np.sort(b)
    n = x.size
    gini = (2 * np.arange(1, n + 1) - n - 1) @ x / (n * tot)
    return {"top10_share": float(b[:k].sum() / tot), "gini": float(gini), "max_over_mean": float(b[0] / b.mean()),
            "ess_over_n": float(tot ** 2 / (n * (b ** 2).sum()))}


def west_of_n_top(reward_gap_syn, source_index, k: int, n_sources: int, seed: int = 0) -> np.ndarray:
    """The authors' West-of-N variant [C1][C2]: per source, the k synthetic pairs with the largest Δ.

    reward_gap_syn [M], source_index [M] (int in [0, n_sources)). Returns indices into the M
    synthetic pairs; a source with fewer than k rows repeats its rows in Δ order (the authors
    sample with replacement from the sorted rows); a source with none takes the global top-k.
    """
    d = np.asarray(reward_gap_syn, float)
    src = np.asarray(source_index)
    picks = []
    order_all = np.argsort(-d, kind="stable")
    for s in range(n_sources):
        rows = np.flatnonzero(src == s)
        if rows.size == 0:
            picks.extend(order_all[:k].tolist())
            continue
        rows = rows[np.argsort(-d[rows], kind="stable")]
        picks.extend([int(rows[i % rows.size]) for i in range(k)])
    return np.asarray(picks, dtype=np.int64)
