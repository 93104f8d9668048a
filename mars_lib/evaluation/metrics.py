"""Reward-model metrics as the authors define them, plus confidence intervals.

- pairwise accuracy is STRICT: a pair counts as correct only if r(chosen) > r(rejected);
  ties count as wrong (as in RewardBench and the authors' `Evaluating_RMs.ipynb` [C1]).
- ROC-AUC pools chosen scores (label 1) and rejected scores (label 0) [C1]; computed here by the
  Mann-Whitney rank statistic (ties get half credit), no scikit-learn needed.
- SNR = mean(Δ) / std(Δ) of the reward gap [C1][S-zh1].
- gold accuracy: agreement of the RM's order with the gold judge's order (offline task).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mars_lib.pipeline.config import RunConfig


def _arr(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a


def pairwise_accuracy(r_chosen, r_rejected) -> float:
    """Strict: mean 1[r_c > r_r]; ties count as wrong. [N], [N] -> float."""
    c, r = _arr(r_chosen), _arr(r_rejected)
    return float(np.mean(c > r))


def roc_auc(r_chosen, r_rejected) -> float:
    """AUC of chosen (positive) vs rejected (negative) scores pooled over pairs [C1]."""
    c, r = _arr(r_chosen), _arr(r_rejected)
    scores = np.concatenate([c, r])
    ranks = _rankdata(scores)
    n1, n0 = c.size, r.size
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties share their mean rank."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sa = a[order]
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def gap_stats(r_chosen, r_rejected) -> dict:
    d = _arr(r_chosen) - _arr(r_rejected)
    sd = float(d.std(ddof=0))
    return {"mean_gap": float(d.mean()), "std_gap": sd, "snr": float(d.mean() / sd) if sd > 0 else float("nan")}


def gold_accuracy(r_chosen, r_rejected, gold_chosen, gold_rejected) -> float:
    """Share of pairs with a strict gold order where the RM orders them as the gold judge does."""
    d = _arr(r_chosen) - _arr(r_rejected)
    g = _arr(gold_chosen) - _arr(gold_rejected)
    m = g != 0
    return float(np.mean(np.sign(d[m]) == np.sign(g[m])))


def bootstrap_ci(values_fn, n: int, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI over items: `values_fn(idx)` computes the statistic on a resample."""
    rng = np.random.default_rng(seed)
    stats = np.array([values_fn(rng.integers(0, n, n)) for _ in range(n_boot)])
    return float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2))


def seed_spread(x) -> dict:
    """Mean, standard deviation and number of per-seed values: how far training seeds alone move a
    seed-level metric. Not an interval (the test set is fixed); the package's intervals are
    `mars_lib.evaluation.stats`'s (test prompts × seeds)."""
    x = _arr(x)
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else float("nan"), "n": int(x.size)}


def rm_metrics(r_chosen, r_rejected, gold_chosen=None, gold_rejected=None) -> dict:
    """All scalar metrics of one RM on one evaluation set."""
    out = {"accuracy": pairwise_accuracy(r_chosen, r_rejected), "roc_auc": roc_auc(r_chosen, r_rejected),
           **gap_stats(r_chosen, r_rejected)}
    if gold_chosen is not None:
        out["gold_accuracy"] = gold_accuracy(r_chosen, r_rejected, gold_chosen, gold_rejected)
    return out


def authors_protocol(r_chosen, r_rejected, seeds=(123, 124, 125), size: int = 100, n_boot: int = 300) -> dict:
    """The authors' v1 RM evaluation (docs/method.md §4.5, [C1]): 3 rounds, each a random subsample of
    `size` test pairs without replacement (numpy seeds 123, 124, 125); per round accuracy (strict),
    ROC-AUC, mean and std margin, and 95 % bootstrap CIs of accuracy and AUC from `n_boot` resamples
    over pairs; CIs and metrics averaged across rounds; SNR = mean of round means / mean of round
    stds. Beside our full-test-set metrics, to show how noisy 100-pair estimates are."""
    rc, rr = _arr(r_chosen), _arr(r_rejected)
    if rc.shape != rr.shape or rc.ndim != 1:
        raise ValueError(f"need two [N] score arrays, got {rc.shape} and {rr.shape}")
    size = min(size, rc.size)
    rounds = []
    for sd in seeds:
        idx = np.random.default_rng(sd).choice(rc.size, size=size, replace=False)
        c, r = rc[idx], rr[idx]
        acc_ci = bootstrap_ci(lambda i: pairwise_accuracy(c[i], r[i]), size, n_boot, seed=sd)
        auc_ci = bootstrap_ci(lambda i: roc_auc(c[i], r[i]), size, n_boot, seed=sd)
        g = gap_stats(c, r)
        rounds.append({"accuracy": pairwise_accuracy(c, r), "acc_lo": acc_ci[0], "acc_hi": acc_ci[1],
                       "roc_auc": roc_auc(c, r), "auc_lo": auc_ci[0], "auc_hi": auc_ci[1],
                       "mean_margin": g["mean_gap"], "std_margin": g["std_gap"]})
    out = {k: float(np.mean([x[k] for x in rounds])) for k in rounds[0]}
    out["snr"] = out["mean_margin"] / out["std_margin"] if out["std_margin"] > 0 else float("nan")
    out["pairs_per_round"], out["rounds"] = size, len(seeds)
    return out


def load_evaluate_metric():
    """The pairwise metrics as a Hugging Face `evaluate` metric, loaded from a local script (offline)."""
    from pathlib import Path

    import evaluate
    return evaluate.load(str(Path(__file__).parent / "evaluate_metrics" / "pairwise_rm.py"))


def compute_metrics(eval_pred) -> dict:
    """For a transformers/TRL Trainer: predictions [B, 2] = (reward chosen, reward rejected) per pair,
    as TRL's RewardTrainer returns them."""
    preds = np.asarray(eval_pred.predictions if hasattr(eval_pred, "predictions") else eval_pred[0], dtype=float)
    if preds.ndim != 2 or preds.shape[1] != 2:
        raise ValueError(f"expected predictions of shape [B, 2] (chosen, rejected), got {preds.shape}")
    return rm_metrics(preds[:, 0], preds[:, 1])


# --------------------------------------------------------------------------- run summaries

def final_summary(history: pd.DataFrame, cfg: "RunConfig", split: str = "test") -> pd.DataFrame:
    """Each metric at the last round: mean, sd over seeds and n (`seed_spread`); the intervals over test
    prompts and seeds of the per-pair metrics are `claims.strategy_intervals`' (intervals.csv)."""
    last = history[(history["round"] == history["round"].max()) & (history.split == split)]
    rows = []
    for (s, m), g in last.groupby(["strategy", "metric"], sort=False):
        rows.append({"strategy": s, "metric": m, **seed_spread(g.sort_values("seed").value.to_numpy())})
    return pd.DataFrame(rows)
