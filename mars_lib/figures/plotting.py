"""One style and one colour per method for the whole project; figures drawn from saved tables.

Each arm's colour and label come from its entry in `mars_lib.strategies` (the authors' colours [C1]
for theirs), so a newly registered arm is drawn like the others.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker  # noqa: F401  (MaxNLocator in lines_by_round)
import numpy as np
import pandas as pd

from mars_lib import strategies
from mars_lib.pipeline.io import atomic_write_bytes


def color(name: str, default: str = "#999999") -> str:
    """The arm's colour (mars_lib.strategies), the same in every figure; `default` for other series."""
    return strategies.REGISTRY[name].color if name in strategies.REGISTRY else default


def label(name: str) -> str:
    """The arm's label (mars_lib.strategies); other names as they are."""
    return strategies.REGISTRY[name].label if name in strategies.REGISTRY else name


def order(present=None) -> list[str]:
    """The registered arms in registry order, restricted to `present` when given (others follow, sorted)."""
    if present is None:
        return list(strategies.names())
    present = set(present)
    return [s for s in strategies.names() if s in present] + sorted(str(s) for s in present - set(strategies.names()))


def style() -> None:
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
                         "font.size": 10, "figure.figsize": (6.4, 4.0)})


def save(fig, cfg, name: str) -> Path:
    """Save to results/figures/<name>.png (atomic) and return the path."""
    return save_png(fig, cfg.path("figures", f"{name}.png"))


def save_png(fig, path) -> Path:
    """Save a figure as PNG to `path` (atomic; tight bounding box) and return the path."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def twin(ax, ylabel: str):
    """A right-hand y axis that shows its spine, ticks and label on the right (style() hides it)."""
    a2 = ax.twinx()
    a2.grid(False)
    a2.spines["right"].set_visible(True)
    a2.yaxis.set_label_position("right")
    a2.yaxis.tick_right()
    a2.set_ylabel(ylabel)
    return a2


def bars_with_ci(summary: pd.DataFrame, metric: str, ax=None, ylabel: str | None = None, ref: float | None = None,
                 ref_label: str = ""):
    """summary: rows strategy, metric, mean, lo, hi, n. One bar per strategy with its CI."""
    style()
    ax = ax or plt.subplots()[1]
    s = summary[summary.metric == metric].set_index("strategy")
    names = order(s.index)
    m = s.loc[names, "mean"].to_numpy()
    err = np.vstack([m - s.loc[names, "lo"].to_numpy(), s.loc[names, "hi"].to_numpy() - m])
    ax.bar([label(k) for k in names], m, yerr=np.nan_to_num(err), capsize=4, color=[color(k) for k in names])
    lo = np.nanmin(s.loc[names, "lo"].to_numpy()) if np.isfinite(s.loc[names, "lo"]).any() else m.min()
    hi = np.nanmax(s.loc[names, "hi"].to_numpy()) if np.isfinite(s.loc[names, "hi"]).any() else m.max()
    if ref is not None:
        ax.axhline(ref, ls="--", color="grey", lw=1, label=ref_label)
        hi = max(hi, ref)
        ax.legend(loc="lower right")
    pad = 0.15 * (hi - lo + 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel or metric)
    if "n_clusters" in s:        # mars_lib.evaluation.stats intervals: test prompts x seeds
        how = f"95% interval over {int(s.n_clusters.max())} test prompts x {int(s.n_seeds.max())} seeds"
    else:
        how = f"over {int(s['n'].max())} seeds (no interval)"
    ax.set_title(f"{ylabel or metric}\nmean, {how}", fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return ax


def lines_by_round(history: pd.DataFrame, metric: str, split: str = "test", ax=None, ylabel: str | None = None):
    """Mean over seeds per round, shaded ± 1 s.d."""
    style()
    ax = ax or plt.subplots()[1]
    h = history[(history.metric == metric) & (history.split == split)]
    for k in order():
        g = h[h.strategy == k].groupby("round")["value"]
        if not len(g):
            continue
        m, sd = g.mean(), g.std().fillna(0)
        ax.plot(m.index, m.values, marker="o", color=color(k), label=label(k))
        ax.fill_between(m.index, m - sd, m + sd, color=color(k), alpha=0.15)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=8)
    return ax


def densities(values: pd.DataFrame, col: str, by: str = "strategy", ax=None, bins: int = 60, xlabel: str | None = None):
    """Per-group histogram densities over the 1st-99th percentile range (as the authors plot)."""
    style()
    ax = ax or plt.subplots()[1]
    lo, hi = np.percentile(values[col], [1, 99])
    for k in order():
        v = values.loc[values[by] == k, col]
        if len(v):
            ax.hist(v.clip(lo, hi), bins=bins, range=(lo, hi), density=True, histtype="step", lw=1.6,
                    color=color(k), label=label(k))
    ax.set_xlabel(xlabel or col)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax


def paired_forest(paired: pd.DataFrame, ax=None, delta: float | None = None, xlabel: str = "difference"):
    """paired: rows strategy (the MARS arm), vs, effect, lo, hi (claims.paired_table). One row per
    comparison, coloured by the MARS arm, with the ±delta band inside which a difference is "equivalent"."""
    style()
    ax = ax or plt.subplots()[1]
    rows = paired.reset_index(drop=True)
    y = np.arange(len(rows))
    for k, r in rows.iterrows():
        ax.errorbar(r.effect, k, xerr=[[r.effect - r.lo], [r.hi - r.effect]], fmt="o", ms=4, capsize=3,
                    color=color(r.strategy))
    ax.set_yticks(y, [f"{label(a)} − {label(b)}" for a, b in zip(rows.strategy, rows.vs)], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=1)
    if delta is not None and np.isfinite(delta):
        ax.axvspan(-delta, delta, color="#ddd", alpha=0.6, lw=0, label=f"±δ = {delta:g}: equivalent inside")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(xlabel)
    if "n_clusters" in rows:
        ax.set_title(f"paired over {int(rows.n_clusters.max())} test prompts × {int(rows.n_seeds.max())} seeds",
                     fontsize=9)
    return ax
