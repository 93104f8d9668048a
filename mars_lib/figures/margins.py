"""Figures of notebooks 01 and 02: reward gaps, label noise and the allocation; paraphrase fidelity
and v2's semantic refinement. Each is drawn from saved tables alone (see `registry`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mars_lib.figures import plotting
from mars_lib.figures.registry import _t, config, figure


@figure("01_gold_gaps_label_noise", "01_margins/gold_gaps.csv")
def fig_01_gold_gaps_label_noise(results: Path, cfg=None) -> Figure:
    beta = config(results, "01_margins", cfg)["beta"]
    gg = _t(results, "01_margins/gold_gaps.csv")
    ceiling = gg[gg.split == "test"].label_correct.mean()          # = Task.noise_ceiling("test")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].hist(gg.gold_gap, bins=40, color="#888")
    ax[0].set_xlabel("|gold(a) − gold(b)|")
    ax[0].set_ylabel("pairs")
    ax[0].set_title("Gold-gap distribution")
    bins = pd.qcut(gg.gold_gap, 10, duplicates="drop")
    agree = gg.groupby(bins, observed=True).agg(gap=("gold_gap", "mean"), agree=("label_correct", "mean"))
    ax[1].plot(agree.gap, agree.agree, "o-", label="observed")
    x = np.linspace(0, gg.gold_gap.max(), 100)
    ax[1].plot(x, 1 / (1 + np.exp(-x / beta)), "--", color="grey", label=f"σ(gap/β), β={beta}")
    ax[1].set_xlabel("|gold gap|")
    ax[1].set_ylabel("P(noisy label = gold order)")
    ax[1].legend()
    ax[1].set_title(f"Label noise (ceiling on test: {ceiling:.3f})")
    return fig


@figure("01_reward_gaps_allocation", "01_margins/reward_gaps.csv")
def fig_01_reward_gaps_allocation(results: Path, cfg=None) -> Figure:
    c = config(results, "01_margins", cfg)
    alloc = _t(results, "01_margins/reward_gaps.csv")
    plotting.style()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(alloc.reward_gap, bins=50, color="#bbb", density=True, label="reward gap Δ (base pairs)")
    ax.set_xlabel("reward gap Δ = r(x, y⁺) − r(x, y⁻)")
    ax.set_ylabel("density")
    ax2 = plotting.twin(ax, "allocation relative to uniform (N·q)")
    order = alloc.sort_values("reward_gap")
    for v in ("v1", "v2"):
        ax2.plot(order.reward_gap, order[f"q_{v}"] * len(order), color=plotting.color(f"mars_{v}"),
                 label=f"{v}: N·q, τ={c[f'tau_{v}']}")
    ax2.axhline(1, color="grey", lw=0.8, ls=":")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax.set_title("Reward gaps of the first RM and the MARS allocation")
    return fig


@figure("01_human_track", "01_margins/human_track_reward_gaps.csv")
def fig_01_human_track(results: Path, cfg=None) -> Figure:
    n_tracks = len(config(results, "01_margins", cfg)["human_track"])
    gaps_all = _t(results, "01_margins/human_track_reward_gaps.csv")
    plotting.style()
    fig, axes = plt.subplots(n_tracks, 2, figsize=(11, 3.8 * n_tracks), squeeze=False)
    for ax, (track, h_gaps) in zip(axes, gaps_all.groupby("track", sort=False)):
        train = h_gaps[h_gaps.split == "train"]
        if "rating_gap" in h_gaps and h_gaps.rating_gap.notna().any():
            ax[0].hist(train.rating_gap, bins=range(6, 29), color="#888")
            ax[0].set_xlabel("human rating gap (chosen − rejected)")
            ax[0].set_title(f"{track}: rating gaps (train)")
        else:                         # no ratings: the length difference, a known bias of human preference labels
            ax[0].hist(train.length_gap, bins=40, color="#888")
            ax[0].set_xlabel("length of chosen − length of rejected (characters)")
            ax[0].set_title(f"{track}: length gaps (train)")
        ax[0].set_ylabel("pairs")
        for split, col in (("train", "#999"), ("test", plotting.color("none"))):
            ax[1].hist(h_gaps[h_gaps.split == split].reward_gap, bins=40, density=True, alpha=0.6, color=col,
                       label=split)
        ax[1].axvline(0, color="k", lw=0.8)
        acc = (h_gaps[h_gaps.split == "test"].reward_gap > 0).mean()
        ax[1].set_xlabel("reward gap Δ of the first RM")
        ax[1].set_title(f"First RM on {track}: test accuracy {acc:.3f}")
        ax[1].legend()
    return fig


@figure("02_paraphrase_fidelity", "02_self_refinement/fidelity.csv", "02_self_refinement/fidelity_by_gap.csv")
def fig_02_paraphrase_fidelity(results: Path, cfg=None) -> Figure:
    fid = _t(results, "02_self_refinement/fidelity.csv")
    by_gap = _t(results, "02_self_refinement/fidelity_by_gap.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].hist(np.r_[fid.cos_chosen, fid.cos_rejected], bins=40, color="#888")
    ax[0].set_xlabel("MiniLM cosine(paraphrase, original)")
    ax[0].set_ylabel("responses")
    ax[0].set_title("Meaning preservation")
    x = np.arange(len(by_gap))
    ax[1].bar(x - 0.2, by_gap.keeps_gold_order, 0.4, label="keeps source's gold order")
    ax[1].bar(x + 0.2, by_gap.label_correct_syn, 0.4, label="inherited label = gold")
    ax[1].plot(x, by_gap.source_label_correct, "ko--", label="source label = gold")
    ax[1].set_xticks(x, by_gap.gap_bin, rotation=15)
    ax[1].set_ylim(0, 1.05)
    ax[1].set_title("Label fidelity by the source's reward gap")
    ax[1].legend(fontsize=8, loc="lower right")
    return fig


@figure("02_semantic_refine", "02_self_refinement/refinement_distances.csv",
        "02_self_refinement/refinement_fidelity.csv", "02_self_refinement/refinement_summary.csv",
        "02_self_refinement/fidelity_by_operator.csv")
def fig_02_semantic_refine(results: Path, cfg=None) -> Figure:
    ref = _t(results, "02_self_refinement/refinement_distances.csv")     # every base pair
    ref_fid = _t(results, "02_self_refinement/refinement_fidelity.csv")  # the attempted pairs
    threshold = _t(results, "02_self_refinement/refinement_summary.csv").threshold.iloc[0]
    ops = _t(results, "02_self_refinement/fidelity_by_operator.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    bins = np.linspace(0, max(1.2, ref.distance_final.max()), 40)
    ax[0].hist(ref.distance_original, bins=bins, color="#bbb", label="all pairs, original")
    ax[0].hist(ref_fid.distance_original, bins=bins, color="#4C72B0", alpha=0.8, label="attempted, before")
    ax[0].hist(ref_fid.distance_final, bins=bins, histtype="step", lw=2, color="#C44E52", label="attempted, after")
    ax[0].axvline(threshold, color="k", ls="--", lw=1, label="threshold (mean d)")
    ax[0].set_xlabel("semantic distance 1 - cos(chosen, rejected)")
    ax[0].set_ylabel("pairs")
    ax[0].legend(fontsize=8)
    ax[0].set_title("Distances before and after refinement")
    x = np.arange(len(ops))
    ax[1].bar(x, ops.label_agrees_with_gold, color=["#888", "#4C72B0"] + ["#C9A227"] * (len(ops) - 2))
    ax[1].set_xticks(x, ops.operator, rotation=20, ha="right", fontsize=8)
    ax[1].set_ylim(0, 1.05)
    ax[1].axhline(ref.label_correct.mean(), color="k", ls="--", lw=1, label="base pairs' labels")
    ax[1].set_ylabel("synthetic label agrees with gold")
    ax[1].legend(fontsize=8)
    ax[1].set_title("Label fidelity by operator")
    return fig
