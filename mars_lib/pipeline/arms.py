"""Strategy runs: every strategy × seed under one budget and schedule, on the task or a human track.

The rounds loop itself is `mars.run_rounds`; this module feeds it the config's reward-model kind,
the synthetic sources and the evaluation sets, and runs the extra operators.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn

from mars_lib import strategies
from mars_lib.synthetic import operators
from mars_lib.baselines import Candidates
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context, model_factory
from mars_lib.reward_models.features import Encoder, Pairs, featurize
from mars_lib.mars import RunResult, Sources, run_rounds
from mars_lib.synthetic.pools import on_demand_builder, pool_accounting, pool_with
from mars_lib.data.gold_task import redraw_labels
from mars_lib.data.tracks import load_track
from mars_lib.evaluation.claims import per_pair_outcomes


def train_strategies(cfg: RunConfig, base: Pairs, pool: Pairs, evals: dict[str, Pairs], encoder: Encoder | None = None,
                     desc: str = "strategies × seeds", policy: Candidates | None = None,
                     arms: tuple[str, ...] | None = None, sources: pd.DataFrame | None = None,
                     self_pool: Pairs | None = None) -> dict[tuple[str, int], RunResult]:
    """Every strategy × seed, same budget and schedule, with the RM kind of `cfg.rm`. `sources`: the
    texts on-demand synthetic pairs are built from (`pools.source_frame`; needed unless paraphrase).
    `policy` / `self_pool`: what won_pace and self_train draw from (`pools.policy_candidates`,
    `pools.resample_with(ctx, base, "rm")`); without them the arms that need them are skipped.
    `arms`: a subset of `cfg.strategies` (default: all of them)."""
    if cfg.pool_mode == "on_demand" and cfg.operator != "paraphrase" and sources is None:
        raise ValueError(f"pool_mode='on_demand' with operator {cfg.operator!r} needs the texts it builds from: "
                         "pass sources=pools.source_frame(ctx, base)")
    on_demand = on_demand_builder(cfg, base, encoder, sources) if cfg.pool_mode == "on_demand" else None
    make = model_factory(cfg, base.phi_c.shape[1])
    out = {}
    have = {"policy": policy is not None, "self_pool": self_pool is not None}
    arms = [strategies.get(s) for s in (arms or cfg.strategies)]
    jobs = [(s, seed) for seed in cfg.seeds for s in arms if all(have.get(n, False) for n in s.needs)]
    per_seed = {}
    for s, seed in tqdm(jobs, desc=desc):
        if seed not in per_seed:
            per_seed = {seed: seed_data(cfg, base, pool, seed)}
        b, p = per_seed[seed]
        out[(s.name, seed)] = run_rounds(s, b, Sources(p, on_demand, policy, self_pool), evals, cfg, seed, make)
    return out


def run_strategy(name: str, base: Pairs, sources: Sources | Pairs, eval_sets: dict[str, Pairs], cfg: RunConfig,
                 seed: int, make_model=None, on_round=None) -> RunResult:
    """One arm × one seed through the rounds loop (`mars.run_rounds`). `sources` may be just the pool;
    `make_model(seed)` defaults to the config's reward-model kind (`context.model_factory`)."""
    sources = sources if isinstance(sources, Sources) else Sources(pool=sources)
    make = make_model or model_factory(cfg, base.phi_c.shape[1])
    return run_rounds(strategies.get(name), base, sources, eval_sets, cfg, seed, make, on_round)


def seed_data(cfg: RunConfig, base: Pairs, pool: Pairs, seed: int) -> tuple[Pairs, Pairs]:
    """The base pairs and pool a training seed sees: on the gold task (pairs with gold scores, pool
    mode) its own draw of the noisy train labels when `cfg.seed_labels` (`gold_task.redraw_labels`),
    else the pairs as they are (human labels are data, not a draw). A pool whose operator inherits
    the source's label (paraphrases) swaps with its source; a pool with labels of its own (resample:
    the annotator's draws for the new texts) is left as it is."""
    if cfg.seed_labels and cfg.pool_mode == "pool" and {"gold_chosen", "gold_rejected"} <= set(base.df):
        inherit = operators.get(cfg.operator).inherits_label
        new_base, new_pool, _ = redraw_labels(base, pool if inherit else None, cfg.beta, (cfg.label_seed, seed))
        return new_base, new_pool if inherit else pool
    return base, pool


def run_extra_operators(ctx: Context, base: Pairs, evals: dict[str, Pairs]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy (but won_pace) again with each of `cfg.extra_operators` (pool mode, same budget,
    schedule and seeds): (accounting rows, tidy history with an `operator` column)."""
    acc, hist = [], []
    for op in [o for o in ctx.cfg.extra_operators if o != ctx.cfg.operator]:
        cfg, pool = pool_with(ctx, base, operator=op)
        acc.append(pool_accounting(cfg, pool))
        runs = train_strategies(cfg, base, pool, evals, ctx.encoder, desc=f"{op}: strategies × seeds",
                                arms=tuple(s for s in cfg.strategies if s not in strategies.needing("policy")))
        hist.append(pd.concat([r.history for r in runs.values()], ignore_index=True).assign(operator=op))
    if not hist:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(acc, ignore_index=True), pd.concat(hist, ignore_index=True)


def human_track(ctx: Context, track: str) -> tuple[Pairs, dict[str, Pairs]]:
    """A real-human track (one of `cfg.human_track`) as featurized train and {val, test} pairs.

    chitchat (offline): conversations from one starter prompt, chosen = higher human rating
    (`tracks.chitchat_pairs`); hh-rlhf (offline): the committed HH-RLHF harmless-base copy with its
    fixed split by prompt (`mars_lib.data.hh`); the others need the hub (paper profile).
    `cfg.human_track_path` replaces the default source (a hub id or a local copy). Every row is
    validated when loaded (`tracks.load_track`, on_error "skip" with counts), so calling this in
    setup checks the inputs before any training. `cfg.human_max_pairs` caps the train pairs (a seeded
    subset; the authors' fixed 1k) and `cfg.human_eval_max_pairs` val / test.
    """
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


def tau_sweep(cfg, base: Pairs, pool: Pairs, evals: dict, track: str, taus, seeds,
              versions=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test accuracy and allocation concentration of MARS v1 / v2 at each τ (head RMs; same budget,
    schedule, seeds and per-seed label draws as the main comparison), one row per run, and every run's
    outcome on every test pair (`claims.per_pair_outcomes`, with a `tau` column: what the paired
    intervals against uniform are computed from). Concentration: mean over rounds ≥ 2 of the realised
    allocation (round 1 allocates from an untrained RM unless warm_start, so it is uniform)."""
    versions = versions or [n for n, s in strategies.REGISTRY.items() if s.tau_field]     # every arm with a τ
    rows, per_pair = [], []
    jobs = [(v, t, s) for s in seeds for v in versions for t in taus]
    data = {}
    for v, t, seed in tqdm(jobs, desc=f"{track}: τ sweep"):
        if seed not in data:                      # the seed's own label draw, as in the main comparison
            data = {seed: seed_data(cfg, base, pool, seed)}
        # what the sweep reads only: test accuracy after the last round and the allocation (no per-round
        # evaluation or curvature tracking, which would cost more than the training itself)
        c = dataclasses.replace(cfg, rm="head", track_curvature=False, eval_every_round=False,
                                **{strategies.get(v).tau_field: t})
        r = run_strategy(v, *data[seed], {"test": evals["test"]}, c, seed)
        h = r.history
        per_pair.append(per_pair_outcomes({(v, seed): r}, evals["test"], track, "head").assign(tau=t))
        late = h[(h["round"] >= min(2, h["round"].max())) & (h.split == "train")]
        last = h[(h["round"] == h["round"].max()) & (h.split == "test")].set_index("metric").value
        rows.append({"track": track, "strategy": v, "tau": t, "seed": seed, "accuracy": last["accuracy"],
                     **{k: late[late.metric == f"alloc_{k}"].value.mean()
                        for k in ("ess_over_n", "gini", "top10_share", "max_over_mean")}})
    return pd.DataFrame(rows), pd.concat(per_pair, ignore_index=True)


def tau_sweep_summary(sweep: pd.DataFrame, paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (track, version, τ): mean accuracy and concentration over seeds, whether the allocation is
    uniform to the eye (ESS/N ≥ 0.99) and, given `paired` (`claims.tau_sweep_paired`), the paired
    difference from uniform with its interval and verdict."""
    out = sweep.groupby(["track", "strategy", "tau"], sort=False).agg(
        accuracy=("accuracy", "mean"), accuracy_sd=("accuracy", "std"), ess_over_n=("ess_over_n", "mean"),
        gini=("gini", "mean"), top10_share=("top10_share", "mean"), max_over_mean=("max_over_mean", "mean"),
        n_seeds=("seed", "nunique")).reset_index()
    out["uniform"] = out.ess_over_n >= 0.99
    return out if paired is None else out.merge(paired, on=["track", "strategy", "tau"], how="left")
