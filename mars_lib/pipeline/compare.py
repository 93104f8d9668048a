"""`mars compare`: does MARS help on *my* data? Every chosen arm × seed through the rounds loop on the
user's train pairs, scored on their held-out pairs, with the package's paired intervals and verdicts.

The same core as notebook 03: one `RunConfig` per comparison, the paraphrase pool of
`synthetic.pools` (label inherited, n × n pairs per source), `arms.run_strategy` → `mars.run_rounds`
for each (arm, seed), `claims.per_pair_outcomes` and `claims.claims_table` (the two-stage paired
interval over test prompts and seeds, t-based MDE, Benjamini-Hochberg over the table, the
equivalence margin, identical arms reported once). Nothing here is a second implementation.

Resumable: each finished (arm, seed) is written to `<out>/jobs/` as soon as it ends and is not trained
again; `<out>/compare.json` names the config and the data's content hash, and a folder holding another
comparison is refused rather than mixed. `plan` states the cost before anything is trained.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mars_lib import strategies
from mars_lib.data.pairs import DataError
from mars_lib.evaluation.claims import claims_table, per_pair_outcomes, strategy_intervals
from mars_lib.mars import Sources
from mars_lib.pipeline.arms import run_strategy
from mars_lib.pipeline.assets import set_offline
from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.pipeline.context import encoder_for, model_factory
from mars_lib.pipeline.io import atomic_write_json, atomic_write_text
from mars_lib.reward_models.features import Pairs, featurize
from mars_lib.synthetic.pools import labelled_pool_frame

DEFAULT_ARMS = ("none_matched", "uniform", "mars_v1", "mars_v2")   # MARS and what it must beat, equal steps
REGIMES = ("head", "full", "lora")
TRACK = "data"                                                      # the track name of the user's pairs in tables


def comparison_config(n_train: int, arms=DEFAULT_ARMS, seeds=(0, 1, 2), rounds: int = 2, budget: int | None = None,
                      regime: str = "head", model: str | None = None, **settings) -> RunConfig:
    """The one config of a comparison: the cpu profile's defaults, the user's arms / seeds / rounds, a
    budget B (default 2 N, the authors' ratio) as `budget_ratio` = B / N, the reward-model regime, and
    any other `RunConfig` field in `settings` (tau_v1, epochs_per_round, max_length, lr, ft_lr, ...)."""
    if regime not in REGIMES:
        raise ConfigError(f"regime {regime!r}: choose one of {REGIMES}")
    if regime == "head" and model is not None:
        raise ConfigError("--model names a backbone to fine-tune: use it with --regime full or lora (the head "
                          "regime trains a head on the shipped MiniLM's frozen features)")
    budget = 2 * n_train if budget is None else budget
    if budget < 1:
        raise ConfigError(f"budget must be >= 1 synthetic pair per round, got {budget}")
    for a in arms:
        try:
            strategies.get(a)          # a clear error for an unknown arm; registers "<arm>@ess0.5" and the like
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return RunConfig.resolve("cpu", strategies=tuple(arms), seeds=tuple(seeds), rounds=rounds,
                             budget_ratio=budget / n_train, rm=regime, rm_model=model, human_track="off",
                             pool_mode="pool", operator="paraphrase", extra_operators=(), seed_labels=False,
                             eval_every_round=False, track_curvature=regime == "head", **settings)


def _sha(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for col in ("pair_id", "prompt", "chosen", "rejected"):
        h.update("\x1f".join(df[col].astype(str)).encode("utf-8"))
    return h.hexdigest()[:16]


def _jobs(cfg: RunConfig) -> list[tuple[str, int]]:
    """Seed-major (arm, seed): a comparison stopped early leaves whole seeds of every arm (a paired design)."""
    return [(a, s) for s in cfg.seeds for a in cfg.strategies]


def _job_file(out: Path, arm: str, seed: int) -> Path:
    return out / "jobs" / f"per_pair_{arm}_seed{seed}.parquet"


def _history_file(job_file: Path) -> Path:
    return job_file.with_name(job_file.name.replace("per_pair_", "history_").replace(".parquet", ".csv"))


def _text_pairs(df: pd.DataFrame) -> Pairs:
    """Pairs without features (what a fine-tuned RM and the paraphrase pool's builder read: the text)."""
    z = np.zeros((len(df), 0), np.float32)
    return Pairs(df.reset_index(drop=True), z, z)


def _claim_folder(out: Path, cfg: RunConfig, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Write `compare.json`, or check that the folder's comparison is this one (else refuse to mix)."""
    key = {"config": cfg.to_dict(), "train_sha256": _sha(train), "test_sha256": _sha(test)}
    key = json.loads(json.dumps(key, default=str))
    path = out / "compare.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old["config"]) | set(key["config"]) if old["config"].get(k) != key["config"].get(k))
        if diff or old["train_sha256"] != key["train_sha256"] or old["test_sha256"] != key["test_sha256"]:
            what = f"settings {diff}" if diff else "data"
            raise DataError(f"{out} holds another comparison (its {what} differ from this one's): pass a new --out, "
                            "or delete the folder to start again")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, key)


def _data(cfg: RunConfig, train: pd.DataFrame, test: pd.DataFrame) -> tuple[Pairs, Pairs, Pairs]:
    """Base, test and paraphrase pool as `Pairs`: MiniLM features (cached by content) for the head regime,
    texts alone for a fine-tuned RM (it reads the text)."""
    pool = labelled_pool_frame(cfg, _text_pairs(train))
    if cfg.rm != "head":
        return _text_pairs(train), _text_pairs(test), _text_pairs(pool)
    set_offline()
    enc = encoder_for(cfg)
    return (featurize(train, enc, "features: train"), featurize(test, enc, "features: test"),
            featurize(pool, enc, "features: paraphrase pool"))


def check_sets(train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Refuse a comparison that cannot mean anything: too few held-out pairs, or the train set held out."""
    if len(test) < 2:
        raise DataError(f"the held-out set has {len(test)} pair(s): a comparison needs held-out pairs to score")
    if _sha(train) == _sha(test):
        raise DataError("the train and held-out pairs are the same set: hold out pairs the RMs do not train on")


def plan(cfg: RunConfig, train: pd.DataFrame, test: pd.DataFrame, out: Path | None = None) -> dict:
    """What a comparison will spend, before it spends it: jobs (and how many a previous run finished),
    rounds, pairs trained per round, optimizer steps and synthetic-pair texts to build and encode."""
    check_sets(train, test)
    n, b = len(train), int(round(cfg.budget_ratio * len(train)))
    jobs = _jobs(cfg)
    done = sum(_job_file(Path(out), a, s).exists() for a, s in jobs) if out is not None else 0
    per_round = {a: n + (b if strategies.get(a).adds_pairs else 0) for a in cfg.strategies}
    batch = cfg.batch_size * (cfg.grad_accum if cfg.rm != "head" else 1)
    steps = sum(-(-per_round[a] // batch) * cfg.epochs_per_round * cfg.rounds for a, _ in jobs)
    return {"jobs": len(jobs), "jobs_done": done, "arms": list(cfg.strategies), "seeds": list(cfg.seeds),
            "rounds": cfg.rounds, "train_pairs": n, "test_pairs": len(test), "budget_per_round": b,
            "pairs_per_round": per_round, "optimizer_steps": steps, "regime": cfg.rm,
            "paraphrased_texts_at_most": 2 * cfg.n_paraphrases * n + (cfg.n_paraphrases * n if cfg.paraphrase_prompt else 0),
            "texts_to_encode_at_most": (2 * n + 2 * len(test) + 2 * cfg.n_paraphrases * n) if cfg.rm == "head" else 0}


@dataclass
class Comparison:
    """What `compare` returns (and writes to its folder as CSV): `claims` (paired differences A − B with
    interval, p, p_adj, MDE and verdict; `verdicts.COLUMNS`), `accuracy` (each arm's mean with its
    interval), `concentration` (ESS/N, Gini, top-10 % share of each arm's realised budgets per round),
    `timing` (seconds per arm × seed), the per-pair outcomes and histories, and the config."""
    claims: pd.DataFrame
    accuracy: pd.DataFrame
    concentration: pd.DataFrame
    timing: pd.DataFrame
    per_pair: pd.DataFrame
    history: pd.DataFrame
    config: RunConfig
    baseline: dict | None = None    # the best arm against chance and "the longer response wins" (`api.coin_check`)
    wall_seconds: float = float("nan")   # the whole call: paraphrasing, features, training, tables


def run_jobs(cfg: RunConfig, base: Pairs, test: Pairs, pool: Pairs, out: Path | None,
             progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (arm, seed) not yet in `out/jobs/`: the rounds loop, then its per-pair outcomes and history
    (history first, per-pair last: the per-pair file marks the job done). Returns both, all jobs."""
    make = model_factory(cfg, base.phi_c.shape[1])
    jobs = _jobs(cfg)
    per_pair, hist = [], []
    bar = tqdm(total=len(jobs) * cfg.rounds, desc="arms × seeds × rounds", unit="round", disable=not progress)
    for arm, seed in jobs:
        done = _job_file(out, arm, seed) if out is not None else None
        if done is not None and done.exists():
            per_pair.append(pd.read_parquet(done))
            hist.append(pd.read_csv(_history_file(done)))
            bar.update(cfg.rounds)
            continue
        bar.set_postfix_str(f"{arm}, seed {seed}")
        t0 = time.perf_counter()
        r = run_strategy(arm, base, Sources(pool), {"test": test}, cfg.replace(seeds=(seed,)), seed, make_model=make,
                         on_round=lambda t: bar.update(1))
        h = r.history.assign(track=TRACK, rm=cfg.rm, seconds=time.perf_counter() - t0)
        pp = per_pair_outcomes({(arm, seed): r}, test, TRACK, cfg.rm)
        if done is not None:
            done.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(_history_file(done), h.to_csv(index=False))
            tmp = done.with_name(f".{done.name}.tmp")
            pp.to_parquet(tmp)
            tmp.replace(done)
        per_pair.append(pp)
        hist.append(h)
    bar.close()
    return pd.concat(per_pair, ignore_index=True), pd.concat(hist, ignore_index=True)


def tables(cfg: RunConfig, per_pair: pd.DataFrame, hist: pd.DataFrame) -> Comparison:
    """The comparison's tables from its per-pair outcomes and histories (no training)."""
    claims = claims_table(per_pair, hist, n_boot=cfg.n_boot)
    acc = strategy_intervals(per_pair, metrics=("accuracy",), n_boot=cfg.n_boot)
    train = hist[hist.split == "train"]
    conc = (train[train.metric.isin([f"alloc_{k}" for k in ("ess_over_n", "gini", "top10_share")])]
            .pivot_table(index=["strategy", "round"], columns="metric", values="value", aggfunc="mean")
            .rename(columns=lambda c: c.removeprefix("alloc_")).reset_index())
    timing = hist.groupby(["strategy", "seed"], sort=False).seconds.first().reset_index()
    return Comparison(claims, acc, conc, timing, per_pair, hist, cfg)


def compare(cfg: RunConfig, train: pd.DataFrame, test: pd.DataFrame, out: Path | None = None,
            progress: bool = True) -> Comparison:
    """Run (or resume) the comparison `cfg` on validated train / test pair tables; with `out`, every
    finished job and the final tables (claims.csv, accuracy.csv, concentration.csv, timing.csv) are
    written there."""
    check_sets(train, test)
    t0 = time.perf_counter()
    if out is not None:
        out = Path(out)
        _claim_folder(out, cfg, train, test)
    base, held, pool = _data(cfg, train, test)
    per_pair, hist = run_jobs(cfg, base, held, pool, out, progress)
    result = tables(cfg, per_pair, hist)
    result.wall_seconds = time.perf_counter() - t0
    if out is not None:
        for name in ("claims", "accuracy", "concentration", "timing"):
            atomic_write_text(out / f"{name}.csv", getattr(result, name).to_csv(index=False))
    return result


def summary(result: Comparison) -> list[str]:
    """The lines `mars compare` prints: each arm's accuracy, each accuracy claim with its verdict, the
    realised concentration per arm, and the time spent."""
    lines = ["accuracy on the held-out pairs (mean [95 % interval over test prompts and seeds]):"]
    for r in result.accuracy.itertuples():
        ci = f" [{r.lo:.3f}, {r.hi:.3f}]" if pd.notna(r.lo) else " (one seed: no interval)"
        lines.append(f"  {r.strategy:24s} {r.mean:.3f}{ci}")
    acc = result.claims[result.claims.metric == "accuracy"]
    lines.append("paired differences A − B (verdict from the Benjamini-Hochberg-adjusted p over this table; "
                 "equivalent: the interval inside ±0.01):" if len(acc) else
                 "no claims: none of these arms is registered as a baseline of another")
    for r in acc.itertuples():
        ci = f"{r.effect:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" if pd.notna(r.lo) else f"{r.effect:+.3f}"
        extra = (f" (p_adj {r.p_adj:.3f}, MDE {r.mde:.3f})" if pd.notna(r.p_adj) else f" ({r.method})")
        lines.append(f"  {r.claim}: {ci} {r.verdict}{extra}")
    c = result.concentration
    if len(c):
        late = c[c["round"] >= min(2, int(c["round"].max()))].groupby("strategy").ess_over_n.mean()
        lines.append("realised allocation, ESS/N of the budgets (1 = uniform; mean over rounds ≥ 2): "
                     + ", ".join(f"{s} {v:.2f}" for s, v in late.dropna().items()))
    lines.append(f"time: {result.wall_seconds:.0f} s in all (paraphrases, features, training, tables); "
                 f"{result.timing.seconds.sum():.0f} s of it in the {len(result.timing)} jobs' rounds loops")
    return lines
