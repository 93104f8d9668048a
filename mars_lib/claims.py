"""Does MARS work, and when: per-pair outcomes, intervals over test prompts and seeds, the τ sweep,
and the paper's claims with a verdict each.

Per-pair outcomes (`per_pair_outcomes`) are the unit of every interval here: one row per
(track, rm, strategy, seed, test pair), with the pair's prompt as its `cluster`. Intervals are
`stats.two_stage_bootstrap` / `stats.paired_difference` (test prompts and training seeds crossed;
the method is stated in `mars_lib.stats`), so they cover what a rerun on new test prompts and new
seeds would change. They do not cover a new draw of the gold task's noisy labels (fixed by
`label_seed`) or a new base subset: a rerun on new human data would add that variation too.

Verdict rule (`stats.verdict`): a claim "A beats B" is **held** when the 95 % interval of A − B
lies above 0, **not held** when it lies below 0, **inconclusive** when it contains 0. Each row
carries the design's minimum detectable effect (80 % power, two-sided 5 %), so an inconclusive
row says how large an effect the design could have seen.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from . import stats
from .features import Pairs

CLAIMS = (   # claim_id, claim, a, b, metric
    ("mars_v1>uniform", "MARS v1 beats uniform augmentation", "mars_v1", "uniform", "accuracy"),
    ("mars_v2>uniform", "MARS v2 beats uniform augmentation", "mars_v2", "uniform", "accuracy"),
    ("mars_v1>none", "MARS v1 beats no augmentation", "mars_v1", "none", "accuracy"),
    ("mars_v2>none", "MARS v2 beats no augmentation", "mars_v2", "none", "accuracy"),
    ("mars_v1>none_matched", "MARS v1 beats no augmentation with as many optimizer steps", "mars_v1", "none_matched",
     "accuracy"),
    ("mars_v2>none_matched", "MARS v2 beats no augmentation with as many optimizer steps", "mars_v2", "none_matched",
     "accuracy"),
    ("mars_v1>won", "MARS v1 beats West-of-N (authors')", "mars_v1", "won", "accuracy"),
    ("mars_v2>won", "MARS v2 beats West-of-N (authors')", "mars_v2", "won", "accuracy"),
    ("mars_v1>won_pace", "MARS v1 beats West-of-N (Pace et al.)", "mars_v1", "won_pace", "accuracy"),
    ("mars_v2>mars_v1", "MARS v2 beats MARS v1", "mars_v2", "mars_v1", "accuracy"),
    ("mars_v1>reweight", "MARS v1 is more than reweighting the base pairs", "mars_v1", "reweight", "accuracy"),
    ("mars_v1>easy_first", "MARS v1 beats easy-first allocation", "mars_v1", "easy_first", "accuracy"),
    ("mars_v1>hard_filter", "MARS v1 beats dropping the most negative-gap pairs", "mars_v1", "hard_filter",
     "accuracy"),
    ("mars_v1>self_train", "MARS v1 beats RM self-training", "mars_v1", "self_train", "accuracy"),
    ("gold:mars_v1>uniform", "MARS v1 beats uniform against the gold order", "mars_v1", "uniform", "gold_accuracy"),
    ("gold:mars_v2>uniform", "MARS v2 beats uniform against the gold order", "mars_v2", "uniform", "gold_accuracy"),
)
SEED_LEVEL = (   # claims on quantities with no test-pair decomposition: intervals over seeds only
    ("snr:mars_v1>uniform", "MARS v1 raises the reward gap's SNR over uniform", "mars_v1", "uniform", "snr", "test"),
    ("snr:mars_v2>uniform", "MARS v2 raises the reward gap's SNR over uniform", "mars_v2", "uniform", "snr", "test"),
    ("curv:mars_v1>uniform", "MARS v1's training set has more BT curvature (E[σ'] at the allocating θ) than uniform's",
     "mars_v1", "uniform", "mean_sigma_prime", "curvature"),
    ("curv:mars_v2>uniform", "MARS v2's training set has more BT curvature (E[σ'] at the allocating θ) than uniform's",
     "mars_v2", "uniform", "mean_sigma_prime", "curvature"),
)


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
    """`stats.paired_difference`, or with a single seed the difference alone (no interval, MDE NaN)."""
    if v.seed.nunique() >= 2:
        return stats.paired_difference(v, a, b, n_boot=n_boot)
    m = v.groupby("strategy").value.mean()
    return {"effect": m[a] - m[b], "lo": np.nan, "hi": np.nan, "se": np.nan, "p_better": np.nan, "mde": np.nan,
            "n_seeds": 1, "n_clusters": v.cluster.nunique(), "n_pairs": v.pair_id.nunique()}


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
    from .results import load_table, save_table
    nb3 = "03_rm_training"
    per_pair, hist = [], []
    for pp, h in (("per_pair_test.parquet", "history.csv"), ("per_pair_human_track.parquet", "history_human_track.csv")):
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
    save_table(table, cfg.path("claims.csv"), cfg)
    return table


def _seed_level(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired t interval over seeds of mean(a − b) (seeds paired by index)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    se = d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    t = stats.t_quantile(0.975, n - 1) if n > 1 else float("nan")
    return {"effect": d.mean(), "lo": d.mean() - t * se, "hi": d.mean() + t * se, "se": se,
            "mde": stats.mde(se) if n > 1 else float("nan"), "n_seeds": n}


def claims_table(per_pair: pd.DataFrame, histories: pd.DataFrame | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Every claim of `CLAIMS` and `SEED_LEVEL` that the runs can answer, per track and rm regime.

    per_pair: `per_pair_outcomes` rows (any number of tracks / regimes). histories: the tidy
    histories of the same runs with `track` and `rm` columns (for SNR and curvature)."""
    rows = []
    for (track, rm), g in per_pair.groupby(["track", "rm"], sort=False):
        have = set(g.strategy)
        for cid, text, a, b, metric in CLAIMS:
            col = METRIC_COLUMN[metric]
            if a not in have or b not in have or col not in g or g[col].isna().all():
                continue
            r = _paired(_value(g, metric), a, b, n_boot)
            rows.append({"claim_id": cid, "claim": text, "track": track, "rm": rm, "metric": metric,
                         "effect": r["effect"], "lo": r["lo"], "hi": r["hi"], "mde": r["mde"], "n_seeds": r["n_seeds"],
                         "n_test_pairs": r["n_pairs"],
                         "method": "paired, test prompts x seeds (mars_lib.stats)" if r["n_seeds"] >= 2 else ONE_SEED})
    if histories is not None and len(histories):
        last = histories[histories["round"] == histories.groupby(["track", "rm"])["round"].transform("max")]
        for (track, rm), g in last.groupby(["track", "rm"], sort=False):
            n_pairs = int(per_pair[(per_pair.track == track) & (per_pair.rm == rm)].pair_id.nunique())
            for cid, text, a, b, metric, split in SEED_LEVEL:
                piv = g[(g.metric == metric) & (g.split == split)].pivot_table(index="seed", columns="strategy",
                                                                                 values="value")
                if a not in piv or b not in piv:
                    continue
                piv = piv[[a, b]].dropna()
                r = _seed_level(piv[a].to_numpy(), piv[b].to_numpy())
                rows.append({"claim_id": cid, "claim": text, "track": track, "rm": rm, "metric": metric, **r,
                             "n_test_pairs": n_pairs if split == "test" else 0,
                             "method": "paired t over seeds only" + (" (test set fixed)" if split == "test" else "")})
    out = pd.DataFrame(rows)
    if len(out):      # no interval (one seed) is no evidence either way
        out["verdict"] = [stats.verdict(lo, hi) if np.isfinite(lo) and np.isfinite(hi) else "inconclusive"
                          for lo, hi in zip(out.lo, out.hi)]
    cols = ["claim_id", "claim", "track", "rm", "metric", "effect", "lo", "hi", "n_seeds", "n_test_pairs", "verdict",
            "mde", "method"]
    return out.reindex(columns=cols)


def downstream_claims(win_summary: pd.DataFrame, rm: str = "head") -> pd.DataFrame:
    """Best-of-N win-rate claims from notebook 05's `win_rate_summary.csv` (a vs b: mean win rate over
    seeds, its interval over seeds, and the mean standard error over prompts). Every seed's RMs pick
    from the same prompts' samples, so prompt sampling does not average out over seeds: the interval
    here is mean ± 1.96·sqrt(se_seeds² + se_prompts²) (normal approximation), and the claim is held
    when it lies above a win rate of 0.5."""
    rows = []
    for _, r in win_summary.iterrows():
        if not str(r.a).startswith("mars"):
            continue
        se = float(np.hypot((r.hi - r.lo) / (2 * 1.96), r.mean_se_over_prompts))
        effect = r["mean"] - 0.5
        lo, hi = effect - 1.96 * se, effect + 1.96 * se
        rows.append({"claim_id": f"bon:{r.a}>{r.b}", "claim": f"Best-of-N with the {r.a} RM beats the {r.b} RM",
                     "track": "gold", "rm": rm, "metric": "bon_win_rate", "effect": effect, "lo": lo, "hi": hi,
                     "n_seeds": r.n, "n_test_pairs": r.prompts, "verdict": stats.verdict(lo, hi), "mde": stats.mde(se),
                     "method": "win rate − 0.5; seeds and prompts (normal), from win_rate_summary.csv"})
    return pd.DataFrame(rows)


def bon_iid_claims(paired: pd.DataFrame, rm: str = "head") -> pd.DataFrame:
    """Best-of-n on i.i.d. draws (notebook 05's `bon_iid_paired.csv`): a's RM picks draws the judge
    scores higher than b's, at the largest n; one row per judge. Paired over prompts and seeds
    (`stats.paired_difference`), so the verdict rule is the same as for accuracy."""
    from .task_judges import label as judge_label
    rows = [{"claim_id": f"bon_iid[{r.judge}]:{r.a}>{r.b}",
             "claim": f"Best-of-{r.n} (i.i.d. draws) with the {r.a} RM beats the {r.b} RM under {judge_label(r.judge)}",
             "track": "gold", "rm": rm, "metric": f"bon{r.n}_{r.judge}", "effect": r.effect, "lo": r.lo, "hi": r.hi,
             "n_seeds": r.n_seeds, "n_test_pairs": r.n_clusters, "verdict": stats.verdict(r.lo, r.hi), "mde": r.mde,
             "method": "paired, prompts x seeds (mars_lib.stats), from bon_iid_paired.csv"} for r in paired.itertuples()]
    return pd.DataFrame(rows)


def tau_allocation(gaps: np.ndarray, taus, version: str) -> pd.DataFrame:
    """Concentration of MARS's allocation q over the given reward gaps at each τ (no training):
    the question "is the authors' τ uniform here?" answered from the RM's own gaps."""
    from .selection import allocation_probs, concentration
    gap = {"mars_v1": "abs", "mars_v2": "signed"}[version]
    return pd.DataFrame([{"strategy": version, "tau": t, **concentration(allocation_probs(gaps, t, gap))} for t in taus])


def tau_sweep(cfg, base: Pairs, pool: Pairs, evals: dict, track: str, taus, seeds, versions=("mars_v1", "mars_v2")
              ) -> pd.DataFrame:
    """Test accuracy and allocation concentration of MARS v1 / v2 at each τ (head RMs; same budget,
    schedule, seeds and per-seed label draws as the main comparison). Concentration: mean over rounds ≥ 2 of the realised
    allocation (round 1 allocates from an untrained RM unless warm_start, so it is uniform)."""
    import dataclasses

    from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn

    from .runs import seed_data
    from .training import run_strategy
    rows = []
    jobs = [(v, t, s) for s in seeds for v in versions for t in taus]
    data = {}
    for v, t, seed in tqdm(jobs, desc=f"{track}: τ sweep"):
        if seed not in data:                      # the seed's own label draw, as in the main comparison
            data = {seed: seed_data(cfg, base, pool, seed)}
        # what the sweep reads only: test accuracy after the last round and the allocation (no per-round
        # evaluation or curvature tracking, which would cost more than the training itself)
        c = dataclasses.replace(cfg, rm="head", tau_v1=t if v == "mars_v1" else cfg.tau_v1,
                                tau_v2=t if v == "mars_v2" else cfg.tau_v2, track_curvature=False,
                                eval_every_round=False)
        h = run_strategy(v, *data[seed], {"test": evals["test"]}, c, seed).history
        late = h[(h["round"] >= min(2, h["round"].max())) & (h.split == "train")]
        last = h[(h["round"] == h["round"].max()) & (h.split == "test")].set_index("metric").value
        rows.append({"track": track, "strategy": v, "tau": t, "seed": seed, "accuracy": last["accuracy"],
                     **{k: late[late.metric == f"alloc_{k}"].value.mean()
                        for k in ("ess_over_n", "gini", "top10_share", "max_over_mean")}})
    return pd.DataFrame(rows)


def tau_sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per (track, version, τ): mean accuracy and concentration over seeds, and whether the
    allocation is uniform to the eye (ESS/N ≥ 0.99)."""
    out = sweep.groupby(["track", "strategy", "tau"], sort=False).agg(
        accuracy=("accuracy", "mean"), accuracy_sd=("accuracy", "std"), ess_over_n=("ess_over_n", "mean"),
        gini=("gini", "mean"), top10_share=("top10_share", "mean"), max_over_mean=("max_over_mean", "mean"),
        n_seeds=("seed", "nunique")).reset_index()
    out["uniform"] = out.ess_over_n >= 0.99
    return out
