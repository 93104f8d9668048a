"""The claims figure: a forest plot of the paired differences that decide the claims (notebook 03).

Drawn only from `results/claims.csv`: each MARS arm minus each baseline, per track and reward-model
regime, with its 95 % interval, the ±δ band of the smallest effect of interest and the verdict.
Registered with `registry.figure`; `mars_lib.figures` imports this module so it is drawn
with the others (`./run_all.sh --figures-only`).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mars_lib.figures import plotting
from mars_lib.figures.registry import _t, figure

VERDICT_STYLE = {"held": ("#1a9850", "o"), "not held": ("#d73027", "o"), "equivalent": ("#4575b4", "D"),
                 "inconclusive": ("#7f7f7f", "o")}


@figure("03_claims_forest", "claims.csv")
def fig_03_claims_forest(results: Path, cfg=None) -> Figure:
    claims = _t(results, "claims.csv")
    if "delta" not in claims:                             # a table written before the δ of the equivalence verdict
        claims = claims.assign(delta=np.nan)
    rows = claims[(claims.metric == "accuracy") & (claims.verdict != "identical") & np.isfinite(claims.lo)]
    rows = rows[rows.claim_id.str.startswith("mars_")].reset_index(drop=True)
    groups = list(dict.fromkeys(zip(rows.rm, rows.track)))
    plotting.style()
    if not groups:                                        # e.g. one training seed: no claim has an interval
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no MARS claim with an interval in claims.csv (one training seed?)", ha="center")
        return fig
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 0.32 * rows.claim_id.nunique() + 1.6),
                             sharey=True, squeeze=False)
    order = list(dict.fromkeys(rows.claim_id))
    for ax, (rm, track) in zip(axes[0], groups):
        g = rows[(rows.rm == rm) & (rows.track == track)].set_index("claim_id")
        delta = float(g.delta.dropna().iloc[0]) if g.delta.notna().any() else np.nan
        if np.isfinite(delta):
            ax.axvspan(-delta, delta, color="#dddddd", alpha=0.6, lw=0, label=f"±δ = {delta:g}")
        ax.axvline(0, color="k", lw=0.8)
        for y, cid in enumerate(order):
            if cid not in g.index:
                continue
            r = g.loc[cid]
            colour, marker = VERDICT_STYLE.get(r.verdict, ("k", "o"))
            ax.errorbar(r.effect, y, xerr=[[r.effect - r.lo], [r.hi - r.effect]], fmt=marker, color=colour, ms=4,
                        capsize=2, lw=1)
        ax.set_title(f"{track} ({rm})", fontsize=9)
        ax.set_xlabel("accuracy difference A − B")
    labels = {cid: rows[rows.claim_id == cid].claim.iloc[0] for cid in order}
    axes[0][0].set_yticks(range(len(order)))
    axes[0][0].set_yticklabels([labels[c] for c in order], fontsize=7)
    axes[0][0].invert_yaxis()
    handles = [plt.Line2D([], [], color=c, marker=m, ls="", label=v) for v, (c, m) in VERDICT_STYLE.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("MARS minus each baseline: paired differences over test prompts × seeds (95 %), "
                 "verdict from the BH-adjusted p", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig
