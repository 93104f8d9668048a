"""Does MARS work, and when: per-pair outcomes, intervals over test prompts and seeds, and the
paper's claims with a verdict each, read from saved tables (the τ sweep that trains is `arms.tau_sweep`).

Per-pair outcomes (`per_pair_outcomes`) are the unit of every interval here: one row per
(track, rm, strategy, seed, test pair), with the pair's prompt as its `cluster`. Intervals are
`stats.two_stage_bootstrap` / `stats.paired_difference` (test prompts and training seeds crossed;
the method is stated in `mars_lib.evaluation.stats`), so they cover what a rerun on new test prompts and new
seeds would change. They do not cover a new draw of the gold task's noisy labels (fixed by
`label_seed`) or a new base subset: a rerun on new human data would add that variation too.

Verdict rule (`verdicts.decide`, `stats.verdict`; docs/method.md §11): each row has a two-sided p from
the t reference of its interval, Holm-adjusted within its claim family (``p_holm``: one claim over
tracks and rm regimes) and Benjamini-Hochberg-adjusted over the whole table (``p_adj``). A claim
"A beats B" is **held** when p_adj < 0.05 and A − B > 0, **not held** when p_adj < 0.05 and
A − B < 0, **equivalent** when the 95 % interval lies inside ±δ (δ per metric, `verdicts.smallest_effect`),
**inconclusive** otherwise; arms that trained on the same data are **identical** (no test). Each
row carries the design's minimum detectable effect (80 % power, two-sided 5 %, same t quantiles as
its interval), so an inconclusive row says how large an effect the design could have seen.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from mars_lib import strategies
from mars_lib.evaluation import stats, verdicts
from mars_lib.reward_models.features import Pairs
from mars_lib.mars import concentration
from mars_lib.pipeline.tables import load_table, save_table
from mars_lib.judges.task_judge import label as judge_label

def claim_specs() -> list[tuple[str, str, str, str, str]]:
    """(claim_id, claim, a, b, metric) of every per-pair claim, from the strategy registry: "a beats b"
    in accuracy for each arm and each of its `baselines`, and against the gold order for its headline
    (first) baseline. Read at call time, so a newly registered arm has its claims."""
    arms = [s for s in strategies.REGISTRY.values() if s.baselines]
    name = {n: s.claim_name() for n, s in strategies.REGISTRY.items()}
    rows = [(f"{a.name}>{b}", f"{name[a.name]} beats {name[b]}", a.name, b, "accuracy") for a in arms for b in a.baselines]
    return rows + [(f"gold:{a.name}>{a.baselines[0]}", f"{name[a.name]} beats {name[a.baselines[0]]} against the gold "
                    "order", a.name, a.baselines[0], "gold_accuracy") for a in arms]


def seed_level_specs() -> list[tuple[str, str, str, str, str, str]]:
    """(claim_id, claim, a, b, metric, split) of the claims on quantities with no test-pair decomposition
    (intervals over seeds only): SNR of the test reward gaps and the BT curvature of the realised
    training set, each arm against its headline baseline."""
    rows = []
    for a in (s for s in strategies.REGISTRY.values() if s.baselines):
        b = strategies.get(a.baselines[0])
        rows += [(f"snr:{a.name}>{b.name}", f"{a.claim_name()} raises the reward gap's SNR over {b.claim_name()}",
                  a.name, b.name, "snr", "test"),
                 (f"curv:{a.name}>{b.name}", f"{a.claim_name()}'s training set has more BT curvature (E[σ'] at the "
                  f"allocating θ) than {b.claim_name()}'s", a.name, b.name, "mean_sigma_prime", "curvature")]
    return rows


METRIC_COLUMN = {"accuracy": "correct", "gold_accuracy": "gold_correct"}   # per-pair column of each metric


def cluster_of(df: pd.DataFrame) -> pd.Series:
    """The prompt a pair belongs to: `prompt_id` when the table has one, else a hash of the prompt."""
    if "prompt_id" in df:
        return df.prompt_id.astype(str)
    return df.prompt.map(lambda p: hashlib.sha256(p.encode()).hexdigest()[:12])


def per_pair_outcomes(runs: dict, test: Pairs, track: str, rm: str) -> pd.DataFrame:
    """One row per (strategy, seed, test pair): reward gap, strict correctness under the test label
    and, where the pair has gold scores, agreement with the gold order."""
    df = test.df
    gold = (df.gold_chosen > df.gold_rejected).to_numpy(float) if "gold_chosen" in df else None
    clusters = cluster_of(df).to_numpy()
    frames = []
    for (s, seed), r in runs.items():
        gap = r.model.pair_gap(test)
        out = pd.DataFrame({"track": track, "rm": rm, "strategy": s, "seed": seed, "pair_id": df.pair_id.to_numpy(),
                            "cluster": clusters, "reward_gap": gap, "correct": (gap > 0).astype(float)})
        if gold is not None:
            out["gold_correct"] = np.where(gold == 1, gap > 0, gap < 0).astype(float)
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


ONE_SEED = "one training seed: seed variation cannot be estimated, so no interval is given"


def _interval(v: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """`stats.two_stage_bootstrap`, or with a single seed the means alone (lo = hi = NaN)."""
    if v.seed.nunique() >= 2:
        return stats.two_stage_bootstrap(v, n_boot=n_boot)
    g = v.groupby("strategy", sort=False)
    return pd.DataFrame({"strategy": list(g.groups), "mean": g.value.mean().to_numpy(), "lo": np.nan, "hi": np.nan,
                         "se": np.nan, "n_seeds": 1, "n_clusters": g.cluster.nunique().to_numpy(),
                         "n_pairs": g.pair_id.nunique().to_numpy(), "method": ONE_SEED})


def _paired(v: pd.DataFrame, a, b, n_boot: int) -> dict:
    """`stats.paired_difference`, or with a single seed the difference alone (no interval, p, df or MDE)."""
    if v.seed.nunique() >= 2:
        return stats.paired_difference(v, a, b, n_boot=n_boot)
    m = v.groupby("strategy").value.mean()
    return {"effect": m[a] - m[b], "lo": np.nan, "hi": np.nan, "se": np.nan, "df": np.nan, "p": np.nan,
            "p_better": np.nan, "mde": np.nan, "n_seeds": 1, "n_clusters": v.cluster.nunique(),
            "n_pairs": v.pair_id.nunique()}


def _value(per_pair: pd.DataFrame, metric: str) -> pd.DataFrame:
    col = METRIC_COLUMN[metric]
    return per_pair.dropna(subset=[col]).assign(value=lambda d: d[col])


def strategy_intervals(per_pair: pd.DataFrame, metrics=("accuracy", "gold_accuracy"), n_boot: int = 2000) -> pd.DataFrame:
    """Mean and interval over test prompts and seeds of each strategy, per track, rm and metric."""
    rows = []
    for (track, rm), g in per_pair.groupby(["track", "rm"], sort=False):
        for metric in metrics:
            col = METRIC_COLUMN[metric]
            if col not in g or g[col].isna().all():
                continue
            rows.append(_interval(_value(g, metric), n_boot).assign(track=track, rm=rm,
                                                                                           metric=metric))
    return pd.concat(rows, ignore_index=True)


def paired_table(per_pair: pd.DataFrame, targets=("mars_v1", "mars_v2"), metrics=("accuracy", "gold_accuracy"),
                 n_boot: int = 2000) -> pd.DataFrame:
    """Each target strategy vs every other strategy of the same track and rm: paired difference,
    interval over test prompts and seeds, P(better), minimum detectable effect."""
    rows = []
    for (track, rm), g in per_pair.groupby(["track", "rm"], sort=False):
        for metric in metrics:
            col = METRIC_COLUMN[metric]
            if col not in g or g[col].isna().all():
                continue
            v = _value(g, metric)
            for t in [t for t in targets if t in set(g.strategy)]:
                for other in [s for s in g.strategy.unique() if s != t]:
                    r = _paired(v, t, other, n_boot)
                    rows.append({"track": track, "rm": rm, "metric": metric, "strategy": t, "vs": other,
                                 **{k: r[k] for k in ("effect", "lo", "hi", "se", "p_better", "mde", "n_seeds",
                                                      "n_clusters", "n_pairs")}})
    return pd.DataFrame(rows)


REGIME_FOLDERS = {"gpu_regimes": "full", "cpu_regimes": "full-cpu"}   # results/<folder>/<model>/ -> rm label


def write_claims(cfg) -> pd.DataFrame:
    """Rebuild `<results>/claims.csv` from the saved tables of notebooks 03 (per-pair outcomes and
    histories of every track), of the fine-tuned regime script (`<results>/gpu_regimes/<model>/<track>/`
    as `full:<model>`, `<results>/cpu_regimes/<model>/...` as `full-cpu:<model>`) and of notebook 05 (Best-of-N win rates), where present."""
    nb3 = "03_rm_training"
    per_pair, hist = [], []
    for pp, h in (("per_pair_test.parquet", "history.csv"), ("per_pair_human_track.parquet", "history_human_track.csv"),
                  ("per_pair_backbones.parquet", "history_backbones.csv")):     # the last: rm "head:<encoder>"
        if cfg.path(nb3, pp).exists():
            per_pair.append(load_table(cfg.path(nb3, pp)))
            hh = load_table(cfg.path(nb3, h))
            hist.append(hh.assign(track=hh.get("track", "gold"), rm=hh.get("rm", cfg.rm)))
    if not per_pair:
        raise FileNotFoundError("no per-pair outcomes saved: run notebook 03 first (./run_all.sh --only 03)")
    # the fine-tuned regime, from bench/gpu_regimes.py where its tables exist: at full scale on a GPU
    # (results/gpu_regimes/<model>/ -> rm "full:<model>") and at the smaller scale a CPU affords
    # (results/cpu_regimes/<model>/ -> "full-cpu:<model>"; its run.json states the scale)
    for folder, label in REGIME_FOLDERS.items():
        root = cfg.path(folder, "x").parent
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(model_dir.glob("*/per_pair_*.parquet"))
            if files:
                rm = f"{label}:{model_dir.name}"
                per_pair.append(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).assign(rm=rm))
                hist.append(pd.concat([pd.read_csv(f) for f in sorted(model_dir.glob("*/history_*.csv"))],
                                      ignore_index=True).assign(rm=rm))
    table = claims_table(pd.concat(per_pair, ignore_index=True), pd.concat(hist, ignore_index=True), n_boot=cfg.n_boot)
    win = cfg.path("05_downstream", "win_rate_summary.csv")
    if win.exists():
        table = pd.concat([table, downstream_claims(load_table(win), cfg.rm)], ignore_index=True)
    iid = cfg.path("05_downstream", "bon_iid_paired.csv")
    if iid.exists():
        table = pd.concat([table, bon_iid_claims(load_table(iid), cfg.rm)], ignore_index=True)
    table = verdicts.decide(table)   # multiplicity over the whole table, Best-of-N rows included
    save_table(table, cfg.path("claims.csv"), cfg)
    return table


def _seed_level(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired t interval over seeds of mean(a − b) (seeds paired by index), its two-sided p and its
    MDE, all from the same t_{n−1} reference."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    if n < 2:
        return {"effect": d.mean() if n else np.nan, "lo": np.nan, "hi": np.nan, "se": np.nan, "df": np.nan,
                "p": np.nan, "mde": np.nan, "n_seeds": n}
    se = d.std(ddof=1) / np.sqrt(n)
    t = stats.t_quantile(0.975, n - 1)
    return {"effect": d.mean(), "lo": d.mean() - t * se, "hi": d.mean() + t * se, "se": se, "df": n - 1,
            "p": stats.p_value(d.mean(), se, n - 1), "mde": stats.mde(se, n - 1), "n_seeds": n}


def claims_table(per_pair: pd.DataFrame, histories: pd.DataFrame | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Every claim of `claim_specs` and `seed_level_specs` that the runs can answer, per track and rm regime.

    per_pair: `per_pair_outcomes` rows (any number of tracks / regimes). histories: the tidy
    histories of the same runs with `track` and `rm` columns (for SNR and curvature).

    Columns `verdicts.COLUMNS`: effect = mean(a) − mean(b), its 95 % interval [lo, hi] = effect ± t_df·se,
    the two-sided p of "no difference" from the same t_df, ``p_holm`` (Holm within the claim's family,
    its rows over tracks and rm regimes), ``p_adj`` (Benjamini-Hochberg over the whole table),
    ``delta`` (`verdicts.smallest_effect`), ``mde`` = (t_{df,0.975} + t_{df,0.8})·se and ``verdict``, which
    reads **p_adj** (`verdicts.decide`). Arms with identical reward gaps (`verdicts.identical_arms`) are one
    RM: such a row gets verdict "identical" and no p, and a row that repeats an earlier one with an
    identical arm in place of the other is not repeated (the earlier row's method says so)."""
    rows, reps = [], {}
    for name in pd.unique(per_pair.strategy):
        strategies.get(name)           # registers an "<arm>@<τ>" arm of the runs, so that its claims are made
    for (track, rm), g in per_pair.groupby(["track", "rm"], sort=False):
        have = set(g.strategy)
        reps[(track, rm)] = verdicts.identical_arms(g)
        for cid, text, a, b, metric in claim_specs():
            col = METRIC_COLUMN[metric]
            if a not in have or b not in have or col not in g or g[col].isna().all():
                continue
            r = _paired(_value(g, metric), a, b, n_boot)
            rows.append({"claim_id": cid, "claim": text, "track": track, "rm": rm, "metric": metric,
                         **{k: r[k] for k in ("effect", "lo", "hi", "se", "df", "p", "mde", "n_seeds")},
                         "n_test_pairs": r["n_pairs"], "delta": verdicts.smallest_effect(metric), "_a": a, "_b": b,
                         "method": "paired, test prompts x seeds (mars_lib.evaluation.stats)" if r["n_seeds"] >= 2 else ONE_SEED})
    if histories is not None and len(histories):
        last = histories[histories["round"] == histories.groupby(["track", "rm"])["round"].transform("max")]
        for (track, rm), g in last.groupby(["track", "rm"], sort=False):
            n_pairs = int(per_pair[(per_pair.track == track) & (per_pair.rm == rm)].pair_id.nunique())
            for cid, text, a, b, metric, split in seed_level_specs():
                piv = g[(g.metric == metric) & (g.split == split)].pivot_table(index="seed", columns="strategy",
                                                                                 values="value")
                if a not in piv or b not in piv:
                    continue
                piv = piv[[a, b]].dropna()
                r = _seed_level(piv[a].to_numpy(), piv[b].to_numpy())
                rows.append({"claim_id": cid, "claim": text, "track": track, "rm": rm, "metric": metric, **r,
                             "n_test_pairs": n_pairs if split == "test" else 0,
                             "delta": verdicts.smallest_effect(metric, piv[b].mean()), "_a": a, "_b": b,
                             "method": "paired t over seeds only" + (" (test set fixed)" if split == "test" else "")})
    if not rows:
        return pd.DataFrame(columns=verdicts.COLUMNS)

    def same(r, x, y):
        rep = reps.get((r["track"], r["rm"]), {})
        return rep.get(x, x) == rep.get(y, y)
    ess = realised_ess(histories)
    for r in rows:
        r["ess_a"], r["ess_b"] = (ess.get((r["track"], r["rm"], s), float("nan")) for s in (r["_a"], r["_b"]))
    return verdicts.decide(pd.DataFrame(verdicts.merge_identical(rows, same)))


def realised_ess(histories: pd.DataFrame | None) -> dict:
    """(track, rm, strategy) -> ESS/N of the budgets the arm actually trained on, mean over seeds and
    rounds ≥ 2 (round 1 allocates from an untrained RM unless warm_start); NaN for arms without
    per-source budgets (none, won_pace, self_train). 1 = every base pair got the same number."""
    if histories is None or not len(histories) or "track" not in histories:
        return {}
    h = histories[(histories.metric == "alloc_ess_over_n") & (histories.split == "train")]
    h = h[h["round"] >= h.groupby(["track", "rm", "strategy"])["round"].transform(lambda r: min(2, r.max()))]
    return h.groupby(["track", "rm", "strategy"]).value.mean().to_dict()


def downstream_claims(win_summary: pd.DataFrame, rm: str = "head") -> pd.DataFrame:
    """Best-of-N win-rate claims from notebook 05's `win_rate_summary.csv` (a vs b: the win rate over
    seeds and prompts with `stats.two_stage_bootstrap`'s interval, se and df — the same interval method
    as every other row; p and MDE from the same t reference). Effect: win rate − 0.5. The claim is held
    when the win rate is above 0.5 (verdict rule of `verdicts.decide`; delta 0.01 on the win rate)."""
    rows = []
    for _, r in win_summary.iterrows():
        if not str(r.a).startswith("mars"):
            continue
        effect = r["mean"] - 0.5
        rows.append({"claim_id": f"bon:{r.a}>{r.b}", "claim": f"Best-of-N with the {r.a} RM beats the {r.b} RM",
                     "track": "gold", "rm": rm, "metric": "bon_win_rate", "effect": effect, "lo": r.lo - 0.5,
                     "hi": r.hi - 0.5, "se": r.se, "df": r.df, "n_seeds": int(r.n_seeds), "n_test_pairs": int(r.prompts),
                     "p": stats.p_value(effect, r.se, r.df), "delta": verdicts.smallest_effect("bon_win_rate"),
                     "mde": stats.mde(r.se, r.df), "_a": r.a, "_b": r.b,
                     "method": "win rate − 0.5; prompts x seeds (mars_lib.evaluation.stats), from win_rate_summary.csv"})
    return verdicts.decide(pd.DataFrame(verdicts.merge_identical(
        rows, verdicts.same_by_numbers(rows), "the two RMs pick draws of the same scores")))


def bon_iid_claims(paired: pd.DataFrame, rm: str = "head") -> pd.DataFrame:
    """Best-of-n on i.i.d. draws (notebook 05's `bon_iid_paired.csv`): a's RM picks draws the judge
    scores higher than b's, at the largest n; one row per judge. Paired over prompts and seeds
    (`stats.paired_difference`: its interval, se and df), so the verdict rule is the same as for
    accuracy; p and MDE are recomputed here from se and df (the same t reference). Judge points have
    no smallest effect of interest (delta NaN): no "equivalent" verdict. Rows whose numbers repeat an
    earlier row's of the same judge with one arm swapped are not repeated (`verdicts.same_by_numbers`)."""
    rows = [{"claim_id": f"bon_iid[{r.judge}]:{r.a}>{r.b}",
             "claim": f"Best-of-{r.n} (i.i.d. draws) with the {r.a} RM beats the {r.b} RM under {judge_label(r.judge)}",
             "track": "gold", "rm": rm, "metric": f"bon{r.n}_{r.judge}", "effect": r.effect, "lo": r.lo, "hi": r.hi,
             "se": r.se, "df": r.df, "n_seeds": r.n_seeds, "n_test_pairs": r.n_clusters,
             "p": stats.p_value(r.effect, r.se, r.df), "delta": verdicts.smallest_effect(f"bon{r.n}_{r.judge}"),
             "mde": stats.mde(r.se, r.df), "_a": r.a, "_b": r.b,
             "method": "paired, prompts x seeds (mars_lib.evaluation.stats), from bon_iid_paired.csv"} for r in paired.itertuples()]
    return verdicts.decide(pd.DataFrame(verdicts.merge_identical(
        rows, verdicts.same_by_numbers(rows), "the two RMs pick draws of the same scores")))


def tau_sweep_paired(sweep_pp: pd.DataFrame, main_pp: pd.DataFrame, baseline: str, n_boot: int = 2000) -> pd.DataFrame:
    """Each (track, version, τ) of the τ sweep (`arms.tau_sweep`'s per-pair outcomes) minus `baseline`
    (uniform_stratified: the same budget drawn as MARS draws it) from the main comparison's per-pair
    table, paired over the same seeds and test pairs (`stats.paired_difference` on test accuracy; with
    one seed the difference alone, verdict "inconclusive"):
    effect, lo, hi, se, df, p, mde, delta, p_adj (Benjamini-Hochberg over the sweep's rows) and the
    verdict (`stats.verdict`; "identical" when the arm trained the baseline's RM)."""
    rows = []
    for (track, v, tau), g in sweep_pp.groupby(["track", "strategy", "tau"], sort=False):
        base = main_pp[(main_pp.track == track) & (main_pp.strategy == baseline) & main_pp.seed.isin(g.seed.unique())]
        if not len(base):
            continue
        arm = f"{v}@{tau:g}"
        pp = pd.concat([g.drop(columns="tau").assign(strategy=arm), base], ignore_index=True)
        d = _paired(pp.assign(value=pp.correct), arm, baseline, n_boot)
        rows.append({"track": track, "strategy": v, "tau": tau, "baseline": baseline,
                     "identical": (rep := verdicts.identical_arms(pp))[arm] == rep[baseline],
                     **{k: d[k] for k in ("effect", "lo", "hi", "se", "df", "p", "mde")},
                     "delta": verdicts.smallest_effect("accuracy")})
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    out["p_adj"] = stats.benjamini_hochberg(out.p.where(~out.identical, np.nan).to_numpy(float))
    out["verdict"] = ["identical" if r.identical else stats.verdict(r.effect, r.lo, r.hi, r.p_adj, r.delta)
                      for r in out.itertuples()]
    return out


def tau_allocation(gaps: np.ndarray, taus, version: str) -> pd.DataFrame:
    """Concentration of MARS's allocation q over the given reward gaps at each τ (no training):
    the question "is the authors' τ uniform here?" answered from the RM's own gaps."""
    q = strategies.get(version).q
    return pd.DataFrame([{"strategy": version, "tau": t, **concentration(q(gaps, t))} for t in taus])
