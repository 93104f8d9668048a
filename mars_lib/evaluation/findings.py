"""Each notebook's closing "What we found", written from its saved tables (no number typed by hand).

`findings(nb, results_dir)` returns markdown bullet lines for notebook `nb` ("01_margins", ...);
`show(nb, cfg)` displays them in a notebook (plain text outside one). A table a run did not save is
skipped, so the smoke profile gets the lines its tables support.
"""
from __future__ import annotations

from pathlib import Path

from mars_lib.evaluation.claims import claim_specs
from mars_lib.pipeline.helps_map import helps_sentence
from mars_lib.pipeline.report import backbone_lines as backbones
from mars_lib.pipeline.tables import table_if_present as _t


def _ci(m, lo, hi) -> str:
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def margins(results: Path) -> list[str]:
    out = []
    task, first = _t(results, "01_margins/task_summary.csv"), _t(results, "01_margins/first_rm_metrics.csv")
    if task is not None and first is not None:
        t, f = task.set_index("split").loc["test"], first.set_index("split").loc["test"]
        out.append(f"On the gold task (β = {t.beta:g}) {t.noise_ceiling:.1%} of the test labels agree with the gold "
                   f"order (the noise ceiling); the first RM reaches test accuracy {f.accuracy:.3f} against those "
                   f"labels and {f.gold_accuracy:.3f} against the gold order, with reward-gap SNR {f.snr:.2f}.")
    conc = _t(results, "01_margins/allocation_concentration.csv")
    if conc is not None:
        c = conc.set_index("version")
        parts = [f"{v} ESS/N {r.ess_over_n:.3f}, {r.budget_on_mislabeled:.1%} of the budget on mislabelled pairs"
                 for v, r in c.iterrows()]
        out.append(f"At the authors' τ the allocation from this RM's gaps gives {'; '.join(parts)} (mislabelled "
                   f"pairs are {c.mislabeled_share_of_pairs.iloc[0]:.1%} of the base set): ESS/N = 1 is uniform.")
    agree = _t(results, "01_margins/judge_human_agreement.csv")
    if agree is not None:
        a = agree[(agree.facet == "all") & (agree.weights_tuned_on == "fixed")] if "facet" in agree else agree.iloc[:0]
        if len(a):
            out.append("Gold judges against people (chance 0.5): " + "; ".join(
                f"{r.judge} on {r.dataset} {r.agreement:.3f} [{r.lo:.3f}, {r.hi:.3f}]" for r in a.itertuples()) + ".")
    return out


def self_refinement(results: Path) -> list[str]:
    out = []
    op = _t(results, "02_self_refinement/fidelity_by_operator.csv")
    if op is not None:
        out.append("Labels of the synthetic pairs against the gold order, by operator: " + "; ".join(
            f"{r.operator} {r.label_agrees_with_gold:.3f} ({int(r.pairs)} pairs)" for r in op.itertuples()) + ".")
    gap = _t(results, "02_self_refinement/fidelity_by_gap.csv")
    if gap is not None and len(gap) >= 2:
        lo, hi = gap.iloc[0], gap.iloc[-1]
        where = ("the pairs MARS favours are where an inherited label is least safe" if lo.keeps_gold_order <
                 hi.keeps_gold_order else "no sign that small-gap pairs lose their label more often")
        out.append(f"Paraphrases keep their source's gold order in {lo.keeps_gold_order:.1%} of the pairs of the "
                   f"smallest-|Δ| bin and {hi.keeps_gold_order:.1%} of the largest: {where}.")
    ref = _t(results, "02_self_refinement/refinement_summary.csv")
    if ref is not None:
        r = ref.iloc[0]
        out.append(f"Semantic refinement rewrote {int(r.kept)} of {int(r.attempted)} attempted low-distance pairs "
                   f"(of {int(r.low_distance)} below the threshold), raising their distance by {r.mean_gain_kept:.3f} "
                   "on average.")
    return out


def rm_training(results: Path) -> list[str]:
    out = []
    claims = _t(results, "claims.csv")
    if claims is None:
        return out
    head = claims[claims.rm == "head"]
    counts = head.verdict.value_counts()
    out.append("Head-RM claims, by verdict: " + ", ".join(f"{k} {int(v)}" for k, v in counts.items()) + ".")
    text = {cid: t for cid, t, *_ in claim_specs()}
    for cid in ("mars_v1>uniform", "mars_v1>uniform_stratified", "mars_v2>uniform", "mars_v1>none_matched"):
        rows = head[(head.claim_id == cid) & (head.metric == "accuracy")]
        if len(rows):
            out.append(f"{text.get(cid, cid)}: " + "; ".join(
                f"{r.track} {_ci(r.effect, r.lo, r.hi)} **{r.verdict}**" for r in rows.itertuples()) + ".")
    sweep = _t(results, "03_rm_training/tau_sweep.csv")
    if sweep is not None and len(sweep) and "effect" in sweep:
        counts = sweep.verdict.value_counts()
        best = sweep.loc[sweep.groupby(["track", "strategy"]).effect.idxmax()]
        worst = sweep.loc[sweep.groupby(["track", "strategy"]).effect.idxmin()]
        out.append(f"τ sweep, MARS at each τ − {sweep.baseline.iloc[0]} on test accuracy (`tau_sweep.csv`, "
                   f"{len(sweep)} (track, version, τ) rows, BH over them): "
                   + ", ".join(f"{k} {int(v)}" for k, v in counts.items()) + ". Best per track and version: " + "; ".join(
                       f"{r.track} {r.strategy} τ = {r.tau:g} {_ci(r.effect, r.lo, r.hi)} ({r.verdict})"
                       for r in best.itertuples()) + ". Worst: " + "; ".join(
                       f"{r.track} {r.strategy} τ = {r.tau:g} {_ci(r.effect, r.lo, r.hi)} at ESS/N {r.ess_over_n:.2f} "
                       f"({r.verdict})" for r in worst.itertuples()) + ".")
    for where in ("03_rm_training", "cpu_map/03_rm_training"):          # the map runs in its own profile
        table = _t(results, f"{where}/when_mars_helps.csv")
        if table is not None:
            out.append(f"When margin-awareness helps (`{where}/when_mars_helps.csv`, MARS − uniform_stratified on "
                       f"gold accuracy): {helps_sentence(table)}")
            break
    return out + backbones(results)


def downstream(results: Path) -> list[str]:
    out = []
    iid = _t(results, "05_downstream/bon_iid_paired.csv")
    if iid is not None:
        t = iid[(iid.a == "mars_v1") & (iid.n == iid.n.max())]
        if len(t):
            out.append(f"Best-of-{int(t.n.iloc[0])} on i.i.d. draws, MARS v1's RM minus the baseline's (judge score of "
                       "the pick): " + "; ".join(f"vs {r.b} ({r.judge}) {_ci(r.effect, r.lo, r.hi)}"
                                                 for r in t.itertuples()) + ".")
    dpo = _t(results, "05_downstream/dpo_paired.csv")
    if dpo is not None:
        t = dpo[dpo.a == "mars_v1"]
        if len(t):
            out.append("DPO, MARS v1's policy minus the baseline's (mean judge score of the answers; "
                       f"{t.method.iloc[0]}): " + "; ".join(f"vs {r.b} ({r.judge}) {_ci(r.effect, r.lo, r.hi)}, "
                                                          f"MDE {r.mde:.2f}" for r in t.itertuples()) + ".")
    return out


FINDINGS = {"01_margins": margins, "02_self_refinement": self_refinement, "03_rm_training": rm_training,
            "05_downstream": downstream}


def findings(nb: str, results: Path) -> list[str]:
    """Markdown bullet lines of notebook `nb`'s findings, from the tables under `results`."""
    return [f"- {line}" for line in FINDINGS[nb](Path(results))]


def show(nb: str, cfg) -> None:
    """Display notebook `nb`'s findings from the run's results folder (`cfg.results_dir`)."""
    lines = findings(nb, cfg.path("x").parent) or ["- (no saved tables to report on yet)"]
    try:
        from IPython.display import Markdown, display
        display(Markdown("\n".join(lines)))
    except ImportError:
        print("\n".join(lines))
