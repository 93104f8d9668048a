"""MARS in one room: the allocation q(Δ), the integer budgets, the draw, and the rounds loop.

Read top to bottom. The equations and where they come from (docs/method.md §2; table in §2.8):

    Δ_i   = r(x_i, y_i⁺) − r(x_i, y_i⁻)                 reward gap of base pair i      [C1][C2]
    q_i   = softmax(−τ · g(Δ_i)),  g = |Δ| (v1), Δ (v2)   allocation over base pairs     [C1], [C2]
    b_i   = largest-remainder(B · q_i),  Σ b_i = B       integer budgets                [C1]
    S_t   = b_i synthetic pairs drawn from source i's pool, uniformly without replacement
    θ_t   = argmin BT loss on base ∪ S_t   (epochs_per_round epochs; fresh S_t each round)

Round t = 1..T (`run_rounds`): gaps with the current RM (untrained at t = 1 unless warm_start, as in
the authors' code) → the strategy's rule picks this round's synthetic pairs → train → evaluate.
MARS is the rule `mars_rule`; every other arm (uniform, West-of-N, the controls) is a rule of the same
shape in `mars_lib.baselines`, and `mars_lib.strategies` names them all in one registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from mars_lib.evaluation.curvature import training_set_curvature
from mars_lib.reward_models.features import Pairs
from mars_lib.evaluation.metrics import rm_metrics

if TYPE_CHECKING:
    from mars_lib.reward_models.head import RewardModel

GAP_TRANSFORMS = ("abs", "signed")


# ----------------------------------------------------------------------------- q(Δ): the allocation
def allocation_probs(reward_gap, tau: float, gap: str = "abs", easy: bool = False) -> np.ndarray:
    """q_i = softmax(−τ · g(Δ_i)) over the base pairs; g = |Δ| (v1, [C1]) or Δ (v2, signed: mis-ranked
    pairs, Δ < 0, get the most weight, [C2]). easy=True: softmax(+τ · g), the easy-first control.
    τ → 0 is uniform. Numerically stable. Shapes: [N] -> [N], sums to 1."""
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
    s = (tau if easy else -tau) * (np.abs(d) if gap == "abs" else d)
    q = np.exp(s - s.max())
    return q / q.sum()


# ----------------------------------------------------------------------------- b = round(B·q)
def integer_budgets(q, budget: int, seed: int | None = 0) -> np.ndarray:
    """Largest-remainder rounding of B·q_i to integers summing exactly to B [C1]; ties among equal
    remainders broken at random with `seed` (the authors seed 42 + 1000·t). Shapes: [N] -> int64 [N]."""
    q = np.asarray(q, dtype=np.float64)
    if not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
    if q.ndim != 1 or q.size == 0 or np.any(q < 0) or not np.isclose(q.sum(), 1.0):
        raise ValueError("q must be a non-empty probability vector (non-negative, summing to 1)")
    raw = budget * q
    base = np.floor(raw).astype(np.int64)
    tiebreak = np.random.default_rng(seed).random(q.size)
    order = np.lexsort((tiebreak, -(raw - base)))          # largest remainder first, random among ties
    base[order[:int(budget - base.sum())]] += 1
    return base


def capped_budgets(q, budget: int, cap: int, seed: int | None = 0) -> np.ndarray:
    """`integer_budgets` with at most `cap` per pair: pairs that would exceed it get `cap` and the rest
    of B is spread over the others in proportion to q (repeated until none exceeds). Sums to B."""
    q = np.asarray(q, dtype=np.float64)
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if cap * q.size < budget:
        raise ValueError(f"a cap of {cap} per pair over {q.size} pairs holds at most {cap * q.size} < budget {budget}")
    fixed = np.zeros(q.size, dtype=bool)
    while True:
        free_q = np.where(fixed, 0.0, q)
        if free_q.sum() == 0:                       # all probability mass is on capped pairs: spread evenly
            free_q = (~fixed).astype(np.float64)
        b = integer_budgets(free_q / free_q.sum(), budget - cap * int(fixed.sum()), seed)
        b[fixed] = cap
        over = (b > cap) & ~fixed
        if not over.any():
            return b
        fixed |= over


def concentration(b) -> dict:
    """How concentrated an allocation (budgets or probabilities) over N pairs is: top-10 % share, Gini,
    max/mean, and ESS/N = (Σb)² / (N Σb²) — 1 when uniform, 1/N when one pair takes everything."""
    b = np.sort(np.asarray(b, dtype=float))[::-1]
    tot = b.sum()
    if tot == 0:
        return {"top10_share": 0.0, "gini": 0.0, "max_over_mean": 0.0, "ess_over_n": 0.0}
    k, n = max(1, int(np.ceil(0.1 * b.size))), b.size
    gini = (2 * np.arange(1, n + 1) - n - 1) @ b[::-1] / (n * tot)
    return {"top10_share": float(b[:k].sum() / tot), "gini": float(gini), "max_over_mean": float(b[0] / b.mean()),
            "ess_over_n": float(tot ** 2 / (n * (b ** 2).sum()))}


def tau_for_ess(reward_gap, target: float, q: Callable | None = None, budget: int | None = None,
                seed: int | None = 0, lo: float = 1e-4, hi: float = 1e4, iters: int = 60) -> float:
    """The τ at which the allocation q(Δ, τ) (default v1's, `allocation_probs` with |Δ|) has ESS/N =
    `target` (0 < target < 1): bisection on log τ over [lo, hi]. With `budget` the realised integer
    budgets b = `integer_budgets`(q, B) are measured (what is trained on), else the continuous q.
    ESS/N falls as τ grows; a target the range cannot reach returns the nearer end (e.g. flat gaps:
    `hi`). Used by the "<arm>@ess<x>" arms (`strategies.at_ess`) and `mars allocate --target-ess`."""
    if not 0 < target < 1:
        raise ValueError(f"target ESS/N must be in (0, 1), got {target}")
    q_of = q or (lambda d, t: allocation_probs(d, t, "abs"))

    def ess(tau: float) -> float:
        q = q_of(reward_gap, tau)
        return concentration(q if budget is None else integer_budgets(q, budget, seed))["ess_over_n"]
    a, b = np.log(lo), np.log(hi)
    if ess(lo) <= target:
        return lo
    if ess(hi) >= target:
        return hi
    for _ in range(iters):
        m = 0.5 * (a + b)
        a, b = (m, b) if ess(float(np.exp(m))) > target else (a, m)
    return float(np.exp(0.5 * (a + b)))


# ----------------------------------------------------------------------------- the draw
def draw_from_pool(pool: pd.DataFrame, source_ids, budgets, seed: int, codes=None) -> np.ndarray:
    """Positions (into `pool`) of b_i rows per source [C1]: uniform without replacement, with
    replacement only when b_i exceeds the source's pool; a source with no pool draws from the global
    pool. Deterministic for `seed`; grouped by source in `source_ids` order. Vectorized: one random key
    per row, rows sorted by (source, key), each source takes its first b_i. `codes`: the pool's
    `pd.factorize(source_id)` when the caller keeps it (features.Pairs.source_codes)."""
    rng = np.random.default_rng(seed)
    codes, uniq = pd.factorize(pool.source_id.to_numpy()) if codes is None else codes
    n_src = np.bincount(codes, minlength=len(uniq))
    where = pd.Index(uniq).get_indexer(list(source_ids))
    own = (where >= 0) & (n_src[np.maximum(where, 0)] > 0)
    size = np.where(own, n_src[np.maximum(where, 0)], len(pool))      # no pool of its own: the global pool
    order = np.argsort(codes + rng.random(len(pool)))                  # by source, random within source
    starts = np.cumsum(n_src) - n_src
    glob = rng.permutation(len(pool))
    b = np.maximum(np.asarray(budgets, dtype=np.int64), 0)
    k = np.arange(b.sum()) - np.repeat(np.cumsum(b) - b, b)           # 0..b_i-1 within each source
    src = np.repeat(np.arange(len(b)), b)
    draws = rng.random(len(k))
    slot = np.where((b > size)[src], np.floor(draws * size[src]).astype(np.int64), k)
    first = np.where(own, starts[np.maximum(where, 0)], 0)
    return np.where(own[src], order[np.minimum(first[src] + slot, len(pool) - 1)],
                    glob[np.minimum(slot, len(pool) - 1)]).astype(np.int64)


# ----------------------------------------------------------------------------- one round's rule
@dataclass
class Sources:
    """What a round may draw synthetic pairs from: the pre-generated `pool`; `on_demand(budgets, seed)`
    in pool_mode "on_demand"; the policy samples West-of-N (Pace) ranks; the RM-labelled resample pool
    of self-training. A strategy's `needs` names the optional ones it reads."""
    pool: Pairs | None = None
    on_demand: Callable | None = None
    policy: Any = None
    self_pool: Pairs | None = None


@dataclass
class RoundInputs:
    """What a strategy's rule sees in round t: the current RM, the base pairs, the sources, the budget B,
    the run's config, the round's seed, and whether the RM has been trained yet."""
    model: RewardModel
    base: Pairs
    sources: Sources
    budget: int
    cfg: Any
    seed: int
    trained: bool
    _gaps: np.ndarray | None = field(default=None, repr=False)

    def gaps(self) -> np.ndarray:
        """Δ on the base pairs under the current RM, [N] (computed once per round)."""
        if self._gaps is None:
            self._gaps = self.model.pair_gap(self.base)
        return self._gaps

    def draw(self, budgets: np.ndarray) -> Pairs:
        """b_i pairs per base pair i drawn from the pre-generated pool."""
        pool = self.sources.pool
        return pool.take(draw_from_pool(pool.df, self.base.df.pair_id.to_numpy(), budgets, seed=self.seed + 1,
                                        codes=pool.source_codes()))

    def synthesize(self, budgets: np.ndarray) -> Pairs:
        """b_i synthetic pairs per base pair i: built fresh (pool_mode "on_demand") or drawn from the pool."""
        if self.cfg.pool_mode != "on_demand":
            return self.draw(budgets)
        if self.sources.on_demand is None:
            raise ValueError("pool_mode='on_demand' needs an on_demand builder (pools.on_demand_builder)")
        return self.sources.on_demand(budgets, self.seed)


@dataclass
class Selection:
    """A rule's answer: this round's synthetic pairs, the base reward gaps [N] and per-source budgets [N];
    `train_base`: the base pairs trained on this round when a rule leaves some out (default: all)."""
    synthetic: Pairs
    gaps: np.ndarray
    budgets: np.ndarray
    train_base: Pairs | None = None


def mars_rule(gap: str, tau_field: str, easy: bool = False) -> Callable[[RoundInputs], Selection]:
    """MARS's rule: b = largest-remainder(B · softmax(∓τ g(Δ))) with τ = cfg.<tau_field>, then b_i pairs
    per source. gap "abs" is v1, "signed" v2; easy=True the easy-first control."""
    def rule(r: RoundInputs) -> Selection:
        q = allocation_probs(r.gaps(), getattr(r.cfg, tau_field), gap, easy=easy)
        b = integer_budgets(q, r.budget, seed=r.seed)
        return Selection(r.synthesize(b), r.gaps(), b)
    return rule


# ----------------------------------------------------------------------------- the rounds loop
@dataclass
class RunResult:
    model: RewardModel
    history: pd.DataFrame           # strategy, seed, round, split, metric, value
    allocations: pd.DataFrame       # strategy, seed, round, pair_id, reward_gap, budget, label_correct
    synthetic_counts: dict = field(default_factory=dict)


def evaluate(model, sets: dict[str, Pairs]) -> list[dict]:
    """Accuracy, ROC-AUC, SNR (and gold agreement where known) of `model` on each held-out set."""
    rows = []
    for name, p in sets.items():
        rc, rr = model.pair_scores(p)
        gold = [p.df[c].to_numpy() if c in p.df else None for c in ("gold_chosen", "gold_rejected")]
        rows += [{"split": name, "metric": k, "value": v} for k, v in rm_metrics(rc, rr, *gold).items()]
    return rows


def round_seed(t: int, seed: int) -> int:
    """The authors' 42 + 1000·t, made distinct per training seed."""
    return 42 + 1000 * t + 100_003 * seed


def run_rounds(strategy, base: Pairs, sources: Sources, eval_sets: dict[str, Pairs], cfg, seed: int,
               make_model: Callable[[int], RewardModel], on_round: Callable[[int], None] | None = None) -> RunResult:
    """Train one RM with `strategy` (a `strategies.Strategy`: its `name` and `rule`) for cfg.rounds rounds.

    `make_model(seed)` builds the RM: any `reward_model.RewardModel` (the head on cached features,
    `finetune.FinetunedRewardModel`; `arms.run_strategy` picks the config's kind). `on_round(t)` is
    called after each round (a progress bar)."""
    model = make_model(seed)
    budget = int(round(cfg.budget_ratio * len(base.df)))
    hist, allocs, kept, n_syn = [], [], [], {}

    def log(t, rows):
        hist.extend({"strategy": strategy.name, "seed": seed, "round": t, **r} for r in rows)

    if cfg.warm_start:
        model.fit_pairs(base, epochs=1, seed=seed * 7 + 1)
    if cfg.eval_every_round:                            # False: held-out sets only after the last round
        log(0, evaluate(model, eval_sets))
    for t in range(1, cfg.rounds + 1):
        inputs = RoundInputs(model, base, sources, budget, cfg, round_seed(t, seed), trained=cfg.warm_start or t > 1)
        sel = strategy.rule(inputs)                                          # 1-2. gaps, then this round's pairs
        kept = (kept + [sel.synthetic]) if cfg.cumulative else [sel.synthetic]
        train_base = base if sel.train_base is None else sel.train_base
        train = Pairs.concat([train_base] + kept)
        if cfg.track_curvature and (theta := model.linear_theta()) is not None:
            log(t, training_set_curvature(train, base, theta))               # docs/method.md §3.1
        n_syn[t] = len(train.df) - len(train_base.df)
        lc = base.df["label_correct"].to_numpy() if "label_correct" in base.df else np.full(len(base.df), np.nan)
        allocs.append(pd.DataFrame({"strategy": strategy.name, "seed": seed, "round": t, "pair_id": base.df.pair_id,
                                    "reward_gap": sel.gaps, "budget": sel.budgets, "label_correct": lc}))
        model.fit_pairs(train, epochs=cfg.epochs_per_round, reset_optimizer=cfg.reset_optimizer, seed=inputs.seed)  # 3.
        log(t, (evaluate(model, eval_sets) if cfg.eval_every_round or t == cfg.rounds else [])      # 4.
            + _train_rows(strategy, sel, train, base, budget, model, lc))
        if on_round is not None:
            on_round(t)
    return RunResult(model, pd.DataFrame(hist), pd.concat(allocs, ignore_index=True), n_syn)


def _train_rows(strategy, sel: Selection, train: Pairs, base: Pairs, budget: int, model, lc) -> list[dict]:
    """What the round trained on: sizes, optimizer steps, the shortfall against N + B (for arms that add
    pairs), the allocation's concentration and its share on mislabelled base pairs (where known)."""
    b = sel.budgets
    conc = concentration(b) if b.sum() else {k: float("nan") for k in concentration([1])}
    noisy = float(b[lc == 0].sum() / b.sum()) if b.sum() and "label_correct" in base.df else float("nan")
    rows = {"n_synthetic": len(sel.synthetic.df),
            "synthetic_shortfall": len(base.df) + budget - len(train.df) if strategy.adds_pairs else 0.0,
            "n_train": len(train.df), "optimizer_steps": model.steps,
            "mean_abs_gap_base": np.abs(sel.gaps).mean(), "budget_on_mislabeled": noisy,
            **{f"alloc_{k}": v for k, v in conc.items()}}
    return [{"split": "train", "metric": k, "value": float(v)} for k, v in rows.items()]
