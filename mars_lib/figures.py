"""Every figure of the notebooks, drawn from the saved result tables alone (no model, no task data).

One function per figure, `fig_<name>(results, cfg=None) -> Figure`, reading only tables under
`results` (`<results>/<nb>/<table>`) and, for settings such as seeds or temperatures, the config the
notebook saved (`<results>/<nb>/config.json`; a notebook passes its own `cfg` instead). `FIGURES`
maps each figure name (`<results>/figures/<name>.png`) to its function, `TABLES` to the tables it
reads. Notebooks call `draw(name, cfg)`; `draw_all(results)` (`./run_all.sh --figures-only`)
redraws every figure whose tables exist. Best-of-N, win-rate and DPO figures: `figures_downstream`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plotting
from .figure_registry import FIGURES, TABLES, _t, config, figure  # noqa: F401  (re-exported)
from .results import load_table


# --------------------------------------------------------------------------------------------- 01


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


# --------------------------------------------------------------------------------------------- 02


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


# --------------------------------------------------------------------------------------------- 03

_TASK_FIELDS = ("task_dir", "beta", "label_seed", "n_prompts")


def task_noise_ceiling(results: Path, cfg=None) -> float:
    """Share of test pairs whose noisy label agrees with the gold order, from notebook 03's
    `noise_ceiling.csv`; for results written before notebook 03 saved it, from notebook 01's
    `task_summary.csv` when both notebooks ran on the same task (task_dir, beta, label_seed, n_prompts)."""
    own = Path(results) / "03_rm_training" / "noise_ceiling.csv"
    if own.exists():
        return float(load_table(own).set_index("split").noise_ceiling["test"])
    c1, c3 = config(results, "01_margins"), config(results, "03_rm_training", cfg)
    if any(c1.get(k) != c3.get(k) for k in _TASK_FIELDS):
        raise FileNotFoundError(f"{own} not found, and notebook 01 ran on another task: run notebook 03 again")
    return float(_t(results, "01_margins/task_summary.csv").set_index("split").noise_ceiling["test"])


@figure("03_accuracy_by_strategy", "03_rm_training/intervals.csv")
def fig_03_accuracy_by_strategy(results: Path, cfg=None) -> Figure:
    summary = _t(results, "03_rm_training/intervals.csv")
    ceiling = task_noise_ceiling(results, cfg)
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    plotting.bars_with_ci(summary, "accuracy", ax=ax[0], ylabel="pairwise accuracy (noisy labels)", ref=ceiling,
                          ref_label=f"noise ceiling {ceiling:.3f}")
    plotting.bars_with_ci(summary, "gold_accuracy", ax=ax[1], ylabel="accuracy vs gold order")
    return fig


@figure("03_rounds", "03_rm_training/history.csv")
def fig_03_rounds(results: Path, cfg=None) -> Figure:
    history = _t(results, "03_rm_training/history.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    plotting.lines_by_round(history, "accuracy", ax=ax[0], ylabel="test accuracy")
    plotting.lines_by_round(history, "alloc_top10_share", split="train", ax=ax[1],
                            ylabel="budget share of top-10% pairs")
    plotting.lines_by_round(history, "budget_on_mislabeled", split="train", ax=ax[2],
                            ylabel="budget share on mislabelled pairs")
    ax[1].set_title("Concentration of the allocation")
    ax[2].set_title("Budget spent on pairs with a wrong label")
    return fig


@figure("03_reward_gap_densities", "03_rm_training/per_pair_test.parquet")
def fig_03_reward_gap_densities(results: Path, cfg=None) -> Figure:
    gaps = _t(results, "03_rm_training/per_pair_test.parquet")
    plotting.style()
    fig, ax = plt.subplots(figsize=(7, 4))
    plotting.densities(gaps, "reward_gap", ax=ax, xlabel="reward gap on test pairs (all seeds)")
    ax.set_title("Reward-gap densities per strategy")
    return fig


@figure("03_operators", "03_rm_training/summary_by_operator.csv")
def fig_03_operators(results: Path, cfg=None) -> Figure:
    by_op = _t(results, "03_rm_training/summary_by_operator.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    for a, metric in zip(ax, ("accuracy", "gold_accuracy")):
        piv = by_op[by_op.metric == metric].pivot(index="strategy", columns="operator", values="mean")
        piv = piv.reindex(plotting.order(piv.index))
        piv.plot.bar(ax=a, rot=20, color=["#888", "#4C72B0", "#C9A227", "#55A868"][:piv.shape[1]])
        a.set_ylim(piv.min().min() - 0.02, piv.max().max() + 0.01)
        a.set_ylabel(f"test {metric} (mean over seeds)")
        a.set_xticklabels([plotting.label(s) for s in piv.index])
    ax[0].set_title("Same strategies, each synthetic-pair operator")
    return fig


@figure("03_human_track", "03_rm_training/intervals_human_track.csv")
def fig_03_human_track(results: Path, cfg=None) -> Figure:
    n_tracks = len(config(results, "03_rm_training", cfg)["human_track"])
    h_int = _t(results, "03_rm_training/intervals_human_track.csv")
    plotting.style()
    fig, ax = plt.subplots(1, n_tracks, figsize=(6 * n_tracks, 4), squeeze=False)
    for a, (t, g) in zip(ax[0], h_int.groupby("track", sort=False)):
        plotting.bars_with_ci(g, "accuracy", ax=a, ylabel=f"test accuracy ({t}, human labels)")
        a.set_title(f"{t}: {g.n_pairs.iloc[0]} test pairs, {g.n_clusters.iloc[0]} prompts, {g.n_seeds.iloc[0]} seeds")
    return fig


@figure("03_tau_sweep", "03_rm_training/tau_sweep.csv")
def fig_03_tau_sweep(results: Path, cfg=None) -> Figure:
    ts = _t(results, "03_rm_training/tau_sweep.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    for (t, v), g in ts.groupby(["track", "strategy"], sort=False):
        ls = "-" if t == "gold" else "--"
        for a, col in zip(ax, ("accuracy", "ess_over_n")):
            a.plot(g.tau, g[col], ls, marker="o", color=plotting.color(v), label=f"{t} {plotting.label(v)}")
    for a in ax:
        a.set_xscale("log")
        a.set_xlabel("τ")
        for tau in (0.1, 0.5):
            a.axvline(tau, color="#bbb", lw=0.8)
    ax[0].set_ylabel("test accuracy (mean over seeds)")
    ax[1].set_ylabel("ESS / N of the realised allocation (1 = uniform)")
    ax[1].axhline(0.5, color="#bbb", lw=0.8, ls=":")
    ax[0].legend(fontsize=8)
    ax[0].set_title("Accuracy vs τ (grey: the authors' 0.1 and 0.5)")
    ax[1].set_title("How far from uniform the allocation is")
    return fig


@figure("03_when_mars_helps", "03_rm_training/when_mars_helps.csv")
def fig_03_when_mars_helps(results: Path, cfg=None) -> Figure:
    hm = _t(results, "03_rm_training/when_mars_helps.csv")
    panels, betas = list(hm.groupby(["operator", "version"], sort=False)), sorted(hm.beta.unique())
    vmax, ncol = max(float(hm.effect.abs().max()), 0.01), hm.version.nunique()
    plotting.style()
    fig, axes = plt.subplots(-(-len(panels) // ncol), ncol, figsize=(5.4 * ncol, 0.9 * len(betas) * -(-len(panels) // ncol) + 1.6),
                             squeeze=False)
    for ax, ((op, v), g) in zip(axes.ravel(), panels):
        taus, ess = sorted(g.tau.unique()), g.groupby("tau").ess_over_n.mean()
        im = ax.imshow(g.pivot_table(index="beta", columns="tau", values="effect").reindex(index=betas, columns=taus).to_numpy(),
                       cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")          # colour centred at 0
        for r in g.itertuples():
            ax.text(taus.index(r.tau), betas.index(r.beta), f"{100 * r.effect:+.1f} pt\n{r.verdict}\nESS/N {r.ess_over_n:.2f}",
                    ha="center", va="center", fontsize=7, color="white" if abs(r.effect) > 0.6 * vmax else "black",
                    fontweight="bold" if r.verdict in ("held", "not held") else None)
        ax.set_xticks(range(len(taus)), [f"τ={t:g}\n(ESS/N {ess[t]:.2f})" for t in taus], fontsize=8)
        ax.set_yticks(range(len(betas)), [f"β={b:g}" for b in betas])
        ax.set_title(f"{plotting.label(v)}, {op}", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="MARS − uniform_stratified, gold accuracy (0 = no difference)")
    fig.suptitle("When does margin-awareness help? Paired effect over test prompts × seeds; verdict on the BH-adjusted p "
                 "over the map's cells", fontsize=10)
    return fig


@figure("03_ood", "03_rm_training/ood_eval.csv")
def fig_03_ood(results: Path, cfg=None) -> Figure:
    seed = config(results, "03_rm_training", cfg)["seeds"][0]
    ood_tab = _t(results, "03_rm_training/ood_eval.csv")
    first_seed = ood_tab[ood_tab.seed == seed]
    n_on = first_seed.trained_on.nunique()
    plotting.style()
    fig, axes = plt.subplots(n_on, 1, figsize=(12, 4.2 * n_on), squeeze=False)
    for a, (t, g) in zip(axes[:, 0], first_seed.groupby("trained_on", sort=False)):
        plot_ood(g.drop(columns="trained_on"), ax=a,
                 title=f"RMs trained on {t}, seed {seed}: strict accuracy, 95% Wilson intervals over pairs")
    fig.tight_layout()
    return fig


@figure("03_rewardbench", "03_rm_training/rewardbench.csv", "03_rm_training/rewardbench_summary.csv")
def fig_03_rewardbench(results: Path, cfg=None) -> Figure:
    rb = _t(results, "03_rm_training/rewardbench.csv")
    rb_sum = _t(results, "03_rm_training/rewardbench_summary.csv")
    piv = rb_sum.pivot(index="strategy", columns="section", values="mean")
    piv = piv.reindex(plotting.order(piv.index))
    plotting.style()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    piv.T.plot.bar(ax=ax, rot=0, color=[plotting.color(s) for s in piv.index])
    ax.legend([plotting.label(s) for s in piv.index], fontsize=8)
    ax.set_ylabel(f"RewardBench accuracy (mean over {rb.seed.nunique()} seed(s))")
    ax.set_title(f"RewardBench sections, RMs trained on {rb.trained_on.iloc[0]}")
    return fig


# --------------------------------------------------------------------------------------------- 04


@figure("04_curvature", "04_curvature/base_gaps.csv", "04_curvature/tau_sweep.csv")
def fig_04_curvature(results: Path, cfg=None) -> Figure:
    c = config(results, "04_curvature", cfg)
    gap = _t(results, "04_curvature/base_gaps.csv").reward_gap.to_numpy()
    sweep = _t(results, "04_curvature/tau_sweep.csv")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
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
        s = main[main.gap == g]
        ax[1].plot(s.tau, s.sigma_prime_ratio, "o-", color=col, label=f"E_q[σ′]/E_u[σ′] ({g})")
        ax[1].plot(s.tau, s.condition_ratio, "s--", color=col, alpha=0.6, label=f"κ_q/κ_u ({g})")
    ax[1].axhline(1, color="grey", lw=0.8)
    ax[1].set_xscale("symlog", linthresh=0.1)
    ax[1].set_xlabel("τ")
    ax[1].set_ylabel("ratio to uniform weights")
    ax[1].legend(fontsize=8)
    ax[1].set_title("Curvature gain vs τ")
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


# --------------------------------------------------------------------------------------------- all

from . import figures_claims, figures_downstream  # noqa: E402,F401  (register the claims and the 05 figures)
from .ood import plot_ood
from .curvature import sigma_prime
from .mars import allocation_probs


def draw(name: str, cfg):
    """Draws figure `name` from the tables under cfg's results_dir, saves it to results/figures/<name>.png
    and returns it (a notebook shows it inline)."""
    fig = FIGURES[name](cfg.path(), cfg)
    plotting.save(fig, cfg, name)
    return fig


def draw_all(results: Path, names=None) -> list[Path]:
    """Draws and saves every registered figure (or those in `names`) whose tables exist under `results`;
    prints the reason for each one skipped. Returns the paths written."""
    results, out = Path(results), []
    for name, fn in FIGURES.items():
        if names is not None and name not in names:
            continue
        missing = [t for t in TABLES[name] if not (results / t).exists()]
        if missing:
            print(f"skipped {name}: no {', '.join(missing)}")
            continue
        try:
            fig = fn(results)
        except FileNotFoundError as e:
            print(f"skipped {name}: {e}")
            continue
        out.append(plotting.save_png(fig, results / "figures" / f"{name}.png"))
        plt.close(fig)
    return out
