"""Strategy runs: every strategy × seed under one budget and schedule, on the task or a human track.

The rounds loop itself is `training.run_strategy`; this module feeds it the config's reward-model
kind, the synthetic pool and the evaluation sets, and runs the extra operators.
"""
from __future__ import annotations

import pandas as pd

from .config import POLICY_STRATEGIES, RunConfig
from .context import Context, model_factory
from .features import Encoder, Pairs, featurize
from .pools import on_demand_builder, pool_accounting, pool_with
from .tasks import redraw_labels
from .training import Candidates, RunResult, run_strategy


def train_strategies(cfg: RunConfig, base: Pairs, pool: Pairs, evals: dict[str, Pairs], encoder: Encoder | None = None,
                     desc: str = "strategies × seeds", policy: Candidates | None = None,
                     strategies: tuple[str, ...] | None = None, sources: pd.DataFrame | None = None,
                     self_pool: Pairs | None = None) -> dict[tuple[str, int], RunResult]:
    """Every strategy × seed, same budget and schedule, with the RM kind of `cfg.rm`. `sources`: the
    texts on-demand synthetic pairs are built from (`source_frame`; needed for refined_paraphrase).
    `policy` / `self_pool`: what won_pace and self_train draw from (`pools.policy_candidates`,
    `pools.resample_with(ctx, base, "rm")`); without them those strategies are skipped."""
    from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn
    if cfg.pool_mode == "on_demand" and cfg.operator == "refined_paraphrase" and sources is None:
        raise ValueError("pool_mode='on_demand' with operator 'refined_paraphrase' needs the refined source "
                         "texts: pass sources=pools.source_frame(ctx, base)")
    on_demand = on_demand_builder(cfg, base, encoder, sources) if cfg.pool_mode == "on_demand" else None
    make = model_factory(cfg)
    out = {}
    skip = {"won_pace"} if policy is None else set()
    skip |= {"self_train"} if self_pool is None else set()
    jobs = [(s, seed) for seed in cfg.seeds for s in (strategies or cfg.strategies) if s not in skip]
    per_seed = {}
    for s, seed in tqdm(jobs, desc=desc):
        if seed not in per_seed:
            per_seed = {seed: seed_data(cfg, base, pool, seed)}
        b, p = per_seed[seed]
        out[(s, seed)] = run_strategy(s, b, p, evals, cfg, seed, on_demand, make_model=make, policy=policy,
                                      self_pool=self_pool)
    return out


def seed_data(cfg: RunConfig, base: Pairs, pool: Pairs, seed: int) -> tuple[Pairs, Pairs]:
    """The base pairs and pool a training seed sees: on the gold task (pairs with gold scores, pool
    mode) its own draw of the noisy train labels when `cfg.seed_labels` (`tasks.redraw_labels`),
    else the pairs as they are (human labels are data, not a draw)."""
    if cfg.seed_labels and cfg.pool_mode == "pool" and {"gold_chosen", "gold_rejected"} <= set(base.df):
        return redraw_labels(base, pool, cfg.beta, (cfg.label_seed, seed))[:2]
    return base, pool


def run_extra_operators(ctx: Context, base: Pairs, evals: dict[str, Pairs]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy (but won_pace) again with each of `cfg.extra_operators` (pool mode, same budget,
    schedule and seeds): (accounting rows, tidy history with an `operator` column)."""
    acc, hist = [], []
    for op in [o for o in ctx.cfg.extra_operators if o != ctx.cfg.operator]:
        cfg, pool = pool_with(ctx, base, operator=op)
        acc.append(pool_accounting(cfg, pool))
        runs = train_strategies(cfg, base, pool, evals, ctx.encoder, desc=f"{op}: strategies × seeds",
                                strategies=tuple(s for s in cfg.strategies if s not in POLICY_STRATEGIES))
        hist.append(pd.concat([r.history for r in runs.values()], ignore_index=True).assign(operator=op))
    if not hist:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(acc, ignore_index=True), pd.concat(hist, ignore_index=True)


def human_track(ctx: Context, track: str) -> tuple[Pairs, dict[str, Pairs]]:
    """A real-human track (one of `cfg.human_track`) as featurized train and {val, test} pairs.

    chitchat (offline): conversations from one starter prompt, chosen = higher human rating
    (`tracks.chitchat_pairs`); hh-rlhf (offline): the committed HH-RLHF harmless-base copy with its
    fixed split by prompt (`mars_lib.hh`); the others need the hub (paper profile).
    `cfg.human_track_path` replaces the default source (a hub id or a local copy). Every row is
    validated when loaded (`tracks.load_track`, on_error "skip" with counts), so calling this in
    setup checks the inputs before any training. `cfg.human_max_pairs` caps the train pairs (a seeded
    subset; the authors' fixed 1k) and `cfg.human_eval_max_pairs` val / test.
    """
    from .tracks import load_track
    cfg = ctx.cfg
    if track in ("chitchat", "hh-rlhf"):
        df = load_track(track, "all", path=cfg.human_track_path)
    else:
        df = pd.concat([load_track(track, s, path=cfg.human_track_path) for s in ("train", "test")], ignore_index=True)
    out = {}
    for split in ("train", "val", "test"):
        part = df[df.split == split]
        cap = cfg.human_max_pairs if split == "train" else cfg.human_eval_max_pairs
        if cap is not None and len(part) > cap:
            part = part.sample(n=cap, random_state=cfg.label_seed)
        if len(part):
            out[split] = featurize(part.reset_index(drop=True), ctx.encoder, desc=f"features: {track} {split}")
    if "train" not in out or "test" not in out:
        raise ValueError(f"track {track!r} has no train or no test pairs")
    return out.pop("train"), out
