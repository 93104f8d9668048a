"""Figures of notebook 03: accuracy by strategy, rounds, reward-gap densities, operators, the human
tracks, the stronger backbone, the τ sweep, the when-MARS-helps map, OOD and RewardBench. Drawn from saved tables alone."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from mars_lib import strategies
from mars_lib.evaluation import verdicts
from mars_lib.evaluation.ood import SECTIONS, SUBSETS
from mars_lib.figures import plotting
from mars_lib.figures.registry import _t, config, figure
from mars_lib.pipeline.tables import load_table

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


@figure("03_accuracy_by_strategy", "03_rm_training/intervals.csv", "03_rm_training/paired.csv")
def fig_03_accuracy_by_strategy(results: Path, cfg=None) -> Figure:
    """Top: each arm's accuracy with its own interval. Bottom: what decides the claims — MARS minus each
    arm, paired over the same test prompts and seeds (intervals a few times narrower), with the ±δ band."""
    summary = _t(results, "03_rm_training/intervals.csv")
    paired = _t(results, "03_rm_training/paired.csv")
    ceiling = task_noise_ceiling(results, cfg)
    plotting.style()
    fig, ax = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained", height_ratios=(1, 1.2))
    plotting.bars_with_ci(summary, "accuracy", ax=ax[0, 0], ylabel="pairwise accuracy (noisy labels)", ref=ceiling,
                          ref_label=f"noise ceiling {ceiling:.3f}")
    plotting.bars_with_ci(summary, "gold_accuracy", ax=ax[0, 1], ylabel="accuracy vs gold order")
    for a, metric in zip(ax[1], ("accuracy", "gold_accuracy")):
        plotting.paired_forest(paired[paired.metric == metric], ax=a, delta=verdicts.smallest_effect(metric),
                               xlabel=f"{metric}: MARS − arm (95 % paired interval)")
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


@figure("03_backbones", "03_rm_training/backbones.csv")
def fig_03_backbones(results: Path, cfg=None) -> Figure:
    """Each arm's test accuracy per frozen backbone (95 % interval over prompts × seeds), beside the "longer
    response wins" baseline on the same pairs; the legend gives each backbone's reward-gap spread."""
    table = _t(results, "03_rm_training/backbones.csv")
    tracks = list(dict.fromkeys(table.track))
    plotting.style()
    fig, ax = plt.subplots(1, len(tracks), figsize=(7 * len(tracks), 4.2), squeeze=False)
    for a, t in zip(ax[0], tracks):
        g = table[table.track == t]
        arms, rms = plotting.order(set(g.strategy)), list(dict.fromkeys(g.rm))
        for k, (rm, r) in enumerate(g.groupby("rm", sort=False)):
            r = r.set_index("strategy").reindex(arms)
            x = [i + (k - (len(rms) - 1) / 2) * 0.25 for i in range(len(arms))]
            a.errorbar(x, r.accuracy, yerr=[r.accuracy - r.lo, r.hi - r.accuracy], fmt="o", capsize=3,
                       label=f"{rm} (gap sd {r.gap_sd.mean():.2f})")
        a.axhline(g.length_baseline.iloc[0], ls="--", color="#555555", label="longer response wins")
        a.set_xticks(range(len(arms)), [plotting.label(s) for s in arms], rotation=20, ha="right")
        a.set_ylabel(f"test accuracy ({t}, human labels)")
        a.set_title(f"{t}: {g.n_clusters.iloc[0]} test prompts, {g.n_seeds.iloc[0]} seeds")
        a.legend(fontsize=8)
    return fig


@figure("03_tau_sweep", "03_rm_training/tau_sweep.csv")
def fig_03_tau_sweep(results: Path, cfg=None) -> Figure:
    """Left: MARS at each τ minus uniform_stratified (paired test-accuracy difference, 95 % interval over
    test prompts and seeds, the ±δ band of "equivalent"); right: how far from uniform the allocation is."""
    ts = _t(results, "03_rm_training/tau_sweep.csv")
    if "effect" not in ts:
        raise ValueError("tau_sweep.csv has no paired differences (written by an older version): run notebook 03 again")
    plotting.style()
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    groups = list(ts.groupby(["track", "strategy"], sort=False))
    for k, ((t, v), g) in enumerate(groups):
        g = g.sort_values("tau")
        x = g.tau * 1.06 ** (k - (len(groups) - 1) / 2)          # a small offset so that the intervals do not overlap
        ls = "-" if t == "gold" else "--"
        ax[0].errorbar(x, g.effect, yerr=[g.effect - g.lo, g.hi - g.effect], fmt="o" + ls, ms=4, capsize=2,
                       color=plotting.color(v), label=f"{t}: {plotting.label(v)}")
        ax[1].plot(g.tau, g.ess_over_n, ls, marker="o", color=plotting.color(v), label=f"{t}: {plotting.label(v)}")
    delta = float(ts.delta.dropna().iloc[0]) if ts.delta.notna().any() else None
    base = plotting.label(ts.baseline.dropna().iloc[0]) if "baseline" in ts else "uniform"
    ax[0].axhline(0, color="k", lw=1, label=f"{base} (same budget and draw)")
    if delta:
        ax[0].axhspan(-delta, delta, color="#ddd", alpha=0.6, lw=0, label=f"±δ = {delta:g} (equivalent inside)")
    for a in ax:
        a.set_xscale("log")
        a.set_xlabel("τ (log scale)")
        for tau in (0.1, 0.5):
            a.axvline(tau, color="#bbb", lw=0.8, ls=":")
    ax[0].set_ylabel(f"test accuracy, MARS − {base}")
    ax[1].set_ylabel("ESS / N of the realised allocation (1 = uniform)")
    ax[1].axhline(0.5, color="#bbb", lw=0.8, ls=":")
    ax[0].legend(fontsize=7, loc="lower left")
    ax[0].set_title("MARS at each τ minus uniform (95 % interval; dotted: the authors' τ 0.1 and 0.5)", fontsize=9)
    ax[1].set_title("How far from uniform the allocation is", fontsize=9)
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


def _x_order(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(level, name) slots: LLMBar's subsets, then each section with several subsets, then one-subset sections."""
    present = set(table.subset[table.level == "subset"])
    slots = [("subset", s) for s in SUBSETS[:5] if s in present]
    slots += [("subset", s) for s in dict.fromkeys(table.subset[table.level == "subset"]) if s not in SUBSETS[:5]]
    multi = table[(table.level == "section") & (table.n_subsets > 1)].section
    for sec in dict.fromkeys(multi):
        i = max([k for k, (_, s) in enumerate(slots) if s in SECTIONS.get(sec, ())], default=len(slots) - 1)
        slots.insert(i + 1, ("section", sec))
    return slots


def plot_ood(table: pd.DataFrame, ax=None, title: str | None = None):
    """Accuracy per subset (and per multi-subset section) per model, with the table's intervals and
    the 0.5 chance line; drawn only from an `ood_accuracy` table (as saved). One row per model and slot."""
    need = {"model", "strategy", "seed", "level", "section", "subset", "n", "accuracy", "lo", "hi", "n_subsets"}
    if not need <= set(table.columns):
        raise ValueError(f"not an OOD accuracy table: missing {sorted(need - set(table.columns))}")
    if table.duplicated(["model", "level", "section", "subset"]).any():
        raise ValueError("several rows per model and subset (e.g. several `trained_on`): filter the table first")
    plotting.style()
    ax = ax or plt.subplots(figsize=(11, 4))[1]
    slots = _x_order(table)
    models = list(dict.fromkeys(table.model))
    per_strategy = table.drop_duplicates("model").strategy.value_counts()
    width = 0.8 / len(models)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, model in enumerate(models):
        g = table[table.model == model]
        strategy = g.strategy.iloc[0]
        if per_strategy[strategy] == 1:          # one model per strategy: the project's name and colour
            name, colour = plotting.label(strategy) if strategy in strategies.REGISTRY else model, plotting.color(strategy, cycle[j % len(cycle)])
        else:
            name, colour = model, cycle[j % len(cycle)]
        xs, ys, lo, hi = [], [], [], []
        for i, (level, name) in enumerate(slots):
            r = g[(g.level == level) & ((g.subset == name) if level == "subset" else (g.section == name))]
            if len(r):
                xs.append(i - 0.4 + (j + 0.5) * width)
                ys.append(r.accuracy.iloc[0])
                lo.append(r.accuracy.iloc[0] - r.lo.iloc[0])
                hi.append(r.hi.iloc[0] - r.accuracy.iloc[0])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=4, capsize=2, lw=1, color=colour, label=name)
    ax.axhline(0.5, ls="--", color="grey", lw=1, label="chance (0.5)")
    ns = {(lv, nm): int(table[(table.level == lv) & ((table.subset == nm) if lv == "subset" else (table.section == nm))]
                        .n.iloc[0]) for lv, nm in slots}
    ax.set_xticks(range(len(slots)))
    ax.set_xticklabels([f"{nm if lv == 'subset' else nm + ' (all)'}\nn={ns[(lv, nm)]}" for lv, nm in slots], fontsize=8)
    ax.set_xlim(-0.5, len(slots) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("strict pairwise accuracy")
    ax.set_title(title or "Out-of-distribution accuracy (LLMBar, MT-Bench human): 95% Wilson intervals over pairs",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return ax
