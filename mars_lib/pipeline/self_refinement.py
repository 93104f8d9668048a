"""Notebook 02's stages: each builds or judges one kind of synthetic pair, saves its tables under
`<results>/02_self_refinement/` and returns them, so every computation cell of the notebook is one call.

    s = self_refinement.setup(cfg)                    the config saved, the task, the base pairs
    src = self_refinement.select_sources(s)           the source pairs: MARS v1's most-allocated + a uniform draw
    para = self_refinement.paraphrase_pool(s, src)    their paraphrase pool: distinct pairs per source, speed
    self_refinement.paraphrase_examples(s, src, para["pool"])   a few paraphrased pairs beside their originals
    fid = self_refinement.label_fidelity(s, src)      the gold judge on every synthetic pair, by source |Δ|
    rs = self_refinement.resample(s)                  close pairs resampled from policy samples, per labeler
    ref = self_refinement.semantic_refinement(s)      v2's rewrites: acceptance, distances, gold fidelity
    self_refinement.fidelity_by_operator(s, fid["fidelity"], ref, rs)   label agreement with gold, per operator

The tables are the notebook's results; figures and the findings read them back from disk.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mars_lib import mars
from mars_lib.judges.task_judge import task_judge
from mars_lib.pipeline import context
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.pipeline.memory import release_memory
from mars_lib.pipeline.tables import load_table, stage_saver
from mars_lib.reward_models.features import Pairs
from mars_lib.synthetic import pools
from mars_lib.synthetic.builders import build_pool
from mars_lib.synthetic.refine import refinement_summary

OUT = "02_self_refinement"
GAP_BINS = ["|Δ| q1 (smallest)", "q2", "q3", "q4 (largest)"]


_save = stage_saver(OUT)        # save(cfg, df, name) -> df, under <results>/<OUT>/


@dataclass
class Setup:
    """What every stage of notebook 02 works on: the run's config and context, and the base pairs."""
    cfg: RunConfig
    ctx: Context
    base: Pairs


def setup(cfg: RunConfig) -> Setup:
    """Saves the config; the task, the cached encoder and the featurized base (train) pairs."""
    cfg.save(cfg.path(OUT, "config.json"))
    ctx = context.setup(cfg)
    return Setup(cfg, ctx, ctx.pairs("train"))


@dataclass
class Sources:
    """The source pairs whose synthetic pairs are examined, and the first RM's reward gap of each."""
    pairs: Pairs
    gap: np.ndarray


def select_sources(s: Setup) -> Sources:
    """`cfg.fidelity_sources` base pairs: half those MARS v1 allocates most to, half drawn uniformly
    from the rest. The reward gaps and budgets are notebook 01's reward_gaps.csv when it matches these
    base pairs, else recomputed from the first RM."""
    cfg, base = s.cfg, s.base
    gaps_path = cfg.path("01_margins", "reward_gaps.csv")
    alloc = load_table(gaps_path) if gaps_path.exists() else None
    if alloc is None or len(alloc) != len(base.df) or not alloc.pair_id.equals(base.df.pair_id):
        g = context.first_reward_model(cfg, base).reward_gap(base.phi_c, base.phi_r)
        alloc = pd.DataFrame({"pair_id": base.df.pair_id, "reward_gap": g})
        alloc["b_v1"] = mars.integer_budgets(mars.allocation_probs(g, cfg.tau_v1, "abs"),
                                             int(round(cfg.budget_ratio * len(g))), seed=42 + 1000)
    n_fid = min(cfg.fidelity_sources, len(alloc))
    top = alloc.sort_values("b_v1", ascending=False, kind="stable").head(n_fid // 2)
    rest = alloc.drop(top.index).sample(n=n_fid - len(top), random_state=0)
    sources = base.take(np.flatnonzero(base.df.pair_id.isin(pd.concat([top, rest]).pair_id)))
    source_gap = alloc.set_index("pair_id").loc[sources.df.pair_id, "reward_gap"].to_numpy()
    print(f"{len(sources.df)} source pairs: {len(top)} most-allocated by MARS v1 + {len(rest)} drawn uniformly")
    return Sources(sources, source_gap)


def paraphrase_pool(s: Setup, src: Sources) -> dict[str, pd.DataFrame]:
    """The paraphrase operator (`pools.paraphrase_op`) on the source pairs: the pool and pool_stats.csv
    (distinct synthetic pairs per source, texts paraphrased, seconds and pairs per second)."""
    op = pools.paraphrase_op(s.cfg)
    t0 = time.perf_counter()
    pool = build_pool(src.pairs.df, op)
    seconds = time.perf_counter() - t0
    per_source = pool.groupby("source_id").size().reindex(src.pairs.df.pair_id, fill_value=0)
    stats = pd.DataFrame([{"operator": op.name, "n_paraphrases": op.n, "max_pairs_per_source": op.n * op.n,
                           "sources": len(src.pairs.df), "synthetic_pairs": len(pool),
                           "mean_distinct_pairs_per_source": per_source.mean(),
                           "min_distinct_pairs_per_source": per_source.min(),
                           "sources_with_none": int((per_source == 0).sum()),
                           "texts_paraphrased": 3 * len(src.pairs.df) * op.n, "seconds": seconds,
                           "synthetic_pairs_per_s": len(pool) / seconds if seconds else float("nan")}])
    return {"pool": pool, "stats": _save(s.cfg, stats, "pool_stats.csv")}


def paraphrase_examples(s: Setup, src: Sources, pool: pd.DataFrame) -> pd.DataFrame:
    """examples.csv: two synthetic pairs of each of the first sources beside their originals; prints
    the first three chosen responses before and after."""
    orig = src.pairs.df[["pair_id", "prompt", "chosen", "rejected"]].rename(
        columns=lambda c: "orig_" + c if c != "pair_id" else "source_id")
    ex = pool.groupby("source_id").head(2).head(6).merge(orig, on="source_id")
    for r in ex.head(3).itertuples():
        print(f"ORIGINAL CHOSEN   : {r.orig_chosen[:240]!r}\nPARAPHRASED CHOSEN: {r.chosen[:240]!r}\n")
    return _save(s.cfg, ex[["source_id", "orig_prompt", "prompt", "orig_chosen", "chosen", "orig_rejected", "rejected"]],
                 "examples.csv")


def label_fidelity(s: Setup, src: Sources) -> dict[str, pd.DataFrame]:
    """The task's judge on every synthetic pair of the sources (`pools.label_fidelity`): fidelity.csv
    (one row per synthetic pair) and fidelity_by_gap.csv (per quartile of the source's |Δ|); prints
    the overall shares. The judge's models (~1.5 GB) are freed before it returns."""
    cfg, ctx = s.cfg, s.ctx
    judge = task_judge(cfg.task_path, encoder=ctx.encoder)   # the task's own judge (gold3 in task v3)
    fid = pools.label_fidelity(cfg, src.pairs, src.gap, judge, ctx.encoder, ctx.task.responses)
    del judge                                   # loaded again after the refinement's generation
    release_memory(collect=True)
    _save(cfg, fid, "fidelity.csv")
    gap_bin = pd.qcut(fid.source_reward_gap.abs(), 4, labels=GAP_BINS, duplicates="drop")
    by_gap = (fid.assign(gap_bin=gap_bin).groupby("gap_bin", observed=True)
              .agg(synthetic_pairs=("keeps_gold_order", "size"), keeps_gold_order=("keeps_gold_order", "mean"),
                   label_correct_syn=("label_correct_syn", "mean"), source_label_correct=("source_label_correct", "mean"),
                   cos_chosen=("cos_chosen", "mean"), cos_rejected=("cos_rejected", "mean"))
              .reset_index())
    by_gap["gap_bin"] = by_gap.gap_bin.astype(str)
    overall = fid[["keeps_gold_order", "label_correct_syn", "source_label_correct", "cos_chosen", "cos_rejected"]].mean()
    print(overall.round(3).to_string())
    return {"fidelity": fid, "by_gap": _save(cfg, by_gap, "fidelity_by_gap.csv")}


def resample(s: Setup) -> pd.DataFrame:
    """The generative form: close pairs among fresh policy samples, labelled by `cfg.labeler`, then by
    the gold annotator and by the first RM (`pools.resample_with`); resample_accounting.csv (one row per
    labeler: band, cost, agreement with gold). Prints three of `cfg.labeler`'s pairs."""
    rows = []
    for lab in dict.fromkeys([s.cfg.labeler, "gold", "rm"]):
        rs_pool, row = pools.resample_with(s.ctx, s.base, lab)
        rows.append(row)
        if lab == s.cfg.labeler:
            examples = rs_pool.df.drop_duplicates(["chosen", "rejected"]).head(3)
    rs = _save(s.cfg, pd.concat(rows, ignore_index=True), "resample_accounting.csv")
    for r in examples.itertuples():
        print(f"PROMPT: {r.prompt[:160]!r}\n  CHOSEN   (gold {r.gold_chosen:.2f}): {r.chosen[:200]!r}\n"
              f"  REJECTED (gold {r.gold_rejected:.2f}): {r.rejected[:200]!r}\n")
    return rs


@dataclass
class Refinement:
    """v2's semantic refinement of the base pairs: the summary, the pairs it attempted (final and
    original texts) and their gold fidelity."""
    summary: pd.DataFrame
    attempted: pd.DataFrame
    fidelity: pd.DataFrame


def _final_gold(ctx: Context, att: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The task's judge on the final texts of every attempted pair (originals are judged with the task).
    An unchanged side keeps its response's finished flag; a rewrite (cut at its last sentence) is judged
    by its ending. The judge loads after the rewriter's generation, not beside it, and is freed after."""
    def fin(side):
        flags = pools.finished_flags(ctx.task.responses, att.prompt, att[f"{side}_original"])
        return [f and new == old for f, new, old in zip(flags, att[side], att[f"{side}_original"])]
    judge = task_judge(ctx.cfg.task_path, encoder=ctx.encoder)
    gc = judge.score(att.prompt.tolist(), att.chosen.tolist(), fin("chosen"))
    gr = judge.score(att.prompt.tolist(), att.rejected.tolist(), fin("rejected"))
    del judge
    release_memory(collect=True)
    return gc, gr


def semantic_refinement(s: Setup) -> Refinement:
    """`pools.refinement` on the base pairs (cached by content: a rerun generates nothing):
    refinement_summary.csv (acceptance, distances, filters, rewriter, seconds), refinement_distances.csv
    (every base pair's distance before and after, and its label) and refinement_fidelity.csv (per
    attempted pair: gold before and after, whether the gold order survived, the rewrite's cosine to its
    original)."""
    cfg, ctx = s.cfg, s.ctx
    t0 = time.perf_counter()
    ref = pools.refinement(ctx, s.base.df)
    summary = refinement_summary(ref).assign(rewriter=ref.attrs.get("rewriter"), seconds=time.perf_counter() - t0)
    _save(cfg, summary, "refinement_summary.csv")
    _save(cfg, ref[["pair_id", "distance_original", "distance_final", "label_correct"]], "refinement_distances.csv")
    att = ref[ref.refinement_attempted].reset_index(drop=True)
    gc, gr = _final_gold(ctx, att)
    chosen_kept = att.rewrite_type_kept == "chosen"
    new_side = np.where(chosen_kept, att.chosen, att.rejected)
    old_side = np.where(chosen_kept, att.chosen_original, att.rejected_original)
    e_new, e_old = ctx.encoder.embed(list(new_side), progress=False), ctx.encoder.embed(list(old_side), progress=False)
    fid = pd.DataFrame({
        "pair_id": att.pair_id, "rewrite_type_kept": att.rewrite_type_kept, "distance_original": att.distance_original,
        "distance_final": att.distance_final, "gold_chosen_original": att.gold_chosen,
        "gold_rejected_original": att.gold_rejected, "gold_chosen_final": gc, "gold_rejected_final": gr,
        "cos_rewrite_to_original": (e_new * e_old).sum(1), "source_label_correct": att.label_correct})
    fid["keeps_gold_order"] = (np.sign(fid.gold_chosen_final - fid.gold_rejected_final)
                               == np.sign(fid.gold_chosen_original - fid.gold_rejected_original))
    fid["label_correct_refined"] = fid.gold_chosen_final >= fid.gold_rejected_final
    return Refinement(summary, att, _save(cfg, fid, "refinement_fidelity.csv"))


def fidelity_by_operator(s: Setup, fid: pd.DataFrame, ref: Refinement, rs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The refinement's fidelity per kind of rewrite kept (by_type), and fidelity_by_operator.csv: how
    often a synthetic pair's label agrees with the gold order, per operator (paraphrase, kept rewrites,
    resample per labeler). Prints three kept rewrites beside their originals."""
    rf = ref.fidelity
    kept = rf[rf.rewrite_type_kept != "none"]
    by_type = (rf.groupby("rewrite_type_kept")
               .agg(pairs=("pair_id", "size"), mean_gain=("distance_final", "mean"),
                    keeps_gold_order=("keeps_gold_order", "mean"), label_correct=("label_correct_refined", "mean"),
                    source_label_correct=("source_label_correct", "mean"),
                    cos_rewrite_to_original=("cos_rewrite_to_original", "mean")).reset_index())
    by_type["mean_gain"] -= rf.groupby("rewrite_type_kept").distance_original.mean().to_numpy()
    ops = pd.DataFrame([
        {"operator": "paraphrase (WordNet)", "pairs": len(fid), "label_agrees_with_gold": fid.label_correct_syn.mean(),
         "keeps_source_gold_order": fid.keeps_gold_order.mean(),
         "meaning_cos": np.r_[fid.cos_chosen, fid.cos_rejected].mean()},
        {"operator": "semantic refinement (kept rewrites)", "pairs": len(kept),
         "label_agrees_with_gold": kept.label_correct_refined.mean(), "keeps_source_gold_order": kept.keeps_gold_order.mean(),
         "meaning_cos": kept.cos_rewrite_to_original.mean()},
        *({"operator": f"resample ({r.labeler})", "pairs": r.pool_pairs, "label_agrees_with_gold": r.label_agrees_with_gold,
           "keeps_source_gold_order": np.nan, "meaning_cos": np.nan} for r in rs.itertuples())])
    att = ref.attempted
    for r in att[att.refinement_kept].head(3).itertuples():
        side = r.rewrite_type_kept
        print(f"PROMPT: {r.prompt[:160]!r}   (d {r.distance_original:.2f} -> {r.distance_final:.2f}, rewrote {side})\n"
              f"  CHOSEN  : {r.chosen_original[:200]!r}\n  REJECTED: {r.rejected_original[:200]!r}\n"
              f"  NEW {side.upper():8s}: {(r.chosen if side == 'chosen' else r.rejected)[:200]!r}\n")
    return {"by_type": by_type, "by_operator": _save(s.cfg, ops, "fidelity_by_operator.csv")}
