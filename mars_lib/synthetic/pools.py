"""Synthetic pools: the texts and pairs every augmenting strategy draws from.

The builders behind each operator of `mars_lib.synthetic.operators` (which chooses among them): the paraphrase
pool (label-inheriting paraphrases, the authors' v1), the semantically refined source texts (v2,
`mars_lib.synthetic.refine`) and the resample pool (close-quality pairs among fresh policy samples,
AI-labelled). Every pool is cached by content (`io.cached_frame`); `label_fidelity` gold-judges what
paraphrasing did to the labels.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mars_lib.synthetic import operators
from mars_lib.pipeline.assets import cache_dir
from mars_lib.synthetic.builders import ParaphraseOp, build_pool, draw_on_demand, resample_pool
from mars_lib.baselines import Candidates
from mars_lib.pipeline.context import Context, first_reward_model, rewriter
from mars_lib.reward_models.features import Encoder, Pairs, featurize
from mars_lib.pipeline.io import cached_frame, content_key
from mars_lib.judges.labelers import GoldLabeler, RewardModelLabeler
from mars_lib.data.gold_task import load_policy_samples
from mars_lib.synthetic.refine import RefineConfig, semantic_distance, semantic_refine

if TYPE_CHECKING:
    from mars_lib.pipeline.config import RunConfig


def paraphrase_op(cfg: RunConfig) -> ParaphraseOp:
    return ParaphraseOp(n=cfg.n_paraphrases, paraphrase_prompt=cfg.paraphrase_prompt, seed=cfg.label_seed,
                        model=cfg.paraphraser, device=cfg.device)


def paraphrase_pool_frame(cfg: RunConfig, base_df: pd.DataFrame) -> pd.DataFrame:
    """The authors' pre-generated pool as a table: n×n paraphrase pairs per base pair (no features).

    Cached in the cache folder by content (base pair texts + operator parameters)."""
    op = paraphrase_op(cfg)
    key = content_key(op.params(), base_df[["prompt", "chosen", "rejected"]].values.tolist())
    return cached_frame(cache_dir("pools") / f"pool-{key}.parquet", lambda: build_pool(base_df, op))


def refinement(ctx: Context, base_df: pd.DataFrame) -> pd.DataFrame:
    """MARS v2's semantic refinement of the base pairs (mars_lib.synthetic.refine), cached by content.

    Every low-distance pair is rewritten when cfg.refine_max_pairs is None (the authors); otherwise a
    seeded random subset of that many low-distance pairs (the threshold is the whole set's mean)."""
    cfg = ctx.cfg
    rc = RefineConfig(attempts=cfg.refine_attempts, seed=cfg.label_seed)
    key = content_key(base_df[["prompt", "chosen", "rejected"]].values.tolist(), cfg.refine_model,
                      cfg.refine_max_pairs, ctx.encoder.encoder_id, repr(rc))

    def compute() -> pd.DataFrame:
        rows = None
        if cfg.refine_max_pairs is not None:
            d = semantic_distance(ctx.encoder, base_df.chosen.tolist(), base_df.rejected.tolist())
            low = np.flatnonzero(d < d.mean())
            if len(low) > cfg.refine_max_pairs:
                rows = np.sort(np.random.default_rng(cfg.label_seed).choice(low, cfg.refine_max_pairs, replace=False))
        gen = rewriter(cfg)
        out = semantic_refine(base_df, ctx.encoder, gen, rc, rows=rows)
        out.attrs["rewriter"] = gen.model_id
        return out
    return cached_frame(cache_dir("refine") / f"refine-{key}.parquet", compute)


def refined_sources(ctx: Context, base: Pairs) -> pd.DataFrame:
    """The base pairs' texts after semantic refinement (same pair_id and labels; the base training
    pairs themselves stay original): what the refined_paraphrase operator paraphrases."""
    ref = refinement(ctx, base.df)
    out = base.df.copy()
    out["chosen"], out["rejected"] = ref.chosen.to_numpy(), ref.rejected.to_numpy()
    out.attrs.update(ref.attrs)
    out.attrs["refined_pairs"] = int(ref.refinement_kept.sum())
    return out


def drop_label_flips(cfg: RunConfig, ctx: Context, base: Pairs, pool: Pairs) -> Pairs:
    """cfg.flip_filter 'rm': drop synthetic pairs whose inherited label the no-augmentation head RM
    reverses (its reward gap on the synthetic pair < 0); the count is in attrs['flip_dropped']."""
    if cfg.flip_filter == "off" or len(pool.df) == 0:
        return pool
    rm = first_reward_model(cfg, base)
    keep = rm.reward_gap(pool.phi_c, pool.phi_r) >= 0
    out = pool.take(np.flatnonzero(keep))
    out.df.attrs.update({**pool.df.attrs, "flip_filter": cfg.flip_filter, "flip_dropped": int((~keep).sum())})
    return out


def labelled_pool_frame(cfg: RunConfig, base: Pairs, sources: pd.DataFrame | None = None) -> pd.DataFrame:
    """`paraphrase_pool_frame` of `sources`' texts (default the base pairs), each row with its source's
    gold scores and label (inherited: the authors' assumption; notebook 02 checks it). Texts only."""
    pool = paraphrase_pool_frame(cfg, base.df if sources is None else sources)
    src = base.df.set_index("pair_id")
    for col in ("gold_chosen", "gold_rejected", "label_correct"):
        if col in src:
            pool[col] = src.loc[pool.source_id, col].to_numpy()
    return pool


def synthetic_pool(cfg: RunConfig, base: Pairs, encoder: Encoder, sources: pd.DataFrame | None = None) -> Pairs:
    """The paraphrase pool of `paraphrase_pool_frame` (of `sources`' texts, default the base pairs),
    with the source's labels and features."""
    out = featurize(labelled_pool_frame(cfg, base, sources), encoder, desc="features: synthetic pool")
    if sources is not None:
        out.df.attrs.update({k: v for k, v in sources.attrs.items() if k in ("refined_pairs", "threshold", "rewriter")})
    return out


def paraphrase_pool(ctx: Context, base: Pairs) -> Pairs:
    """The paraphrase operator's pool: n×n paraphrase pairs of each base pair, label inherited."""
    return synthetic_pool(ctx.cfg, base, ctx.encoder)


def refined_paraphrase_pool(ctx: Context, base: Pairs) -> Pairs:
    """The refined_paraphrase operator's pool: paraphrases of the semantically refined texts."""
    return synthetic_pool(ctx.cfg, base, ctx.encoder, refined_sources(ctx, base))


def base_texts(ctx: Context, base: Pairs) -> pd.DataFrame:
    return base.df


def make_pool(cfg: RunConfig, ctx: Context, base: Pairs) -> Pairs:
    """The synthetic pool of `cfg.operator`, then the optional label-flip filter (`cfg.flip_filter`)."""
    return drop_label_flips(cfg, ctx, base, operators.get(cfg.operator).builder()(ctx, base))


def source_frame(ctx: Context, base: Pairs) -> pd.DataFrame:
    """The texts synthetic pairs are built from under `cfg.operator` (the base pairs, or refined ones)."""
    texts = operators.get(ctx.cfg.operator).source_texts()
    return texts(ctx, base) if texts else base.df


def pool_with(ctx: Context, base: Pairs, **changes):
    """(cfg, pool) for this run's config with `changes` applied (always pool mode)."""
    cfg = dataclasses.replace(ctx.cfg, pool_mode="pool", **changes)
    return cfg, make_pool(cfg, dataclasses.replace(ctx, cfg=cfg), base)


def resample_with(ctx: Context, base: Pairs, labeler: str) -> tuple[Pairs, pd.DataFrame]:
    """The resample pool under another labeler than cfg's: (pool, its accounting row)."""
    cfg, pool = pool_with(ctx, base, operator="resample", labeler=labeler)
    return pool, pool_accounting(cfg, pool)


def resample_synthetic_pool(ctx: Context, base: Pairs) -> Pairs:
    """Close-quality pairs among the task's policy samples, labelled by `cfg.labeler` (augment.resample_pool).

    gold: the simulated annotator (the task's own noise model, β = cfg.beta). rm: the no-augmentation
    head RM trained on the base pairs (self-training; it never reads gold scores). The pool keeps
    the labeler's accounting in attrs (labeler calls, generated tokens, band) and each pair's gold
    scores, so label fidelity is measured on the new responses themselves."""
    cfg = ctx.cfg
    samples = load_policy_samples(cfg.task_path)
    if cfg.labeler == "gold":
        labeler = GoldLabeler(samples, cfg.beta)
    else:
        rm = first_reward_model(cfg, base)
        labeler = RewardModelLabeler(lambda p, r: rm.score(p, r, ctx.encoder.embed_pairs(p, r, desc="features: labeler")))
    pool = resample_pool(base.df, samples, labeler, band=tuple(cfg.gap_band), seed=cfg.label_seed)
    if "gold_chosen" in pool:
        pool["label_correct"] = pool.gold_chosen > pool.gold_rejected
    out = featurize(pool, ctx.encoder, desc="features: resample pool")
    out.df.attrs.update(pool.attrs)
    return out


def pool_accounting(cfg: RunConfig, pool: Pairs) -> pd.DataFrame:
    """One row: what the synthetic pool cost and how faithful its labels are (gold where known)."""
    a = pool.df.attrs
    row = {"operator": cfg.operator, "labeler": a.get("labeler", f"inherited ({cfg.operator})"),
           "pool_pairs": len(pool.df), "labeler_calls": a.get("labeler_calls", 0),
           "generated_tokens": a.get("generated_tokens", 0), "candidates": a.get("candidates"),
           "kept": a.get("kept"), "band": str(a.get("band_abs")) if "band_abs" in a else None,
           "refined_sources": a.get("refined_pairs"), "flip_dropped": a.get("flip_dropped", 0)}
    if {"gold_chosen", "gold_rejected"} <= set(pool.df) and "labeler" in a:     # labels of its own, not inherited
        row["label_agrees_with_gold"] = float((pool.df.gold_chosen > pool.df.gold_rejected).mean())
        row["mean_abs_gold_gap"] = float((pool.df.gold_chosen - pool.df.gold_rejected).abs().mean())
    return pd.DataFrame([row])


def on_demand_builder(cfg: RunConfig, base: Pairs, encoder: Encoder, sources: pd.DataFrame | None = None):
    """pool_mode 'on_demand': exactly b_i fresh paraphrase pairs for source i (of `sources`' texts,
    default the base pairs), featurized (cached)."""
    op = paraphrase_op(cfg)
    src = base.df.set_index("pair_id")
    texts = base.df if sources is None else sources

    def build(budgets, round_seed: int) -> Pairs:
        syn = draw_on_demand(texts, budgets, op, round_seed)
        for col in ("gold_chosen", "gold_rejected", "label_correct"):
            if col in src and len(syn):
                syn[col] = src.loc[syn.source_id, col].to_numpy()
        return featurize(syn, encoder, desc="features: on-demand synthetic")
    return build


def policy_candidates(ctx: Context, base: Pairs) -> Candidates:
    """The task's committed policy samples (N per train prompt) for the prompts of `base`, featurized.

    These are what Pace et al.'s West-of-N (`won_pace`) ranks; regenerate with
    `python -m mars_lib.data.gold_task samples` (recorded in the task folder's policy_samples.json)."""
    ps = load_policy_samples(ctx.cfg.task_path)
    ps = ps[ps.prompt_id.isin(set(base.df.prompt_id))].reset_index(drop=True)
    if ps.empty:
        raise ValueError("no policy samples for the base prompts; regenerate them (python -m mars_lib.data.gold_task samples)")
    phi = ctx.encoder.embed_pairs(ps.prompt.tolist(), ps.response.tolist(), desc="features: policy samples")
    return Candidates(ps, phi)


def finished_flags(responses: pd.DataFrame | None, prompts, originals) -> list[bool]:
    """Whether each original response ended by itself (the task's `finished` column, looked up by
    prompt and text); False where unknown, so the judge reads completeness from the text's ending.
    A paraphrase keeps its original's ending, so it inherits the flag."""
    if responses is None:
        return [False] * len(originals)
    lut = dict(zip(zip(responses.prompt, responses.response), responses.finished.astype(bool)))
    return [lut.get((p, o), False) for p, o in zip(prompts, originals)]


def label_fidelity(cfg: RunConfig, sources: Pairs, source_gap: np.ndarray, judge, encoder: Encoder,
                   responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Gold-judge every synthetic pair of the given sources (what no published implementation measures).

    `responses`: the task's responses (`ctx.task.responses`), whose `finished` flags the paraphrases
    inherit (`finished_flags`); the judge's completeness facet depends on it.

    One row per synthetic pair: source_id, source reward gap, gold of the synthetic chosen/rejected,
    whether the synthetic pair keeps its source's gold order (`keeps_gold_order`), whether its
    inherited label agrees with gold (`label_correct_syn`), and meaning preservation (MiniLM
    cosine of each paraphrased response to its original).
    """
    op = paraphrase_op(cfg)
    pool = build_pool(sources.df, op, progress=False)
    if pool.empty:
        return pd.DataFrame()
    n = len(pool)
    src = sources.df.set_index("pair_id")
    gap = pd.Series(source_gap, index=sources.df.pair_id)
    orig_c = src.loc[pool.source_id, "chosen"].tolist()
    orig_r = src.loc[pool.source_id, "rejected"].tolist()
    orig_p = src.loc[pool.source_id, "prompt"].tolist()
    g = judge.score(pool.prompt.tolist() + pool.prompt.tolist(), pool.chosen.tolist() + pool.rejected.tolist(),
                    finished_flags(responses, orig_p + orig_p, orig_c + orig_r))
    e = encoder.embed(pool.chosen.tolist() + orig_c + pool.rejected.tolist() + orig_r, progress=False)
    cos_c = (e[:n] * e[n:2 * n]).sum(1)
    cos_r = (e[2 * n:3 * n] * e[3 * n:]).sum(1)
    src_order = np.sign(src.loc[pool.source_id, "gold_chosen"].to_numpy() - src.loc[pool.source_id, "gold_rejected"].to_numpy())
    out = pd.DataFrame({"source_id": pool.source_id, "syn_index": pool.syn_index,
                        "source_reward_gap": gap.loc[pool.source_id].to_numpy(),
                        "source_label_correct": src.loc[pool.source_id, "label_correct"].to_numpy(),
                        "gold_chosen_syn": g[:n], "gold_rejected_syn": g[n:],
                        "cos_chosen": cos_c, "cos_rejected": cos_r})
    out["keeps_gold_order"] = np.sign(out.gold_chosen_syn - out.gold_rejected_syn) == src_order
    out["label_correct_syn"] = out.gold_chosen_syn >= out.gold_rejected_syn
    return out
