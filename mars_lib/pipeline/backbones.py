"""Notebook 03's stronger-backbone regime: the linear head on another frozen encoder's features
(`cfg.head_backbones`, e.g. "mpnet" = all-mpnet-base-v2), trained on every human track with the same
arms, seeds, budget, schedule and synthetic-pool texts as the run's own encoder (`cfg.encoder`,
MiniLM), and every RM set against the "longer response wins" baseline on the same test pairs.

Why (docs/method.md §13): MARS allocates from the RM's reward gaps. On frozen MiniLM they are flat, so
q is near uniform at the authors' τ and "MARS − uniform" is null by construction; a stronger backbone
gives gaps with spread. Not on the gold task: its judge (gold3) embeds with all-mpnet-base-v2, so a
head on those features would partly read the judge.

    pp, hist = train_backbones(s, hum)            per-pair test outcomes and histories, rm "head:<name>"
    backbone_table(per_pair, tests, hist)         accuracy, length baseline, RM − length, gap spread, ESS/N
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mars_lib.evaluation import stats
from mars_lib.evaluation.claims import per_pair_outcomes, realised_ess
from mars_lib.pipeline.arms import train_strategies
from mars_lib.pipeline.context import encoder_for
from mars_lib.pipeline.memory import release_memory
from mars_lib.reward_models.features import featurize

LENGTH = "length"       # the pseudo-arm "the longer response wins" in the per-pair table (same value every seed)


def train_backbones(s, hum) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy × seed on each human track of `s` (`rm_training.Setup`), with each encoder of
    `cfg.head_backbones`: (per-pair test outcomes, tidy history), both with rm = "head:<name>". The
    pool is the MiniLM arms' pool (`hum.pools`, `rm_training.HumanTracks`) re-encoded: the same texts,
    labels and sources, so only the features differ."""
    cfg, pp, hist = s.cfg, [], []
    for name in cfg.head_backbones:
        enc, rm = encoder_for(cfg.replace(encoder=name)), f"head:{name}"
        for t, (base, evals) in s.tracks.items():
            b = featurize(base.df, enc, desc=f"features ({name}): {t} train")
            ev = {"test": featurize(evals["test"].df, enc, desc=f"features ({name}): {t} test")}   # no val: cost
            pool = featurize(hum.pools[t].df, enc, desc=f"features ({name}): {t} pool")
            runs = train_strategies(cfg, b, pool, ev, enc, desc=f"{t} ({name}): strategies × seeds")
            hist.append(pd.concat([r.history for r in runs.values()], ignore_index=True).assign(track=t, rm=rm))
            pp.append(per_pair_outcomes(runs, ev["test"], t, rm))
        del enc
        release_memory()
    if not pp:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(pp, ignore_index=True), pd.concat(hist, ignore_index=True)


def length_outcomes(per_pair: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The length baseline as an arm of `per_pair` (one track × rm): for every seed present, 1 where the
    chosen response is longer (in characters), 0.5 on a tie, 0 where shorter."""
    n_c, n_r = test.chosen.str.len().to_numpy(), test.rejected.str.len().to_numpy()
    won = pd.Series(np.where(n_c > n_r, 1.0, np.where(n_c == n_r, 0.5, 0.0)), index=test.pair_id.to_numpy())
    one = per_pair.drop_duplicates(["seed", "pair_id"])[["track", "rm", "seed", "pair_id", "cluster"]]
    return one.assign(strategy=LENGTH, correct=won.reindex(one.pair_id).to_numpy())


def backbone_table(per_pair: pd.DataFrame, tests: dict[str, pd.DataFrame], histories: pd.DataFrame | None = None,
                   n_boot: int = 1000) -> pd.DataFrame:
    """One row per (rm, track, strategy) of `per_pair` (every backbone's rows, MiniLM's included):
    accuracy with its two-stage interval (test prompts × seeds), the length baseline's accuracy on the
    same pairs, RM − length paired over prompts and seeds (effect, lo, hi), the reward gaps' spread
    (sd over test pairs, mean over seeds: the scale τ multiplies) and the realised ESS/N of the arm's
    budgets (`claims.realised_ess`; NaN for arms without per-source budgets). `tests`: track -> test pairs."""
    ess, rows = realised_ess(histories), []
    for (rm, track), g in per_pair.groupby(["rm", "track"], sort=False):
        v = pd.concat([g, length_outcomes(g, tests[track])], ignore_index=True).rename(columns={"correct": "value"})
        acc = stats.two_stage_bootstrap(v, n_boot=n_boot).set_index("strategy")
        for s, sg in g.groupby("strategy", sort=False):
            d = stats.paired_difference(v, s, LENGTH, n_boot=n_boot)
            rows.append({"rm": rm, "track": track, "strategy": s, "accuracy": acc.loc[s, "mean"],
                         "lo": acc.loc[s, "lo"], "hi": acc.loc[s, "hi"], "length_baseline": acc.loc[LENGTH, "mean"],
                         "minus_length": d["effect"], "minus_length_lo": d["lo"], "minus_length_hi": d["hi"],
                         "gap_sd": sg.groupby("seed").reward_gap.std().mean(),
                         "ess_over_n": ess.get((track, rm, s), np.nan), "n_seeds": d["n_seeds"],
                         "n_clusters": d["n_clusters"]})
    return pd.DataFrame(rows)
