"""The arms MARS is compared with, each a rule of the same shape as `mars.mars_rule`:
RoundInputs -> Selection (docs/method.md §2.3, §2.7). `mars_lib.strategies` registers them.

- none: no synthetic pairs; none_matched: B base pairs drawn uniformly again (as many optimizer
  steps as an augmenting arm);
- uniform: B pairs at random from the whole pool (the authors' v1 code [C1]); uniform_stratified:
  the same B spread by MARS's own integer budgets with q uniform and drawn per source as MARS draws,
  so MARS − uniform_stratified isolates margin-awareness;
- won: the authors' West-of-N [C1][C2], per source the K = B/N pool pairs with the largest Δ;
  won_pace: Pace et al.'s West-of-N, RM-ranked pairs among N policy samples per prompt;
- reweight: base pair i repeated b_i times with MARS's own b (no new text); easy_first: q ∝ exp(+τ g);
  hard_filter: leave out the most negative-Δ base pairs and spend their share uniformly on the others;
  self_train: B pairs from the RM-labelled resample pool.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mars_lib.reward_models.features import Pairs
from mars_lib.mars import RoundInputs, Selection, allocation_probs, integer_budgets

MARS_GAP = {"mars_v1": ("abs", "tau_v1"), "mars_v2": ("signed", "tau_v2")}   # version -> g, its τ field


def _nothing(r: RoundInputs) -> Selection:
    return Selection(r.base.take([]), r.gaps(), np.zeros(len(r.base.df), np.int64))


def none(r: RoundInputs) -> Selection:
    return _nothing(r)


def uniform_q(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def none_matched(r: RoundInputs) -> Selection:
    b = integer_budgets(uniform_q(len(r.base.df)), r.budget, seed=r.seed)
    syn = r.base.take(np.repeat(np.arange(len(b)), b))
    syn.df["origin"] = "none_matched"
    return Selection(syn, r.gaps(), b)


def uniform(r: RoundInputs) -> Selection:
    """B rows uniformly without replacement from the whole pool [C1]; budgets = the realised counts."""
    if r.budget == 0:
        return _nothing(r)
    pool = r.sources.pool
    pos = np.random.default_rng(r.seed).choice(len(pool.df), size=r.budget, replace=r.budget > len(pool.df))
    counts = pool.df.source_id.iloc[pos].value_counts()
    b = pd.Series(0, index=r.base.df.pair_id).add(counts, fill_value=0).reindex(r.base.df.pair_id)
    b = b.to_numpy().astype(np.int64)
    return Selection(r.sources.on_demand(b, r.seed) if r.cfg.pool_mode == "on_demand" else pool.take(pos), r.gaps(), b)


def uniform_stratified(r: RoundInputs) -> Selection:
    """MARS's draw with q uniform: b = largest-remainder(B/N), then b_i pairs per source."""
    b = integer_budgets(uniform_q(len(r.base.df)), r.budget, seed=r.seed)
    return Selection(r.synthesize(b), r.gaps(), b)


def west_of_n_top(reward_gap_syn, source_index, k: int, n_sources: int, seed: int = 0) -> np.ndarray:
    """The authors' West-of-N [C1][C2]: per source, the k synthetic pairs with the largest Δ.

    reward_gap_syn [M], source_index [M] (int in [0, n_sources)). Returns indices into the M synthetic
    pairs; a source with fewer than k rows repeats its rows in Δ order (the authors sample with
    replacement from the sorted rows); a source with none takes the global top-k."""
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


def won(r: RoundInputs) -> Selection:
    if r.budget == 0:
        return _nothing(r)
    n, pool = len(r.base.df), r.sources.pool
    k = max(1, round(r.budget / n))
    src_index = pd.Index(r.base.df.pair_id).get_indexer(pool.df.source_id)
    pos = west_of_n_top(r.model.pair_gap(pool), src_index, k, n, seed=r.seed)
    return Selection(pool.take(pos), r.gaps(), np.full(n, k, np.int64))


@dataclass
class Candidates:
    """N policy samples per prompt (Pace et al.'s West-of-N): df with prompt_id, prompt, response; phi [M, D]."""
    df: pd.DataFrame
    phi: np.ndarray


def west_of_n_pace(model, cand: Candidates, budget: int, seed: int) -> Pairs:
    """Pace et al.'s West-of-N at a budget: pseudo-preference pairs among each prompt's N samples.

    Pace et al. keep the (best, worst) pair by the current RM, labelled by the RM. To spend the same B
    as every other arm, B is spread evenly over prompts (largest remainder) and each prompt gets its b
    most confident candidate pairs: all C(N, 2) ranked by the RM's gap, largest first — (best, worst)
    always first. Labels come from the RM alone (no gold score, no human label is read)."""
    r = model.score(cand.df.prompt.tolist(), cand.df.response.tolist(), cand.phi)
    codes, uniq = pd.factorize(cand.df.prompt_id)
    groups = [np.flatnonzero(codes == k) for k in range(len(uniq))]
    b = integer_budgets(uniform_q(len(groups)), budget, seed=seed)
    ci, ri = [], []
    for idx, k in zip(groups, b):
        if k == 0 or len(idx) < 2:
            continue
        s = r[idx]
        a, c = np.triu_indices(len(idx), 1)
        hi, lo = np.where(s[a] >= s[c], a, c), np.where(s[a] >= s[c], c, a)
        order = np.lexsort((a, -(s[hi] - s[lo])))[:k]          # largest gap first, ties by index
        ci += idx[hi[order]].tolist()
        ri += idx[lo[order]].tolist()
    d = cand.df
    df = pd.DataFrame({"pair_id": [f"pace-{i}-{j}" for i, j in zip(ci, ri)], "prompt": d.prompt.to_numpy()[ci],
                       "chosen": d.response.to_numpy()[ci], "rejected": d.response.to_numpy()[ri],
                       "source_id": d.prompt_id.to_numpy()[ci], "origin": "won_pace",
                       "gold_chosen": np.nan, "gold_rejected": np.nan})
    return Pairs(df, cand.phi[ci].reshape(len(ci), -1), cand.phi[ri].reshape(len(ri), -1))


def won_pace(r: RoundInputs) -> Selection:
    if r.sources.policy is None:
        raise ValueError("strategy 'won_pace' needs policy samples (pools.policy_candidates)")
    if not r.trained:          # pseudo-labels need a trained RM: round 1 then trains on the base pairs only
        return _nothing(r)
    return Selection(west_of_n_pace(r.model, r.sources.policy, r.budget, r.seed), r.gaps(),
                     np.zeros(len(r.base.df), np.int64))


def _control_q(r: RoundInputs, easy: bool = False) -> np.ndarray:
    """MARS's q of the version `cfg.reweight_like` (its g and τ), or its opposite (easy-first)."""
    gap, tau_field = MARS_GAP[r.cfg.reweight_like]
    return allocation_probs(r.gaps(), getattr(r.cfg, tau_field), gap, easy=easy)


def reweight(r: RoundInputs) -> Selection:
    b = integer_budgets(_control_q(r), r.budget, seed=r.seed)
    syn = r.base.take(np.repeat(np.arange(len(b)), b))
    syn.df["origin"] = "reweight"
    return Selection(syn, r.gaps(), b)


def easy_first(r: RoundInputs) -> Selection:
    b = integer_budgets(_control_q(r, easy=True), r.budget, seed=r.seed)
    return Selection(r.draw(b), r.gaps(), b)


def hard_filter_keep(gaps: np.ndarray, frac: float) -> np.ndarray:
    """Boolean [N]: False for the ceil(frac·N) pairs with the most negative reward gap (ties by index)."""
    keep = np.ones(len(gaps), bool)
    keep[np.argsort(gaps, kind="stable")[:int(np.ceil(frac * len(gaps)))]] = False
    return keep


def hard_filter(r: RoundInputs) -> Selection:
    """The dropped pairs' share of the training set goes to uniform synthetic pairs of the others."""
    keep = hard_filter_keep(r.gaps(), r.cfg.hard_filter_frac)
    if r.budget == 0:
        return Selection(r.base.take([]), r.gaps(), np.zeros(len(keep), np.int64), r.base.take(np.flatnonzero(keep)))
    b = integer_budgets(keep / keep.sum(), r.budget + int((~keep).sum()), seed=r.seed)
    return Selection(r.draw(b), r.gaps(), b, train_base=r.base.take(np.flatnonzero(keep)))


def self_train(r: RoundInputs) -> Selection:
    pool = r.sources.self_pool
    if pool is None or len(pool.df) == 0:
        raise ValueError("strategy 'self_train' needs the RM-labelled resample pool (runs.train_strategies "
                         "builds it from the task's policy samples)")
    pos = np.random.default_rng(r.seed).choice(len(pool.df), size=r.budget, replace=r.budget > len(pool.df))
    return Selection(pool.take(pos), r.gaps(), np.zeros(len(r.base.df), np.int64))
