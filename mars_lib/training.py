"""The rounds loop: no augmentation, uniform, West-of-N and MARS (v1, v2) under one budget and
one training schedule (docs/method.md §2, §2.3, §2.7).

Round t = 1..T:
  1. reward gaps Δ on the base pairs with the current RM (untrained at t = 1 unless warm_start:
     the authors' code allocates from an untrained model [C1][C2]);
  2. select B synthetic pairs: uniform over the pool (uniform), top-K Δ per source (won, the
     authors' variant), the RM's most confident pairs among N fresh policy samples per prompt
     (won_pace, Pace et al. 2024: chosen/rejected = the RM's own order; see `west_of_n_pace`), or b_i = largest-remainder(B·softmax(−τ g(Δ))) per source (mars_v1: g=|Δ|,
     τ=tau_v1; mars_v2: g=Δ, τ=tau_v2);
     Controls (same budget B, same schedule, so every augmenting arm takes the same optimizer steps):
     none_matched: B base pairs drawn uniformly again (the no-augmentation RM with as many steps as
     uniform); reweight: base pair i repeated b_i times, b from MARS's own q (AdaBoost-style
     reweighting, no synthetic text); easy_first: q ∝ exp(+τ g(Δ)), the opposite of MARS;
     hard_filter: the `hard_filter_frac` base pairs with the most negative Δ are left out of this
     round's training set and B + (dropped) synthetic pairs are drawn uniformly from the others'
     pools; self_train: B pairs drawn uniformly from the RM-labelled resample pool (`self_pool`);
  3. train `epochs_per_round` epochs on base + synthetic (fresh per round, or cumulative);
  4. evaluate on the held-out sets; record the allocation.
Every row of history carries strategy, seed, round.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .augment import draw_from_pool
from .curvature import curvature_summary
from .features import Pairs
from .metrics import rm_metrics
from .reward_model import HeadConfig, HeadRewardModel, RewardModel
from .selection import allocation_probs, concentration, integer_budgets, west_of_n_top

MARS_GAP = {"mars_v1": "abs", "mars_v2": "signed"}
CONTROLS = ("none_matched", "reweight", "easy_first", "hard_filter", "self_train")
_CURV_KEYS = ("mean_sigma_prime", "trace", "lambda_max", "lambda_min_span", "condition_span", "fisher_trace")


@dataclass
class Candidates:
    """N policy samples per prompt (Pace et al.'s West-of-N): df with prompt_id, prompt, response; phi [M, D]."""
    df: pd.DataFrame
    phi: np.ndarray


def west_of_n_pace(model, cand: Candidates, budget: int, seed: int) -> Pairs:
    """Pace et al.'s West-of-N, at a budget: pseudo-preference pairs among each prompt's N samples.

    Pace et al. score the N policy samples of a prompt with the current RM and keep the (best, worst)
    pair, labelled by the RM. To spend the same B as every other strategy, the budget is spread
    evenly over prompts (largest remainder) and each prompt gets its b most confident candidate pairs:
    all C(N, 2) pairs ranked by the RM's reward gap, largest first — so (best, worst) always comes
    first. Labels come from the RM alone (no gold score, no human label is read).
    """
    r = model.score(cand.df.prompt.tolist(), cand.df.response.tolist(), cand.phi)
    codes, uniq = pd.factorize(cand.df.prompt_id)
    groups = [np.flatnonzero(codes == k) for k in range(len(uniq))]
    b = integer_budgets(np.full(len(groups), 1.0 / len(groups)), budget, seed=seed)
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


@dataclass
class RunResult:
    model: RewardModel
    history: pd.DataFrame           # strategy, seed, round, split, metric, value
    allocations: pd.DataFrame       # strategy, seed, round, pair_id, reward_gap, budget, label_correct
    synthetic_counts: dict = field(default_factory=dict)


def evaluate(model, sets: dict[str, Pairs]) -> list[dict]:
    rows = []
    for name, p in sets.items():
        rc, rr = model.pair_scores(p)
        gc = p.df["gold_chosen"].to_numpy() if "gold_chosen" in p.df else None
        gr = p.df["gold_rejected"].to_numpy() if "gold_rejected" in p.df else None
        for k, v in rm_metrics(rc, rr, gc, gr).items():
            rows.append({"split": name, "metric": k, "value": v})
    return rows


def mars_q(strategy: str, gaps: np.ndarray, cfg) -> np.ndarray:
    """MARS's sampling distribution for `strategy` (mars_v1 / mars_v2), or for the controls that
    reuse it (reweight: the same q; easy_first: q ∝ exp(+τ g(Δ)); both of the version `cfg.reweight_like`)."""
    version = strategy if strategy in MARS_GAP else cfg.reweight_like
    tau = cfg.tau_v1 if version == "mars_v1" else cfg.tau_v2
    return allocation_probs(gaps, tau, MARS_GAP[version], easy=strategy == "easy_first")


def hard_filter_keep(gaps: np.ndarray, frac: float) -> np.ndarray:
    """Boolean [N]: False for the ceil(frac·N) pairs with the most negative reward gap (ties by index)."""
    k = int(np.ceil(frac * len(gaps)))
    keep = np.ones(len(gaps), bool)
    keep[np.argsort(gaps, kind="stable")[:k]] = False
    return keep


def select_synthetic(strategy: str, model: RewardModel, base: Pairs, pool: Pairs, budget: int,
                     cfg, round_seed: int, on_demand=None, policy: Candidates | None = None,
                     self_pool: Pairs | None = None) -> tuple[Pairs, np.ndarray, np.ndarray]:
    """This round's synthetic pairs, plus base reward gaps [N] and per-source budgets [N].

    pool_mode "pool": drawn from the pre-generated pool. pool_mode "on_demand": for uniform and
    MARS, exactly b_i fresh pairs are built for source i by `on_demand(budgets, round_seed)`;
    West-of-N always ranks the pool's candidates (it needs N candidates per source to pick from).
    won_pace draws from the policy samples `policy` instead of the pool (budgets per source: zeros).
    """
    if strategy == "won_pace":
        if policy is None:
            raise ValueError("strategy 'won_pace' needs policy samples (pools.policy_candidates)")
        return (west_of_n_pace(model, policy, budget, round_seed), model.pair_gap(base),
                np.zeros(len(base.df), np.int64))
    if strategy in ("none_matched", "reweight"):          # more of the base pairs themselves, no new text
        gaps = model.pair_gap(base)
        q = np.full(len(gaps), 1.0 / len(gaps)) if strategy == "none_matched" else mars_q(strategy, gaps, cfg)
        b = integer_budgets(q, budget, seed=round_seed)
        syn = base.take(np.repeat(np.arange(len(gaps)), b))
        syn.df["origin"] = strategy
        return syn, gaps, b
    if strategy == "self_train":
        if self_pool is None or len(self_pool.df) == 0:
            raise ValueError("strategy 'self_train' needs the RM-labelled resample pool (runs.train_strategies "
                             "builds it from the task's policy samples)")
        gaps = model.pair_gap(base)
        pos = np.random.default_rng(round_seed).choice(len(self_pool.df), size=budget, replace=budget > len(self_pool.df))
        return self_pool.take(pos), gaps, np.zeros(len(gaps), np.int64)
    pos, gaps, b = _select_positions(strategy, model, base, pool, budget, cfg, round_seed)
    if cfg.pool_mode == "on_demand" and strategy in ("uniform", "mars_v1", "mars_v2"):
        if on_demand is None:
            raise ValueError("pool_mode='on_demand' needs an on_demand builder (pools.on_demand_builder)")
        return on_demand(b, round_seed), gaps, b
    return pool.take(pos), gaps, b


def _select_positions(strategy, model, base, pool, budget, cfg, round_seed):
    gaps = model.pair_gap(base)
    n = len(base.df)
    if strategy == "none" or budget == 0:
        return np.zeros(0, np.int64), gaps, np.zeros(n, np.int64)
    if strategy == "uniform":
        # authors v1: B rows uniformly without replacement from the whole pool [C1]
        rng = np.random.default_rng(round_seed)
        pos = rng.choice(len(pool.df), size=budget, replace=budget > len(pool.df))
        src = pd.Series(0, index=base.df.pair_id)
        counts = pool.df.source_id.iloc[pos].value_counts()
        return pos, gaps, src.add(counts, fill_value=0).reindex(base.df.pair_id).to_numpy().astype(np.int64)
    if strategy == "won":
        # authors' West-of-N: per source the K = B / N synthetic pairs with the largest current Δ [C1][C2]
        k = max(1, round(budget / n))
        syn_gap = model.pair_gap(pool)
        src_index = pd.Index(base.df.pair_id).get_indexer(pool.df.source_id)
        pos = west_of_n_top(syn_gap, src_index, k, n, seed=round_seed)
        return pos, gaps, np.full(n, k, np.int64)
    if strategy == "hard_filter":
        # the dropped pairs' share of the training set goes to uniform synthetic pairs of the others
        keep = hard_filter_keep(gaps, cfg.hard_filter_frac)
        q = keep / keep.sum()
        b = integer_budgets(q, budget + int((~keep).sum()), seed=round_seed)
        pos = draw_from_pool(pool.df, base.df.pair_id.to_numpy(), b, seed=round_seed + 1, codes=pool.source_codes())
        return pos, gaps, b
    if strategy in MARS_GAP or strategy == "easy_first":
        b = integer_budgets(mars_q(strategy, gaps, cfg), budget, seed=round_seed)
        pos = draw_from_pool(pool.df, base.df.pair_id.to_numpy(), b, seed=round_seed + 1, codes=pool.source_codes())
        return pos, gaps, b
    raise ValueError(f"unknown strategy {strategy!r}")


def run_strategy(strategy: str, base: Pairs, pool: Pairs, eval_sets: dict[str, Pairs], cfg, seed: int,
                 on_demand=None, make_model=None, policy: Candidates | None = None,
                 self_pool: Pairs | None = None) -> RunResult:
    """Train one RM with `strategy` for cfg.rounds rounds; returns the model and tidy history.

    `make_model(seed)` builds the RM (default: the head model on cached features); any
    `reward_model.RewardModel` works, e.g. `finetune.FinetunedRewardModel`. `policy`: the policy
    samples won_pace ranks; `self_pool`: the RM-labelled resample pool self_train draws from.
    """
    if make_model is None:
        model = HeadRewardModel(base.phi_c.shape[1], HeadConfig.from_run(cfg, seed))
    else:
        model = make_model(seed)
    budget = int(round(cfg.budget_ratio * len(base.df)))
    hist, allocs, kept = [], [], []
    n_syn = {}

    def log(rnd, rows):
        hist.extend({"strategy": strategy, "seed": seed, "round": rnd, **r} for r in rows)

    trained = cfg.warm_start
    if cfg.warm_start:
        model.fit_pairs(base, epochs=1, seed=seed * 7 + 1)
    every = cfg.eval_every_round                       # False: held-out sets only after the last round
    if every:
        log(0, evaluate(model, eval_sets))
    for t in range(1, cfg.rounds + 1):
        round_seed = 42 + 1000 * t + 100_003 * seed        # authors: 42 + 1000·t; distinct per training seed
        if strategy == "won_pace" and not trained:
            # pseudo-labels need a trained RM: without warm start, round 1 trains on the base pairs only
            syn, gaps, b = base.take([]), model.pair_gap(base), np.zeros(len(base.df), np.int64)
        else:
            syn, gaps, b = select_synthetic(strategy, model, base, pool, budget, cfg, round_seed, on_demand, policy,
                                            self_pool)
        kept = (kept + [syn]) if cfg.cumulative else [syn]
        # hard_filter leaves this round's most negative-gap base pairs out (its synthetic draw made up the count)
        train_base = base.take(np.flatnonzero(hard_filter_keep(gaps, cfg.hard_filter_frac))) \
            if strategy == "hard_filter" else base
        train = Pairs.concat([train_base] + kept)
        th = model.linear_theta() if cfg.track_curvature else None
        if th is not None:
            # BT curvature of this round's realised training set vs the base set, both at the
            # allocating model's θ (docs/method.md §3.1: the claim compares data distributions at one θ)
            c_train = curvature_summary(train.phi_c - train.phi_r, th, fisher_spectrum=False)
            c_base = curvature_summary(base.phi_c - base.phi_r, th, fisher_spectrum=False)
            log(t, [{"split": "curvature", "metric": k, "value": c_train[k]} for k in _CURV_KEYS]
                + [{"split": "curvature", "metric": f"{k}_ratio_to_base", "value": c_train[k] / c_base[k]}
                   for k in _CURV_KEYS])
        n_syn[t] = len(train.df) - len(train_base.df)
        lc = base.df["label_correct"].to_numpy() if "label_correct" in base.df else np.full(len(b), np.nan)
        allocs.append(pd.DataFrame({"strategy": strategy, "seed": seed, "round": t, "pair_id": base.df.pair_id,
                                    "reward_gap": gaps, "budget": b, "label_correct": lc}))
        model.fit_pairs(train, epochs=cfg.epochs_per_round, reset_optimizer=cfg.reset_optimizer, seed=round_seed)
        trained = True
        conc = concentration(b) if b.sum() else {k: float("nan") for k in concentration([1])}
        noisy = float(b[lc == 0].sum() / b.sum()) if b.sum() and "label_correct" in base.df else float("nan")
        log(t, (evaluate(model, eval_sets) if every or t == cfg.rounds else []) + [
            {"split": "train", "metric": "n_synthetic", "value": float(len(syn.df))},
            {"split": "train", "metric": "synthetic_shortfall",
             "value": float(len(base.df) + budget - len(train.df)) if strategy != "none" else 0.0},
            {"split": "train", "metric": "n_train", "value": float(len(train.df))},
            {"split": "train", "metric": "optimizer_steps", "value": float(model.steps)},
            {"split": "train", "metric": "mean_abs_gap_base", "value": float(np.abs(gaps).mean())},
            {"split": "train", "metric": "budget_on_mislabeled", "value": noisy},
            *({"split": "train", "metric": f"alloc_{k}", "value": v} for k, v in conc.items())])
    return RunResult(model, pd.DataFrame(hist), pd.concat(allocs, ignore_index=True), n_syn)
