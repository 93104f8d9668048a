"""Notebook 01's stages: each computes one part of the task's picture, saves its tables under
`<results>/01_margins/` and returns them, so every computation cell of the notebook is one call.

    ctx = margins.setup(cfg)              the config saved, the task and the cached encoder
    margins.task_summary(ctx)             prompts, pairs and the noise ceiling per split
    margins.example_text(ctx)             one prompt's responses, best gold first (text to print)
    margins.judge_sanity(ctx)             the task's judge on hand-written responses to one prompt
    margins.judge_human_agreement(ctx)    both gold judges against human labels (MT-Bench, chitchat)
    margins.gold_gaps(ctx)                every pair's gold gap and whether its noisy label is right
    first = margins.first_rm(ctx)         the no-augmentation RM on the base pairs and its metrics
    margins.allocation(ctx, first)        its reward gaps, the MARS v1 / v2 budgets and their concentration
    margins.human_tracks(ctx)             each real-human track: sizes, an example, the first RM's gaps

The tables are the notebook's results; figures and the findings read them back from disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mars_lib import mars
from mars_lib.evaluation.metrics import rm_metrics
from mars_lib.judges import agreement
from mars_lib.judges.gold1 import sanity_table
from mars_lib.judges.task_judge import task_judge
from mars_lib.pipeline import arms, context
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.pipeline.memory import release_memory
from mars_lib.pipeline.tables import stage_saver
from mars_lib.reward_models.features import Pairs
from mars_lib.reward_models.head import HeadRewardModel

OUT = "01_margins"
SPLITS = ("train", "val", "test")


_save = stage_saver(OUT)        # save(cfg, df, name) -> df, under <results>/<OUT>/


def setup(cfg: RunConfig) -> Context:
    """Saves the config; the task (labels drawn with cfg.beta) and the cached feature encoder."""
    cfg.save(cfg.path(OUT, "config.json"))
    return context.setup(cfg)


def task_summary(ctx: Context) -> pd.DataFrame:
    """task_summary.csv: prompts, pairs, responses and the noise ceiling (share of noisy labels that
    agree with the gold order) per split, with the β the labels were drawn at."""
    task = ctx.task
    summary = (task.pairs.groupby("split")
               .agg(prompts=("prompt_id", "nunique"), pairs=("pair_id", "size"), noise_ceiling=("label_correct", "mean"))
               .reindex(list(SPLITS)).reset_index())
    summary["responses"] = summary.prompts * task.responses.groupby("prompt_id").size().iloc[0]
    summary["beta"] = ctx.cfg.beta
    return _save(ctx.cfg, summary, "task_summary.csv")


def example_text(ctx: Context) -> str:
    """The first prompt of the task and its responses, highest gold score first (each cut at 300 characters)."""
    responses = ctx.task.responses
    example = responses[responses.prompt_id == responses.prompt_id.iloc[0]]
    lines = [f"PROMPT: {example.prompt.iloc[0]} \n"]
    lines += [f"[{r.arm:8s} gold={r.gold:.2f}] {r.response[:300]!r}\n"
              for r in example.sort_values("gold", ascending=False).itertuples()]
    return "\n".join(lines)


def judge_sanity(ctx: Context) -> pd.DataFrame:
    """judge_sanity.csv: the task's own judge (gold3 in task v3) on the hand-written sanity cases; the
    judge's models (~1.3 GB) are freed before it returns."""
    judge = task_judge(ctx.cfg.task_path, encoder=ctx.encoder)   # gold3 loads its own models
    sanity = sanity_table(judge)
    del judge                                   # nothing after this needs the judge's models
    release_memory(collect=True)
    return _save(ctx.cfg, sanity, "judge_sanity.csv")


def judge_human_agreement(ctx: Context) -> pd.DataFrame:
    """judge_human_agreement.csv (`judges.agreement.compute`): the old and the new gold judge against
    human labels. `cfg.human_eval_max_pairs` caps both data sets (smoke: 60 pairs each); None: all 195
    MT-Bench pairs and 400 chitchat pairs."""
    cfg = ctx.cfg
    n_human = cfg.human_eval_max_pairs
    agree = agreement.compute(judges=("old", "new"), chitchat_pairs=n_human or 400, mtbench_pairs=n_human,
                              n_boot=cfg.n_boot)
    return _save(cfg, agree, "judge_human_agreement.csv",
                 inputs={"data/llmbar/MT-Bench_human.json": "sha256 in data/llmbar/README.md",
                         "chitchat_pairs": n_human or 400})


def gold_gaps(ctx: Context) -> pd.DataFrame:
    """gold_gaps.csv: every pair's |gold(chosen) − gold(rejected)| and whether its noisy label is right."""
    pairs = ctx.task.pairs
    gg = pairs.assign(gold_gap=(pairs.gold_chosen - pairs.gold_rejected).abs())[
        ["pair_id", "split", "gold_gap", "label_correct"]]
    return _save(ctx.cfg, gg, "gold_gaps.csv")


@dataclass
class FirstRM:
    """The no-augmentation reward model on the base (train-split) pairs, and its metrics."""
    base: Pairs
    rm: HeadRewardModel
    metrics: pd.DataFrame


def first_rm(ctx: Context) -> FirstRM:
    """The first RM (`context.first_reward_model`: rounds × epochs_per_round epochs on the base pairs,
    like notebook 03's no-augmentation baseline); first_rm_metrics.csv on the train and test pairs."""
    base, test = ctx.pairs("train"), ctx.pairs("test")
    rm = context.first_reward_model(ctx.cfg, base)
    first = pd.DataFrame([{"split": name, **rm_metrics(*rm.pair_scores(p), p.df.gold_chosen, p.df.gold_rejected)}
                          for name, p in [("train", base), ("test", test)]])
    return FirstRM(base, rm, _save(ctx.cfg, first, "first_rm_metrics.csv"))


def allocation(ctx: Context, first: FirstRM) -> dict[str, pd.DataFrame]:
    """The allocation MARS would make from the first RM's reward gaps: reward_gaps.csv (per base pair:
    the gap, q_v1 = softmax(−τ₁|Δ|), q_v2 = softmax(−τ₂Δ) and their largest-remainder budgets summing to
    B = budget_ratio · N) and allocation_concentration.csv (per version: concentration and the share of
    the budget on mislabelled pairs)."""
    cfg, base = ctx.cfg, first.base
    gaps = first.rm.reward_gap(base.phi_c, base.phi_r)
    B = int(round(cfg.budget_ratio * len(gaps)))
    alloc = pd.DataFrame({"pair_id": base.df.pair_id, "reward_gap": gaps, "label_correct": base.df.label_correct,
                          "q_v1": mars.allocation_probs(gaps, cfg.tau_v1, "abs"),
                          "q_v2": mars.allocation_probs(gaps, cfg.tau_v2, "signed")})
    alloc["b_v1"] = mars.integer_budgets(alloc.q_v1.to_numpy(), B, seed=42 + 1000)
    alloc["b_v2"] = mars.integer_budgets(alloc.q_v2.to_numpy(), B, seed=42 + 1000)
    conc = pd.DataFrame([{"version": v, "budget": B, **mars.concentration(alloc[f"b_{v}"]),
                          "budget_on_mislabeled": alloc.loc[~alloc.label_correct, f"b_{v}"].sum() / B,
                          "mislabeled_share_of_pairs": (~alloc.label_correct).mean()} for v in ("v1", "v2")])
    return {"gaps": _save(cfg, alloc, "reward_gaps.csv"),
            "concentration": _save(cfg, conc, "allocation_concentration.csv")}


def _track(ctx: Context, track: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One human track: its size per split, the first RM's reward gaps (with the length and, when the
    track has ratings, the rating difference of each pair) and its first train pair as text."""
    h_base, h_evals = arms.human_track(ctx, track)
    h_all = pd.concat([h_base.df] + [p.df for p in h_evals.values()])
    rated = "rating_chosen" in h_all          # chitchat carries human ratings; HH / UltraFeedback / PKU only labels
    agg = {"prompts": ("prompt", "nunique"), "pairs": ("pair_id", "size")}
    if rated:
        h_all = h_all.assign(rating_gap=h_all.rating_chosen - h_all.rating_rejected)
        agg["median_rating_gap"] = ("rating_gap", "median")
    summary = (h_all.groupby("split").agg(**agg).reindex([s for s in SPLITS if s in set(h_all.split)])
               .reset_index().assign(track=track))
    h_rm = context.first_reward_model(ctx.cfg, h_base)
    gaps = pd.concat([pd.DataFrame({"track": track, "split": name, "reward_gap": h_rm.pair_gap(p),
                                    "length_gap": p.df.chosen.str.len() - p.df.rejected.str.len(),
                                    **({"rating_gap": p.df.rating_chosen - p.df.rating_rejected} if rated else {})})
                      for name, p in [("train", h_base), ("test", h_evals["test"])]])
    ex = h_base.df.iloc[0]
    rating = (lambda side: f" (rating {ex[f'rating_{side}']})") if rated else (lambda side: "")
    text = (f"[{track}] PROMPT: {ex.prompt[-600:]}\n\nCHOSEN{rating('chosen')}:\n{ex.chosen[:400]}\n\n"
            f"REJECTED{rating('rejected')}:\n{ex.rejected[:400]}\n")
    return summary, gaps, text


def human_tracks(ctx: Context) -> pd.DataFrame:
    """Each track of `cfg.human_track`: prints its first train pair; saves human_track_summary.csv
    (prompts and pairs per split) and human_track_reward_gaps.csv (the first RM trained on the track:
    its reward gaps on train and test pairs). Returns the summary; empty when no track runs."""
    summaries, gap_tables = [], []
    for track in ctx.cfg.human_track:
        summary, gaps, text = _track(ctx, track)
        summaries.append(summary)
        gap_tables.append(gaps)
        print(text)
    if not summaries:
        return pd.DataFrame()
    _save(ctx.cfg, pd.concat(gap_tables, ignore_index=True), "human_track_reward_gaps.csv")
    return _save(ctx.cfg, pd.concat(summaries, ignore_index=True), "human_track_summary.csv")
