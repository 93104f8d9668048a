"""Notebook 03's stages: each trains or computes one part of the comparison, saves its tables under
`<results>/03_rm_training/` and returns them, so every computation cell of the notebook is one call.

    s = rm_training.setup(cfg)            the task, the pools, the human tracks (checked before training)
    gold = rm_training.train_gold(s)      every strategy × seed on the gold task
    rm_training.gold_results(s, gold)     summary, per-strategy intervals, paired differences
    rm_training.other_operators(s, gold)      the same arms with refined paraphrases and resampled pairs
    hum = rm_training.human_tracks(s)     chitchat and hh-rlhf: the same arms on human labels
    rm_training.backbones(s, hum)         the same again with the head on a stronger frozen encoder
    rm_training.tau_sweep(s, gold, hum)   MARS at every τ against uniform, and the allocation's concentration
    rm_training.when_mars_helps(s)        the map: MARS − uniform_stratified over β × τ × version × operator
    rm_training.ood(s, gold, hum)         every RM on LLMBar and MT-Bench human judgments

The tables are the notebook's results; figures and the claims table read them back from disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mars_lib.baselines import Candidates
from mars_lib.evaluation import claims, metrics
from mars_lib.evaluation import ood as ood_eval
from mars_lib.evaluation.rewardbench import rewardbench_eval
from mars_lib.mars import RunResult
from mars_lib.pipeline import arms, backbones as backbone_regime, context, helps_map
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.pipeline.tables import stage_saver
from mars_lib.reward_models import checkpoints
from mars_lib.reward_models.features import Pairs
from mars_lib.strategies import needing
from mars_lib.synthetic import pools

OUT = "03_rm_training"


_save = stage_saver(OUT)        # save(cfg, df, name) -> df, under <results>/<OUT>/


@dataclass
class Setup:
    """What every stage of notebook 03 trains on: the gold task's pairs, pool and sources, the policy
    samples and self-labelled pool of the arms that need them, and each human track's pairs."""
    cfg: RunConfig
    ctx: Context
    base: Pairs
    evals: dict[str, Pairs]
    pool: Pairs
    sources: pd.DataFrame
    policy: Candidates | None
    self_pool: Pairs | None
    tracks: dict[str, tuple[Pairs, dict[str, Pairs]]]


def setup(cfg: RunConfig) -> Setup:
    """Saves the config; loads the task, builds (or reads from cache) the synthetic pool, and loads and
    validates every human track now, before any training (a bad file stops here, not after an hour)."""
    cfg.save(cfg.path(OUT, "config.json"))
    ctx = context.setup(cfg)
    base, evals = ctx.pairs("train"), {"val": ctx.pairs("val"), "test": ctx.pairs("test")}
    pool = pools.make_pool(cfg, ctx, base)
    _save(cfg, pools.pool_accounting(cfg, pool), "synthetic_accounting.csv")
    wanted = set(cfg.strategies)
    policy = pools.policy_candidates(ctx, base) if set(needing("policy")) & wanted else None
    # self-training: close pairs among the policy samples, labelled by the no-augmentation RM itself
    self_pool = pools.resample_with(ctx, base, "rm")[0] if set(needing("self_pool")) & wanted else None
    tracks = {t: arms.human_track(ctx, t) for t in cfg.human_track}
    print(f"base pairs {len(base.df)}, {cfg.operator} pool {len(pool.df)}, budget per round "
          f"{round(cfg.budget_ratio * len(base.df))}, test pairs {len(evals['test'].df)}, seeds {list(cfg.seeds)}")
    for t, (b, ev) in tracks.items():
        print(f"{t}: base pairs {len(b.df)}, test pairs {len(ev['test'].df)} from "
              f"{ev['test'].df.pipe(claims.cluster_of).nunique()} prompts")
    return Setup(cfg, ctx, base, evals, pool, pools.source_frame(ctx, base), policy, self_pool, tracks)


@dataclass
class Trained:
    """One set of trained arms: the runs by (strategy, seed), their per-round history and every RM's
    outcome on every test pair (what the intervals over test prompts and seeds are computed from)."""
    runs: dict[tuple[str, int], RunResult]
    history: pd.DataFrame
    per_pair: pd.DataFrame


def train_gold(s: Setup) -> Trained:
    """Every strategy × seed on the gold task (same budget, schedule and seeds). Saves history.csv, the
    first seed's MARS allocations, the RMs (models.csv) and per_pair_test.parquet."""
    cfg = s.cfg
    runs = arms.train_strategies(cfg, s.base, s.pool, s.evals, s.ctx.encoder, policy=s.policy, sources=s.sources,
                                 self_pool=s.self_pool)
    history = _save(cfg, pd.concat([r.history for r in runs.values()], ignore_index=True), "history.csv")
    first = cfg.seeds[0]
    _save(cfg, pd.concat([r.allocations for (a, seed), r in runs.items() if seed == first and a.startswith("mars")]),
          f"allocations_seed{first}.csv")
    _save(cfg, checkpoints.save_models(runs, cfg), "models.csv")
    per_pair = _save(cfg, claims.per_pair_outcomes(runs, s.evals["test"], "gold", cfg.rm), "per_pair_test.parquet")
    return Trained(runs, history, per_pair)


def _authors_protocol(runs: dict, test: Pairs, **extra) -> pd.DataFrame:
    return pd.DataFrame([{"strategy": a, "seed": seed, **extra, **metrics.authors_protocol(*r.model.pair_scores(test))}
                         for (a, seed), r in runs.items()])


def gold_results(s: Setup, gold: Trained) -> dict[str, pd.DataFrame]:
    """The gold task's tables at the last round: summary.csv (every metric, seed-level), noise_ceiling.csv,
    intervals.csv (per strategy, over test prompts × seeds), paired.csv (MARS − each arm, the claims'
    basis) and authors_protocol.csv (the authors' 3 × 100-pair evaluation)."""
    cfg = s.cfg
    _save(cfg, pd.DataFrame([{"split": "test", "noise_ceiling": s.ctx.task.noise_ceiling("test")}]), "noise_ceiling.csv")
    return {"summary": _save(cfg, metrics.final_summary(gold.history, cfg), "summary.csv"),
            "intervals": _save(cfg, claims.strategy_intervals(gold.per_pair, n_boot=cfg.n_boot), "intervals.csv"),
            "paired": _save(cfg, claims.paired_table(gold.per_pair, n_boot=cfg.n_boot), "paired.csv"),
            "authors_protocol": _save(cfg, _authors_protocol(gold.runs, s.evals["test"]), "authors_protocol.csv")}


def other_operators(s: Setup, gold: Trained) -> dict[str, pd.DataFrame]:
    """Every strategy again with each of `cfg.extra_operators` (pool mode, same budget, schedule and
    seeds): the pools' accounting and the last round's summary per operator (summary_by_operator.csv).
    Empty frames when there is no extra operator."""
    cfg = s.cfg
    accounting, history = arms.run_extra_operators(s.ctx, s.base, s.evals)
    if not len(history):
        return {"accounting": accounting, "by_operator": pd.DataFrame()}
    _save(cfg, accounting, "synthetic_accounting_extra.csv")
    _save(cfg, history, "history_extra_operators.csv")
    both = pd.concat([gold.history.assign(operator=cfg.operator), history], ignore_index=True)
    by_op = pd.concat([metrics.final_summary(g, cfg).assign(operator=o) for o, g in both.groupby("operator")],
                      ignore_index=True)
    accounting = pd.concat([pools.pool_accounting(cfg, s.pool), accounting], ignore_index=True)
    return {"accounting": accounting, "by_operator": _save(cfg, by_op, "summary_by_operator.csv")}


@dataclass
class HumanTracks:
    """The arms trained on each human track, with each track's synthetic pool."""
    runs: dict[str, dict[tuple[str, int], RunResult]]
    pools: dict[str, Pairs]
    tables: dict[str, pd.DataFrame]
    per_pair: pd.DataFrame | None = None      # every RM on every test pair of every track


def human_tracks(s: Setup) -> HumanTracks:
    """Every strategy × seed on each human track (`cfg.human_track`), same budget, schedule and seeds.
    Saves history_human_track.csv, per_pair_human_track.parquet, models_human_track.csv and, from them,
    summary_, intervals_, paired_ and authors_protocol_human_track.csv."""
    cfg, runs, track_pools, hist, pp, proto = s.cfg, {}, {}, [], [], []
    for t, (base, evals) in s.tracks.items():
        pool = track_pools[t] = pools.synthetic_pool(cfg, base, s.ctx.encoder)
        print(f"{t}: base pairs {len(base.df)}, pool {len(pool.df)}, test pairs {len(evals['test'].df)}, "
              f"seeds {list(cfg.seeds)}")
        runs[t] = arms.train_strategies(cfg, base, pool, evals, s.ctx.encoder, desc=f"{t}: strategies × seeds")
        hist.append(pd.concat([r.history for r in runs[t].values()], ignore_index=True).assign(track=t))
        pp.append(claims.per_pair_outcomes(runs[t], evals["test"], t, cfg.rm))
        proto.append(_authors_protocol(runs[t], evals["test"], track=t))
    if not s.tracks:
        return HumanTracks(runs, track_pools, {})
    history = _save(cfg, pd.concat(hist, ignore_index=True), "history_human_track.csv")
    per_pair = _save(cfg, pd.concat(pp, ignore_index=True), "per_pair_human_track.parquet")
    _save(cfg, pd.concat([checkpoints.save_models(runs[t], cfg, folder=f"{OUT}/{t}").assign(track=t) for t in runs],
                         ignore_index=True), "models_human_track.csv")
    summary = pd.concat([metrics.final_summary(g, cfg).assign(track=t) for t, g in history.groupby("track", sort=False)],
                        ignore_index=True)
    tables = {"summary": _save(cfg, summary, "summary_human_track.csv"),
              "intervals": _save(cfg, claims.strategy_intervals(per_pair, n_boot=cfg.n_boot), "intervals_human_track.csv"),
              "paired": _save(cfg, claims.paired_table(per_pair, n_boot=cfg.n_boot), "paired_human_track.csv"),
              "authors_protocol": _save(cfg, pd.concat(proto, ignore_index=True), "authors_protocol_human_track.csv")}
    return HumanTracks(runs, track_pools, tables, per_pair)


def backbones(s: Setup, hum: HumanTracks) -> pd.DataFrame:
    """Every arm × seed on each human track again, with the head on each encoder of `cfg.head_backbones`
    (`pipeline.backbones`: the same pool texts, budget, schedule and seeds). Saves per_pair_backbones.parquet
    and history_backbones.csv (rm "head:<name>", read by the claims) and backbones.csv: every backbone's
    accuracy (the run's own encoder too), the length baseline, RM − length, the gaps' spread and ESS/N.
    Empty when head_backbones is () or there is no human track."""
    cfg = s.cfg
    if not cfg.head_backbones or not s.tracks:
        return pd.DataFrame()
    pp, hist = backbone_regime.train_backbones(s, hum)
    _save(cfg, pp, "per_pair_backbones.parquet")
    _save(cfg, hist, "history_backbones.csv")
    own = pd.concat([r.history.assign(track=t) for t, runs in hum.runs.items() for r in runs.values()],
                    ignore_index=True).assign(rm=cfg.rm)
    table = backbone_regime.backbone_table(pd.concat([hum.per_pair, pp], ignore_index=True),
                                           {t: ev["test"].df for t, (_, ev) in s.tracks.items()},
                                           pd.concat([own, hist], ignore_index=True), n_boot=cfg.n_boot)
    return _save(cfg, table, "backbones.csv")


def tau_sweep(s: Setup, gold: Trained, hum: HumanTracks) -> dict[str, pd.DataFrame]:
    """How concentrated MARS's allocation is at each τ of `cfg.tau_grid` over the first RM's gaps
    (tau_allocation.csv), and MARS v1 / v2 trained at each τ on the gold task and hh-rlhf: accuracy and
    realised concentration (tau_sweep_runs.csv per seed), and tau_sweep.csv over seeds with each τ's
    paired difference from uniform_stratified (or uniform) of the main comparison, interval and verdict."""
    cfg = s.cfg
    first = context.first_reward_model(cfg, s.base)
    conc = pd.concat([claims.tau_allocation(first.pair_gap(s.base), cfg.tau_grid, v).assign(track="gold")
                      for v in ("mars_v1", "mars_v2")], ignore_index=True)
    sets = {"gold": (s.base, s.pool, s.evals)}
    if "hh-rlhf" in s.tracks:
        sets["hh-rlhf"] = (s.tracks["hh-rlhf"][0], hum.pools["hh-rlhf"], s.tracks["hh-rlhf"][1])
    runs, pps = zip(*(arms.tau_sweep(cfg, b, p, e, t, cfg.tau_grid, cfg.seeds) for t, (b, p, e) in sets.items()))
    sweep = _save(cfg, pd.concat(runs, ignore_index=True), "tau_sweep_runs.csv")
    baseline = next((b for b in ("uniform_stratified", "uniform") if b in cfg.strategies), None)
    main_pp = pd.concat([gold.per_pair, hum.per_pair], ignore_index=True)
    paired = claims.tau_sweep_paired(pd.concat(pps, ignore_index=True), main_pp, baseline, cfg.n_boot) if baseline else None
    return {"allocation": _save(cfg, conc, "tau_allocation.csv"),
            "sweep": _save(cfg, arms.tau_sweep_summary(sweep, paired), "tau_sweep.csv")}


def authors_tau_line(conc: pd.DataFrame) -> list[str]:
    """One sentence per MARS version at the authors' τ: the allocation's ESS/N and Gini over the first
    RM's gaps, and whether it is uniform for all practical purposes (ESS/N ≥ 0.99)."""
    out = []
    for v, tau in (("mars_v1", 0.1), ("mars_v2", 0.5)):
        row = conc[(conc.strategy == v) & np.isclose(conc.tau, tau)]
        if len(row):
            e = row.ess_over_n.iloc[0]
            out.append(f"{v} at the authors' τ = {tau}: ESS/N = {e:.4f}, Gini = {row.gini.iloc[0]:.4f} over the first "
                       "RM's gaps — " + ("uniform for all practical purposes" if e >= 0.99 else "a non-uniform allocation"))
    return out


def when_mars_helps(s: Setup) -> pd.DataFrame:
    """The when-MARS-helps map (`helps_map.when_mars_helps`): when_mars_helps.csv (one row per β × τ ×
    version × operator cell, paired against uniform_stratified) and when_mars_helps_runs.csv (per run).
    Empty when the map's grid is (helps_betas, helps_taus_v1 / v2, helps_operators)."""
    table, runs = helps_map.when_mars_helps(s.ctx, s.base, s.evals, s.cfg)
    if len(table):
        _save(s.cfg, runs, "when_mars_helps_runs.csv")
        _save(s.cfg, table, "when_mars_helps.csv")
    return table


def ood(s: Setup, gold: Trained, hum: HumanTracks) -> pd.DataFrame:
    """Every RM of the gold task and of each human track on LLMBar (5 subsets) and MT-Bench human
    judgments: ood_per_pair.parquet, ood_eval.csv (accuracy per subset and section, Wilson intervals
    over pairs) and ood_intervals.csv (per strategy, over prompts and seeds), which it returns.
    `cfg.human_eval_max_pairs` keeps the first pairs of each subset (smoke: 60); None: all 614."""
    cfg = s.cfg
    items = ood_eval.load_ood()
    if cfg.human_eval_max_pairs is not None:
        items = items.groupby("subset", sort=False).head(cfg.human_eval_max_pairs).reset_index(drop=True)
    sets = {"task": gold.runs, **hum.runs}
    inputs = {f: h for f, h in ood_eval.readme_sha256(ood_eval.OOD_DIR).items() if f in ood_eval.FILES}
    pp = pd.concat([ood_eval.score_ood({k: r.model for k, r in runs.items()}, s.ctx.encoder, items).assign(trained_on=t)
                    for t, runs in sets.items()], ignore_index=True)
    _save(cfg, pp, "ood_per_pair.parquet", inputs=inputs)
    _save(cfg, pd.concat([ood_eval.ood_accuracy(g).assign(trained_on=t) for t, g in pp.groupby("trained_on", sort=False)],
                         ignore_index=True), "ood_eval.csv", inputs=inputs)
    ints = pd.concat([claims.strategy_intervals(g.assign(track=t, rm=cfg.rm, correct=g.correct.astype(float)),
                                                metrics=("accuracy",), n_boot=cfg.n_boot).assign(section=sec)
                      for (t, sec), g in pp.groupby(["trained_on", "section"], sort=False)], ignore_index=True)
    return _save(cfg, ints.rename(columns={"track": "trained_on"}), "ood_intervals.csv", inputs=inputs)


def rewardbench(s: Setup, gold: Trained, hum: HumanTracks) -> dict[str, pd.DataFrame]:
    """The RMs of the first human track (else the gold task's) on RewardBench, when `cfg.rewardbench`
    names it: rewardbench.csv (ours), rewardbench_authors.csv and rewardbench_summary.csv (per strategy
    and section, over seeds). Empty when `cfg.rewardbench` is None."""
    cfg = s.cfg
    if not cfg.rewardbench:
        return {}
    on = next(iter(hum.runs), "task")
    runs = hum.runs[on] if hum.runs else gold.runs
    rb, rb_auth = rewardbench_eval(s.ctx, {k: r.model for k, r in runs.items()}, trained_on=on)
    summary = pd.DataFrame([{"strategy": a, "section": sec, **metrics.seed_spread(g.sort_values("seed").value)}
                            for (a, sec), g in rb.groupby(["strategy", "section"], sort=False)])
    return {"ours": _save(cfg, rb, "rewardbench.csv"), "authors": _save(cfg, rb_auth, "rewardbench_authors.csv"),
            "summary": _save(cfg, summary, "rewardbench_summary.csv")}


def interval_text(df: pd.DataFrame, index, columns: str = "metric", order=None) -> pd.DataFrame:
    """A table of "mean [lo, hi]" strings (3 decimals) — or "mean (sd s)" for a seed-spread table
    (`metrics.seed_spread`) — `index` × `columns`, rows in `order` when given: how the notebooks show
    an interval table."""
    f = "{:.3f}".format
    text = (df["mean"].map(f) + " [" + df.lo.map(f) + ", " + df.hi.map(f) + "]") if "lo" in df else \
        (df["mean"].map(f) + " (sd " + df.sd.map(f) + ")")
    out = df.assign(value=text).pivot(index=index, columns=columns, values="value")
    return out.reindex(order) if order is not None else out
