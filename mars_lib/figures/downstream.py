"""Notebook 05's figures (Best-of-N, its win rates, DPO) and notebook 01's gold-judges-vs-people figure,
drawn from their saved tables alone.

Registered in `mars_lib.figures.registry.FIGURES` under their names; `mars_lib.figures` draws them.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mars_lib import strategies
from mars_lib.figures import plotting
from mars_lib.figures.registry import _t, figure
from mars_lib.judges.agreement import FACETS
from mars_lib.judges.task_judge import label


@figure("05_best_of_n", "05_downstream/bon_curve.csv", "05_downstream/bon_reference.csv")
def fig_05_best_of_n(results: Path, cfg=None) -> Figure:
    curves = _t(results, "05_downstream/bon_curve.csv")
    ref = _t(results, "05_downstream/bon_reference.csv")          # row 1: the oracle (best gold of N)
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    for s in plotting.order(strategies.key_arms()):
        c = curves[curves.strategy == s].groupby("n").agg(gold=("gold", "mean"), sd=("gold", "std"),
                                                          kl=("kl_bon", "first"))
        if len(c):
            for a, x in ((ax[0], c.index), (ax[1], c.kl)):
                a.errorbar(x, c.gold, yerr=c.sd.fillna(0), marker="o", capsize=3, color=plotting.color(s),
                           label=plotting.label(s))
    for a in ax:
        a.axhline(ref.gold[1], ls=":", color="grey", label="oracle of N")
    ax[0].set_xlabel("n")
    ax[1].set_xlabel("KL_bon = log n − (n−1)/n")
    ax[0].set_ylabel("expected gold score of best-of-n")
    ax[0].legend(fontsize=8)
    ax[0].set_title("Best-of-n, MARS and the baselines it must beat (bars: s.d. over seeds, a spread)", fontsize=9)
    ax[1].set_title("The same against KL")
    return fig


@figure("05_win_rates", "05_downstream/win_rate_summary.csv", "05_downstream/bon_curve.csv")
def fig_05_win_rates(results: Path, cfg=None) -> Figure:
    """Each MARS RM's best-of-N pick against each baseline's: gold win rate with the claims table's 95 %
    interval (over prompts and seeds, `stats.two_stage_bootstrap`), one labelled row per comparison."""
    wr = _t(results, "05_downstream/win_rate_summary.csv")
    n_samples = int(_t(results, "05_downstream/bon_curve.csv").n.max())   # the curve runs n = 1..N
    plotting.style()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(wr) + 1.6))
    y = np.arange(len(wr))
    labels = [f"{plotting.label(a)} vs {plotting.label(b)}" for a, b in zip(wr.a, wr.b)]
    ax.barh(y, wr["mean"] - 0.5, left=0.5, height=0.6, color=[plotting.color(a) for a in wr.a], alpha=0.6)
    ax.errorbar(wr["mean"], y, xerr=np.nan_to_num(np.vstack([wr["mean"] - wr.lo, wr.hi - wr["mean"]])), fmt="o",
                color="k", ms=3, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.5, color="grey", ls="--")
    ax.set_xlabel("gold win rate of the MARS RM's pick (ties ½); 0.5 = no difference")
    ax.set_title(f"Best-of-{n_samples} win rates, 95 % interval over {int(wr.prompts.max())} prompts "
                 f"and {int(wr.n_seeds.max())} seeds", fontsize=9)
    return fig


@figure("05_dpo", "05_downstream/dpo_train_log.csv", "05_downstream/dpo_paired.csv",
        "05_downstream/dpo_policy_stats.csv")
def fig_05_dpo(results: Path, cfg=None) -> Figure:
    log = _t(results, "05_downstream/dpo_train_log.csv")
    paired = _t(results, "05_downstream/dpo_paired.csv")
    pstats = _t(results, "05_downstream/dpo_policy_stats.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 3, figsize=(19, 4.8), layout="constrained")
    for (s, seed), g in log.groupby(["strategy", "seed"]):
        ax[0].plot(g.step, g.loss.rolling(5, min_periods=1).mean(), color=plotting.color(s),
                   ls="-" if seed == log.seed.min() else "--", label=f"{plotting.label(s)} (seed {seed})")
    ax[0].axhline(np.log(2), color="grey", ls=":", label="log 2 (step 0)")
    ax[0].set_xlabel("DPO step")
    ax[0].set_ylabel("DPO loss (rolling mean of 5)")
    ax[0].legend(fontsize=6)
    ax[0].set_title("DPO training on each RM's labels")
    name = lambda x: "base policy" if x == "base" else plotting.label(x)      # noqa: E731
    comps = list(dict.fromkeys(zip(paired.a, paired.b)))
    judges = list(dict.fromkeys(paired.judge))
    for k, judge in enumerate(judges):
        g = paired[paired.judge == judge].set_index(["a", "b"]).loc[comps]
        y = np.arange(len(comps)) + (k - (len(judges) - 1) / 2) * 0.3
        ax[1].errorbar(g.effect, y, xerr=np.vstack([g.effect - g.lo, g.hi - g.effect]), fmt="o", capsize=3,
                       color=("#4C72B0", "#DD8452")[k % 2], label=f"judge {judge}")
    ax[1].set_yticks(np.arange(len(comps)), [f"{name(a)} − {name(b)}" for a, b in comps], fontsize=7)
    ax[1].invert_yaxis()
    ax[1].axvline(0, color="grey", ls="--")
    ax[1].set_xlabel("mean judge-score difference of the answers, 95 % interval")
    ax[1].set_title(f"DPO policies on {int(paired.n_prompts.max())} held-out prompts × {int(paired.n_seeds.max())} seed(s)")
    ax[1].legend(fontsize=7)
    first = pstats[pstats.judge == judges[0]]
    for r in first.itertuples():
        s = r.policy.split("_seed")[0]
        ax[2].errorbar(r.kl_estimate, r.mean_score, yerr=1.96 * r.se, marker="o", capsize=3,
                       color=plotting.color(s, "k"), label=plotting.label(s))
    handles, labels = ax[2].get_legend_handles_labels()
    keep = dict(zip(labels, handles))
    ax[2].legend(keep.values(), keep.keys(), fontsize=7)
    ax[2].set_xlabel("KL(π ‖ π_ref) estimate on the answers")
    ax[2].set_ylabel(f"mean {judges[0]} score of the answers (±1.96 SE)")
    ax[2].set_title("Judge score vs KL per policy")
    return fig


@figure("01_judge_human_agreement", "01_margins/judge_human_agreement.csv")
def fig_01_judge_human_agreement(results: Path, cfg=None) -> Figure:
    """Agreement of each gold judge (and each facet alone) with human labels, 95 % intervals over pairs."""
    plotting.style()
    ax = plot_agreement(_t(results, "01_margins/judge_human_agreement.csv"))
    fig = ax[0].figure
    fig.suptitle("Gold judges vs people: each facet, fixed weights, weights tuned on the other set", y=1.12)
    return fig


@figure("05_bon_iid", "05_downstream/bon_iid_summary.csv")
def fig_05_bon_iid(results: Path, cfg=None) -> Figure:
    """Best-of-n on i.i.d. draws: expected judge score vs n and vs KL_bon, per reward model, under the
    task's judge and under the independent judge, with intervals over prompts and seeds."""
    summ = _t(results, "05_downstream/bon_iid_summary.csv")
    judges = [j for j in ("gold", "gold1", "gold3") if j in set(summ.judge)]
    title = {j: f"{label(j)} ({j})" for j in judges}
    plotting.style()
    fig, ax = plt.subplots(len(judges), 2, figsize=(12, 3.8 * len(judges)), squeeze=False)
    for row, judge in enumerate(judges):
        g = summ[summ.judge == judge]
        for s in [*plotting.order(strategies.key_arms()), "oracle"]:
            c = g[g.strategy == s].sort_values("n")
            if c.empty:
                continue
            style = dict(color="grey", ls=":") if s == "oracle" else dict(color=plotting.color(s))
            for a, x in ((ax[row, 0], c.n), (ax[row, 1], c.kl_bon)):
                a.plot(x, c["mean"], marker="o", ms=3, label="oracle (best by the judge)" if s == "oracle" else plotting.label(s),
                       **style)
                a.fill_between(x, c.lo, c.hi, alpha=0.12, color=style["color"])
        ax[row, 0].set_ylabel(f"E[score of best-of-n]\n{title[judge]}")
        ax[row, 0].set_xlabel("n (i.i.d. draws of one policy)")
        ax[row, 1].set_xlabel("KL_bon = log n − (n−1)/n")
    ax[0, 0].legend(fontsize=7, ncol=2)
    n_p, n_s = int(summ.n_prompts.max()), int(summ.n_seeds.max())
    ax[0, 0].set_title(f"Best-of-n, {n_p} prompts (95 % intervals over prompts and {n_s} seeds); MARS and the "
                       "baselines it must beat", fontsize=9)
    ax[0, 1].set_title("The same against KL")
    return fig


def plot_agreement(df: pd.DataFrame, ax=None):
    """Agreement with 95 % intervals (over pairs), one panel per data set, judges side by side: each facet
    alone, all facets with the fixed weights, and all facets with weights tuned on the other data set."""
    dss = list(dict.fromkeys(df.dataset))
    if ax is None:
        _, ax = plt.subplots(1, len(dss), figsize=(6 * len(dss), 4.2), sharey=True, squeeze=False)
        ax = ax[0]
    df = df[(df.weights_tuned_on != df.dataset)].copy()          # single facets, fixed, out-of-sample tuned
    df["row"] = np.where(df.facet != "all", df.facet, np.where(df.weights_tuned_on == "fixed", "all, fixed weights",
                                                                "all, tuned on the other set"))
    labels = list(FACETS) + ["all, fixed weights", "all, tuned on the other set"]
    judges = list(dict.fromkeys(df.judge))
    for a, ds in zip(ax, dss):
        sub = df[df.dataset == ds]
        for j, name in enumerate(judges):
            s = sub[sub.judge == name].groupby("row").first().reindex(labels)
            y = np.arange(len(labels)) - (j - (len(judges) - 1) / 2) * 0.3
            a.errorbar(s.agreement, y, xerr=[s.agreement - s.lo, s.hi - s.agreement], fmt="o", capsize=3, label=name)
        a.axvline(0.5, color="grey", lw=0.8, ls="--")
        a.set_title(f"{ds} (n = {int(sub.n_pairs.iloc[0])} pairs)")
        a.set_xlabel("agreement with people (ties = 1/2), 95 % CI")
    ax[0].set_yticks(np.arange(len(labels)), labels)
    ax[0].invert_yaxis()
    h, lab = ax[0].get_legend_handles_labels()
    ax[0].figure.legend(h, lab, loc="upper center", ncol=len(judges), bbox_to_anchor=(0.5, 1.06), frameon=False)
    return ax
