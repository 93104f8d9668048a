"""When does margin-awareness help? The map over label noise β × τ × MARS version × operator (docs/method.md §12).

Every cell trains MARS (v1 or v2 at one τ) and `uniform_stratified` — B spread by the same integer
budgets with q uniform and drawn per source exactly as MARS draws — on the gold task with the same
budget, schedule, seeds, pool and per-seed label draw at that β (head RMs). The cell's effect is the
paired difference MARS − uniform_stratified over test prompts × seeds (`stats.paired_difference`) in
gold_accuracy (agreement with the gold order, which does not depend on β) and in accuracy (against the
test labels drawn at that β); p is Benjamini-Hochberg-adjusted over the map's cells, the verdict is
`stats.verdict` with δ = `verdicts.smallest_effect` ("identical" when both arms are one RM). Beside the
effect: the realised ESS/N of MARS's allocation and the share of its budget on base pairs whose training
label disagrees with gold (mean over rounds ≥ 2, seeds), and the pool's distinct pairs per source.

Finished arms are cached under `assets.cache_dir("helps_map")` keyed by content, so an interrupted run
resumes where it stopped.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars, as mars_lib.pipeline.arms

from mars_lib import strategies
from mars_lib.evaluation import stats, verdicts
from mars_lib.synthetic import operators
from mars_lib.pipeline.assets import cache_dir
from mars_lib.evaluation.claims import METRIC_COLUMN, per_pair_outcomes
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.reward_models.features import Pairs
from mars_lib.pipeline.io import cached_frame, content_key
from mars_lib.synthetic.pools import pool_with
from mars_lib.pipeline.arms import run_strategy
from mars_lib.data.gold_task import redraw_labels

BASELINE = "uniform_stratified"
VERSIONS = ("mars_v1", "mars_v2")
METRICS = ("gold_accuracy", "accuracy")          # the first is the map's headline metric
CACHE_VERSION = 1                                # bump when what a cached arm holds changes
_SKIP_FIELDS = ("results_dir", "models_dir", "profile", "helps_betas", "helps_taus_v1", "helps_taus_v2",
                "helps_operators")               # settings that do not change a cell's runs


def grid_taus(cfg: RunConfig) -> dict[str, tuple[float, ...]]:
    """version -> its τ grid (cfg.helps_taus_v1 / v2); a version with an empty grid is skipped."""
    return {v: t for v, t in (("mars_v1", cfg.helps_taus_v1), ("mars_v2", cfg.helps_taus_v2)) if t}


def _fingerprint(p: Pairs) -> str:
    """A cheap content key of a set of pairs: ids, label orientation (features) and size."""
    return content_key(p.df.pair_id.tolist(), float(np.asarray(p.phi_c, np.float64).sum()),
                       float(np.asarray(p.phi_r, np.float64).sum()), len(p.df))


def seed_pairs(cfg: RunConfig, base: Pairs, pool: Pairs, beta: float, labels_beta: float, seed: int):
    """(base, pool) one training seed sees at label noise β: the train labels redrawn at β with the seed
    (as `arms.seed_data`: the same draw for every arm of the seed). Paraphrases swap with their source;
    a pool with its own labels (resample, drawn at β when built) is left as it is — its labels are
    independent of the base pair's draw. Without cfg.seed_labels the labels are redrawn once, only when
    β differs from the β they were drawn at (`labels_beta`). Shapes: Pairs of N and M rows, unchanged."""
    if not {"gold_chosen", "gold_rejected"} <= set(base.df) or not (cfg.seed_labels or beta != labels_beta):
        return base, pool
    rng_seed = (cfg.label_seed, seed) if cfg.seed_labels else (cfg.label_seed,)
    inherit = operators.get(cfg.operator).inherits_label
    b, p, _ = redraw_labels(base, pool if inherit else None, beta, rng_seed)
    return b, (p if inherit else pool)


def labelled_at(test: Pairs, beta: float, labels_beta: float, label_seed: int) -> Pairs:
    """The test pairs with labels drawn at β (a fresh draw when β differs from the one they have)."""
    return test if beta == labels_beta else redraw_labels(test, None, beta, (label_seed, 10_007))[0]


def _late(h: pd.DataFrame, metric: str) -> float:
    """Mean over rounds ≥ 2 (round 1 allocates from an untrained RM) of a train-split history metric."""
    late = h[(h["round"] >= min(2, h["round"].max())) & (h.split == "train") & (h.metric == metric)]
    return float(late.value.mean())


def arm_outcomes(cfg: RunConfig, arm: str, tau: float | None, base: Pairs, pool: Pairs, test: Pairs, beta: float,
                 labels_beta: float, bar=None, cache: bool = True) -> pd.DataFrame:
    """One arm at one (β, τ) over every seed of cfg.seeds: per-pair outcomes on `test` (claims.per_pair_outcomes
    columns + tau, beta) with the run's realised alloc ESS/N, budget_on_mislabeled and n_synthetic per
    round (means over rounds ≥ 2, constant within a seed). [n_seeds × n_test rows]. Cached by content."""
    s = strategies.get(arm)
    run_cfg = cfg.replace(beta=beta, pool_mode="pool", rm="head", track_curvature=False, eval_every_round=False,
                          **({s.tau_field: tau} if s.tau_field and tau is not None else {}))
    key = content_key(CACHE_VERSION, {k: v for k, v in run_cfg.to_dict().items() if k not in _SKIP_FIELDS}, arm, tau,
                      beta, labels_beta, _fingerprint(base), _fingerprint(pool), _fingerprint(test), pool.df.attrs)

    def compute() -> pd.DataFrame:
        frames = []
        for seed in cfg.seeds:
            b, p = seed_pairs(run_cfg, base, pool, beta, labels_beta, seed)
            r = run_strategy(arm, b, p, {"test": test}, run_cfg, seed)
            frames.append(per_pair_outcomes({(arm, seed): r}, test, "gold", "head").assign(
                alloc_ess_over_n=_late(r.history, "alloc_ess_over_n"),
                budget_on_mislabeled=_late(r.history, "budget_on_mislabeled"),
                n_synthetic=_late(r.history, "n_synthetic")))
            if bar is not None:
                bar.update(1)
        return pd.concat(frames, ignore_index=True).assign(tau=np.nan if tau is None else tau, beta=beta)

    if not cache:
        return compute()
    path = cache_dir("helps_map") / f"arm-{key}.parquet"
    if path.exists() and bar is not None:
        bar.update(len(cfg.seeds))
    return cached_frame(path, compute)


def cell_row(mars_pp: pd.DataFrame, base_pp: pd.DataFrame, n_boot: int) -> dict:
    """The paired comparison of one cell: MARS's per-pair rows vs uniform_stratified's (same seeds and
    test pairs), per metric effect / lo / hi / se / df / p / mde / δ (unadjusted; `finish` adjusts p and
    gives the verdicts), the arms' means, and whether they are one RM (`verdicts.identical_arms`)."""
    pp = pd.concat([mars_pp, base_pp], ignore_index=True)
    arm = mars_pp.strategy.iloc[0]
    rep = verdicts.identical_arms(pp)
    row = {"identical": rep[arm] == rep[BASELINE], "n_seeds": int(mars_pp.seed.nunique()),
           "n_test_pairs": int(mars_pp.pair_id.nunique())}
    for m in METRICS:
        pre = "" if m == METRICS[0] else f"{m}_"
        v = pp.assign(value=pp[METRIC_COLUMN[m]])
        d = stats.paired_difference(v, arm, BASELINE, n_boot=n_boot)
        row.update({f"mars_{m}": float(mars_pp[METRIC_COLUMN[m]].mean()),
                    f"uniform_{m}": float(base_pp[METRIC_COLUMN[m]].mean()),
                    **{f"{pre}{k}": d[k] for k in ("effect", "lo", "hi", "se", "df", "p", "mde")},
                    f"{pre}delta": verdicts.smallest_effect(m)})
    seed_level = mars_pp.drop_duplicates("seed")
    row.update(ess_over_n=float(seed_level.alloc_ess_over_n.mean()),
               budget_on_mislabeled=float(seed_level.budget_on_mislabeled.mean()),
               budget_on_mislabeled_uniform=float(base_pp.drop_duplicates("seed").budget_on_mislabeled.mean()),
               n_synthetic_mars=float(seed_level.n_synthetic.mean()),
               n_synthetic_uniform=float(base_pp.drop_duplicates("seed").n_synthetic.mean()))
    return row


def finish(table: pd.DataFrame) -> pd.DataFrame:
    """BH-adjusted p over the map's cells (per metric) and each cell's verdict (`stats.verdict` on the
    adjusted p; "identical" when MARS and uniform_stratified trained one RM)."""
    out = table.copy()
    for m in METRICS:
        pre = "" if m == METRICS[0] else f"{m}_"
        p = out[f"{pre}p"].where(~out.identical, np.nan)
        out[f"{pre}p_adj"] = stats.benjamini_hochberg(p.to_numpy(float))
        out[f"{pre}verdict"] = [
            "identical" if r.identical else stats.verdict(r[f"{pre}effect"], r[f"{pre}lo"], r[f"{pre}hi"],
                                                          r[f"{pre}p_adj"], r[f"{pre}delta"])
            for _, r in out.iterrows()]
    return out


def pool_stats(pool: Pairs) -> dict:
    """Pool size and distinct (chosen, rejected) texts per source: how much a large b_i repeats itself."""
    d = pool.df.drop_duplicates(["source_id", "chosen", "rejected"]).groupby("source_id").size()
    return {"pool_pairs": len(pool.df), "pool_distinct_per_source": float(d.mean()) if len(d) else 0.0}


def helps_map(cfg: RunConfig, base: Pairs, test: Pairs, pool_for, labels_beta: float,
              cache: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The map: for every β of cfg.helps_betas, operator of cfg.helps_operators, version and τ of
    `grid_taus(cfg)`, MARS vs uniform_stratified (see the module docstring). `pool_for(operator, beta)`
    gives that operator's pool at β; `labels_beta`: the β `base` and `test` were labelled at.
    Returns (map: one row per cell, per-run rows: one per arm × β × operator × τ × seed)."""
    taus = grid_taus(cfg)
    units = [(b, op) for b in cfg.helps_betas for op in cfg.helps_operators] if taus else []
    n_arms = 1 + sum(len(t) for t in taus.values())
    rows, runs = [], []
    with tqdm(total=len(units) * n_arms * len(cfg.seeds), desc="when MARS helps: cells × seeds") as bar:
        for beta, op in units:
            pool, t_beta = pool_for(op, beta), labelled_at(test, beta, labels_beta, cfg.label_seed)
            ocfg = cfg.replace(operator=op)
            arm = lambda a, tau: arm_outcomes(ocfg, a, tau, base, pool, t_beta, beta, labels_beta, bar, cache)  # noqa: E731
            base_pp = arm(BASELINE, None)
            runs.append(_run_rows(base_pp, op))
            for v, grid in taus.items():
                for i, tau in enumerate(grid):
                    pp = arm(v, tau)
                    runs.append(_run_rows(pp, op))
                    rows.append({"beta": beta, "operator": op, "version": v, "tau": tau, "tau_index": i,
                                 "authors_tau": tau == getattr(RunConfig(), strategies.get(v).tau_field),
                                 **pool_stats(pool), **cell_row(pp, base_pp, cfg.n_boot)})
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    return finish(pd.DataFrame(rows)), pd.concat(runs, ignore_index=True)


def _run_rows(pp: pd.DataFrame, operator: str) -> pd.DataFrame:
    """Per-run rows of an arm's per-pair outcomes: mean accuracy / gold_accuracy and the allocation."""
    keys = ["strategy", "beta", "tau", "seed"]
    return pp.assign(operator=operator).groupby(keys + ["operator"], dropna=False, sort=False).agg(
        accuracy=("correct", "mean"), gold_accuracy=("gold_correct", "mean"), ess_over_n=("alloc_ess_over_n", "first"),
        budget_on_mislabeled=("budget_on_mislabeled", "first"), n_synthetic=("n_synthetic", "first")).reset_index()


def when_mars_helps(ctx: Context, base: Pairs, evals: dict[str, Pairs], cfg: RunConfig | None = None):
    """Notebook 03's stage: `helps_map` on the gold task with the pools of `pools.pool_with` (the paraphrase
    pool does not depend on β and is built once; the resample pool's labels are drawn at each β).
    Returns (map, per-run rows); two empty frames when the grid is empty."""
    cfg = cfg or ctx.cfg
    ctx = dataclasses.replace(ctx, cfg=cfg)
    built: dict = {}

    def pool_for(op: str, beta: float) -> Pairs:
        k = (op, None if operators.get(op).inherits_label else beta)     # inherited labels: one pool for every β
        if k not in built:
            built[k] = pool_with(ctx, base, operator=op, beta=beta if k[1] is not None else cfg.beta)[1]
        return built[k]
    return helps_map(cfg, base, evals["test"], pool_for, labels_beta=ctx.task.beta)


def helps_sentence(table: pd.DataFrame) -> str:
    """One generated paragraph from the saved map: does any cell hold (MARS beats uniform_stratified) and
    what the losing cells ("not held") share: realised ESS/N and the budget on mislabelled pairs."""
    if table.empty:
        return "The map is empty (no β, τ or operator in its grid)."
    held, lost = table[table.verdict == "held"], table[table.verdict == "not held"]
    rest = table[table.verdict != "not held"]
    say = [f"MARS beat uniform_stratified on gold accuracy (held, BH-adjusted over {len(table)} cells) in "
           f"{len(held)} cell(s)" + (": " + "; ".join(f"{r.version} τ={r.tau:g}, β={r.beta:g}, {r.operator} "
                                                       f"(+{r.effect:.3f} [{r.lo:.3f}, {r.hi:.3f}])"
                                                       for r in held.itertuples()) if len(held) else "") + "."]
    if len(lost):
        desc = lambda d: (f"ESS/N {d.ess_over_n.mean():.2f} (range {d.ess_over_n.min():.2f}-{d.ess_over_n.max():.2f}), "  # noqa: E731
                          f"{d.budget_on_mislabeled.mean():.1%} of the budget on mislabelled base pairs against "
                          f"{d.budget_on_mislabeled_uniform.mean():.1%} under uniform_stratified")
        say.append(f"It lost (not held) in {len(lost)} cell(s), mean effect {lost.effect.mean():+.3f}: {desc(lost)}; "
                   f"the other cells: {desc(rest)}.")
        say.append("Losing cells by version/operator: " + ", ".join(
            f"{k[0]}/{k[1]} {n}" for k, n in lost.groupby(["version", "operator"]).size().items()) + "; by β: " + ", ".join(
            f"{k:g}: {n}" for k, n in lost.groupby("beta").size().items()) + ".")
    else:
        say.append("No cell lost (not held).")
    n_eq = int((table.verdict == "equivalent").sum())
    say.append(f"{n_eq} cell(s) are equivalent within ±{table.delta.iloc[0]:g}, "
               f"{int((table.verdict == 'inconclusive').sum())} inconclusive, {int(table.identical.sum())} identical.")
    return " ".join(say)
