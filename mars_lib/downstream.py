"""Downstream use of each reward model: Best-of-N against the gold judge, and win rates.

Best-of-N: for each held-out prompt the policy's N samples are shared by all reward models; each
RM's pick is the sample it scores highest. The expected gold score of best-of-n for every n ≤ N
is computed without resampling by the unbiased estimator (Nakano et al. 2021, Gao et al. 2022):
with the N samples sorted by the RM's reward ascending (ranks i = 1..N),
    E[gold of best-of-n] = Σ_i  C(i−1, n−1) / C(N, n) · gold_(i),
the probability that sample i is the RM's maximum of a uniformly random n-subset.
KL of best-of-n to the policy: KL_bon = log n − (n − 1)/n (Stiennon et al. 2020).
"""
from __future__ import annotations

from math import comb, log

import numpy as np
import pandas as pd


def kl_bon(n: int) -> float:
    """KL(best-of-n || policy) = log n − (n − 1)/n."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return log(n) - (n - 1) / n


def bon_expected_gold(rewards, gold, n: int) -> float:
    """Unbiased E[gold of the RM's best of n uniformly drawn samples] from N ≥ n samples.

    rewards, gold: [N]. Ties in reward are broken by sample order (stable sort).
    """
    r, g = np.asarray(rewards, float), np.asarray(gold, float)
    N = r.size
    if not 1 <= n <= N:
        raise ValueError(f"need 1 <= n <= N, got n={n}, N={N}")
    order = np.argsort(r, kind="stable")
    w = np.array([comb(i, n - 1) for i in range(N)], dtype=float) / comb(N, n)   # rank i+1 -> C(i, n-1)
    return float(w @ g[order])


def bon_curve(pool: pd.DataFrame, reward_col: str, n_max: int | None = None) -> pd.DataFrame:
    """Per n: mean over prompts of the unbiased best-of-n gold score, with its standard error.

    pool: one row per (prompt_id, sample) with columns prompt_id, gold, and `reward_col`.
    """
    groups = [(g[reward_col].to_numpy(), g["gold"].to_numpy()) for _, g in pool.groupby("prompt_id", sort=True)]
    N = min(len(g[0]) for g in groups)
    n_max = min(n_max or N, N)
    rows = []
    for n in range(1, n_max + 1):
        vals = np.array([bon_expected_gold(r[:N], g[:N], n) for r, g in groups])
        rows.append({"n": n, "kl_bon": kl_bon(n), "gold": vals.mean(),
                     "se": vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else float("nan"),
                     "n_prompts": len(vals)})
    return pd.DataFrame(rows)


def bon_picks(pool: pd.DataFrame, reward_col: str) -> pd.DataFrame:
    """The RM's best of all N samples per prompt (rows of `pool`)."""
    idx = pool.groupby("prompt_id", sort=True)[reward_col].idxmax()
    return pool.loc[idx].reset_index(drop=True)


def win_rate(gold_a, gold_b) -> dict:
    """Win rate of A over B under the gold judge, per prompt; ties count half. With its SE."""
    a, b = np.asarray(gold_a, float), np.asarray(gold_b, float)
    s = (a > b).astype(float) + 0.5 * (a == b)
    return {"win_rate": float(s.mean()), "se": float(s.std(ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan"),
            "wins": int((a > b).sum()), "ties": int((a == b).sum()), "losses": int((a < b).sum()), "n": int(s.size)}
