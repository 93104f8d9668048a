"""Strategy runs: every strategy × seed under one budget and schedule, on the task or a human track.

The rounds loop itself is `training.run_strategy`; this module feeds it the config's reward-model
kind, the synthetic pool and the evaluation sets, and runs the extra operators.
"""
from __future__ import annotations

import pandas as pd

from .config import RunConfig
from .context import Context, model_factory
from .features import Encoder, Pairs, featurize
from .pools import on_demand_builder, pool_accounting, pool_with
from .training import Candidates, RunResult, run_strategy


def train_strategies(cfg: RunConfig, base: Pairs, pool: Pairs, evals: dict[str, Pairs], encoder: Encoder | None = None,
                     desc: str = "strategies × seeds", policy: Candidates | None = None,
                     strategies: tuple[str, ...] | None = None, sources: pd.DataFrame | None = None
                     ) -> dict[tuple[str, int], RunResult]:
    """Every strategy × seed, same budget and schedule, with the RM kind of `cfg.rm`. `sources`: the
    texts on-demand synthetic pairs are built from (`source_frame`; needed for refined_paraphrase)."""
    from tqdm.auto import tqdm
    if cfg.pool_mode == "on_demand" and cfg.operator == "refined_paraphrase" and sources is None:
        raise ValueError("pool_mode='on_demand' with operator 'refined_paraphrase' needs the refined source "
                         "texts: pass sources=pools.source_frame(ctx, base)")
    on_demand = on_demand_builder(cfg, base, encoder, sources) if cfg.pool_mode == "on_demand" else None
    make = model_factory(cfg)
    out = {}
    jobs = [(s, seed) for seed in cfg.seeds for s in (strategies or cfg.strategies)]
    for s, seed in tqdm(jobs, desc=desc):
        out[(s, seed)] = run_strategy(s, base, pool, evals, cfg, seed, on_demand, make_model=make, policy=policy)
    return out


def run_extra_operators(ctx: Context, base: Pairs, evals: dict[str, Pairs]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy (but won_pace) again with each of `cfg.extra_operators` (pool mode, same budget,
    schedule and seeds): (accounting rows, tidy history with an `operator` column)."""
    acc, hist = [], []
    for op in [o for o in ctx.cfg.extra_operators if o != ctx.cfg.operator]:
        cfg, pool = pool_with(ctx, base, operator=op)
        acc.append(pool_accounting(cfg, pool))
        runs = train_strategies(cfg, base, pool, evals, ctx.encoder, desc=f"{op}: strategies × seeds",
                                strategies=tuple(s for s in cfg.strategies if s != "won_pace"))
        hist.append(pd.concat([r.history for r in runs.values()], ignore_index=True).assign(operator=op))
    if not hist:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(acc, ignore_index=True), pd.concat(hist, ignore_index=True)


def human_track(ctx: Context) -> tuple[Pairs, dict[str, Pairs]]:
    """The real-human track `cfg.human_track` as featurized train / val / test pairs.

    chitchat (offline): conversations from one starter prompt, chosen = higher human rating
    (rule in `mars_lib.tracks.chitchat_pairs`); the hub tracks need network access (paper profile).
    `cfg.human_track_path` replaces the hub id (a local copy in the hub's format). `cfg.human_max_pairs`
    caps the train pairs (a seeded subset; the authors' fixed 1k) and `cfg.human_eval_max_pairs` val / test.
    """
    from .tracks import load_track
    cfg = ctx.cfg
    df = load_track(cfg.human_track, "all") if cfg.human_track == "chitchat" else pd.concat(
        [load_track(cfg.human_track, s, path=cfg.human_track_path) for s in ("train", "test")], ignore_index=True)
    out = {}
    for split in ("train", "val", "test"):
        part = df[df.split == split]
        cap = cfg.human_max_pairs if split == "train" else cfg.human_eval_max_pairs
        if cap is not None and len(part) > cap:
            part = part.sample(n=cap, random_state=cfg.label_seed)
        if len(part):
            out[split] = featurize(part.reset_index(drop=True), ctx.encoder, desc=f"features: {cfg.human_track} {split}")
    if "train" not in out or "test" not in out:
        raise ValueError(f"track {cfg.human_track!r} has no train or no test pairs")
    return out.pop("train"), out
