"""Figures of notebook 04: the Bradley-Terry curvature of the base and augmented training sets, by τ
and by round. Drawn from saved tables alone."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mars_lib.evaluation.curvature import sigma_prime
from mars_lib.figures import plotting
from mars_lib.figures.registry import _t, config, figure
from mars_lib.mars import allocation_probs


@figure("04_curvature", "04_curvature/base_gaps.csv", "04_curvature/tau_sweep.csv")
def fig_04_curvature(results: Path, cfg=None) -> Figure:
    c = config(results, "04_curvature", cfg)
    gap = _t(results, "04_curvature/base_gaps.csv").reward_gap.to_numpy()
    sweep = _t(results, "04_curvature/tau_sweep.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 3, figsize=(17, 4.4), layout="constrained")
    order = np.argsort(gap)
    ax[0].plot(gap[order], sigma_prime(gap[order]), color="k", label="σ′(Δ)")
    ax[0].set_xlabel("reward gap Δ (base pairs, no-aug head)")
    ax[0].set_ylabel("σ′(Δ)")
    a2 = plotting.twin(ax[0], "allocation relative to uniform (N·q)")
    for v, kind in (("v1", "abs"), ("v2", "signed")):
        a2.plot(gap[order], allocation_probs(gap, c[f"tau_{v}"], kind)[order] * len(gap),
                color=plotting.color(f"mars_{v}"), label=f"{v} N·q")
    a2.legend(loc="upper right", fontsize=8)
    ax[0].legend(loc="upper left", fontsize=8)
    ax[0].set_title("Curvature factor σ′ and the allocation")
    main = sweep[sweep.gap_scale == 1.0]
    for g, col in (("abs", plotting.color("mars_v1")), ("signed", plotting.color("mars_v2"))):
        s = main[main.gap == g].sort_values("tau")
        ax[1].plot(s.tau, s.sigma_prime_ratio, "o-", color=col, label=f"E_q[σ′] / E_u[σ′] ({g} gap)")
        if "coverage_vs_uniform" in s:
            ax[1].plot(s.tau, s.coverage_vs_uniform, "^:", color=col, label=f"coverage factor ({g} gap)")
        ax[2].plot(s.tau, s.condition_ratio, "s--", color=col, label=f"κ_q / κ_u ({g} gap)")
    for a in ax[1:]:
        a.axhline(1, color="grey", lw=0.8)
        a.set_xscale("symlog", linthresh=0.1)
        a.set_xlim(left=0)
        a.set_xlabel("τ (linear below 0.1, log above)")
        a.legend(fontsize=7)
    ax[1].set_ylabel("ratio to uniform weights")
    ax[1].set_title("Curvature gain and coverage factor vs τ\n(coverage: largest c with H_q ⪰ c·H_u; "
                    "the theorem needs c ≥ 1)", fontsize=9)
    ax[2].set_yscale("log")
    ax[2].set_ylabel("condition number, ratio to uniform (log)")
    ax[2].set_title("Conditioning vs τ (log scale: it grows by orders of magnitude)", fontsize=9)
    return fig


@figure("04_curvature_per_round", "03_rm_training/history.csv", "04_curvature/per_round.csv")
def fig_04_curvature_per_round(results: Path, cfg=None) -> Figure:
    """Drawn from notebook 03's history (as notebook 04 does); notebook 04's per_round.csv is its summary."""
    hist = _t(results, "03_rm_training/history.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    plotting.lines_by_round(hist, "mean_sigma_prime_ratio_to_base", split="curvature", ax=ax[0],
                            ylabel="E[σ′]: training set / base set")
    plotting.lines_by_round(hist, "condition_span_ratio_to_base", split="curvature", ax=ax[1],
                            ylabel="condition number: training set / base set")
    return fig
