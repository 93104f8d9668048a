"""Does a gold judge agree with people? Pairwise agreement of the old and the new judge with human labels.

Data (both offline; `load_human_pairs`):
- "mt-bench-human": MT-Bench human judgments (LLMBar's processed copy, expert majority vote, ties removed),
  via `mars_lib.evaluation.ood.load_ood` (195 distinct pairs over 75 questions); chosen = the experts' winner.
- "chitchat": the chitchat track (`tracks.chitchat_pairs`, every split): two human conversations from the
  same starter prompt whose summed human ratings differ by >= 6; chosen = the higher rated. A seeded sample
  of `chitchat_pairs` pairs (default 400 of 2,040) keeps the cost small.

Method. A judge (or one facet alone) scores both responses of a pair; every response is judged with
finished=False (completeness from the text's own ending, as no EOS flag exists for human data). The pair
counts 1 when the judge's score of the human-preferred response is higher, 0 when lower, and 1/2 on a tie
(equal to 1e-12); `agreement` is the mean of that, and `n_ties` says how many ties it contains (strict
agreement = agreement - n_ties / (2 n_pairs)). Single facets with few distinct values (complete) tie often.
95 % intervals: percentile bootstrap over pairs (`lo`, `hi`, 2,000 resamples, seeded) and, since pairs
share prompts (75 questions; 34 chitchat starters), a bootstrap over prompts (`lo_by_prompt`, `hi_by_prompt`).

Weights. "fixed" = the judges' own weights (judge.WEIGHTS, equal for both judges). "tuned on D" = weights
fitted on data set D by a logistic regression of the human label on the facet differences
(chosen - rejected), no intercept, weights constrained >= 0 (projected gradient, L2 1e-3), rescaled to sum
to 9.5 like the fixed weights; evaluated on the other data set (out of sample) and on D itself
(in sample, `in_sample` True, optimistic).

    python -m mars_lib.judges.agreement --out results/01_margins/judge_human_agreement.csv

Committed judgments. Judging these 1,190 long human texts (MT-Bench answers run to 1,000+ tokens) is
the largest cold cost of notebook 01 (`bench/stage_memory.py` times it per text), too much for the
cpu profile's cold budget. Like the task's gold labels, the facets are therefore committed, with a
manifest and the command that rebuilds them (`data/judge_human/`):

    python -m mars_lib.judges.agreement --build-facets

`compute` reads a pair's facets from that file when the judge id matches and the sha256 of the pair's
texts equals the recorded one; any other pair (other data, another judge version) is judged (cached by
content). `tests/test_judge_agreement.py` re-judges a sample of committed rows and checks they agree.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mars_lib.data.tracks import chitchat_pairs as load_chitchat
from mars_lib.evaluation.ood import load_ood
from mars_lib.judges.gold1 import FACETS, JUDGE_ID, WEIGHTS, GoldJudge
from mars_lib.judges.gold3 import JUDGE_ID as JUDGE3_ID
from mars_lib.judges.gold3 import GoldJudge3
from mars_lib.pipeline.assets import sha256_file
from mars_lib.pipeline.io import (
    REPO_ROOT,
    atomic_write_json,
    repo_relative,
    write_parquet,
)
from mars_lib.pipeline.tables import save_table

FACETS_DIR = REPO_ROOT / "data" / "judge_human"
FACETS_FILE, FACETS_MANIFEST = "facets.parquet", "facets.json"
JUDGES = {"old": ("old (SmolLM2 + MiniLM)", JUDGE_ID), "new": ("new (Gemma-3-270M + mpnet)", JUDGE3_ID)}  # name, id

DATASETS = ("mt-bench-human", "chitchat")
TIE = 1e-12
COLUMNS = ("judge", "judge_id", "facet", "dataset", "weights_tuned_on", "in_sample", "n_pairs", "n_ties",
           "agreement", "lo", "hi", "lo_by_prompt", "hi_by_prompt", "weights")


# ----------------------------------------------------------------------------- data

def _read_mtbench_human() -> pd.DataFrame:
    """Fallback used only when `mars_lib.evaluation.ood` is absent: the MT-Bench human file read directly
    (label 1/2 = which output people preferred), without ood's checksum and duplicate rules."""
    root = REPO_ROOT / "data" / "llmbar" / "MT-Bench_human.json"
    items = json.loads(root.read_text(encoding="utf-8"))
    rows = [{"prompt": it["input"], "chosen": it[f"output_{it['label']}"], "rejected": it[f"output_{3 - it['label']}"],
             "pair_id": f"mtbh-{i}", "cluster": it["input"]} for i, it in enumerate(items)]
    return pd.DataFrame(rows)


def load_human_pairs(dataset: str, chitchat_pairs: int | None = 400, seed: int = 0,
                     mtbench_pairs: int | None = None) -> pd.DataFrame:
    """Columns prompt, chosen (human-preferred), rejected, pair_id, cluster (the prompt, for the bootstrap).
    `chitchat_pairs` / `mtbench_pairs`: a seeded sample of that many pairs (None: all); a smaller sample
    of the same seed is a subset of a larger one."""
    if dataset == "mt-bench-human":
        try:
            df = load_ood("mt-bench-human")
            df = df.assign(cluster=df.prompt_id)
        except ImportError:
            df = _read_mtbench_human()
        cap = mtbench_pairs
    elif dataset == "chitchat":
        df = load_chitchat(verbose=False)
        df = df.assign(cluster=df.prompt)
        cap = chitchat_pairs
    else:
        raise ValueError(f"unknown data set {dataset!r}; known: {DATASETS}")
    if cap is not None and cap < len(df):
        df = df.sample(n=cap, random_state=seed).sort_index()
    return df[["prompt", "chosen", "rejected", "pair_id", "cluster"]].reset_index(drop=True)


def pair_facets(judge, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Facets of the chosen and of the rejected responses, [n_pairs, 6] each (one judge call, cached)."""
    n = len(pairs)
    f = judge.facets(list(pairs.prompt) * 2, list(pairs.chosen) + list(pairs.rejected), [False] * (2 * n))
    return f.iloc[:n].reset_index(drop=True), f.iloc[n:].reset_index(drop=True)


def text_sha(prompt: str, response: str) -> str:
    import hashlib
    return hashlib.sha256(f"{prompt}\x00{response}".encode()).hexdigest()[:16]


def committed_facets(judge_id: str, dataset: str, pairs: pd.DataFrame, folder: Path = FACETS_DIR):
    """(chosen facets, rejected facets) of `pairs` from the committed file, or None when any pair is
    missing or its texts differ from the ones judged (then the caller judges)."""
    path = Path(folder) / FACETS_FILE
    if not path.exists():
        return None
    manifest = json.loads((Path(folder) / FACETS_MANIFEST).read_text())
    if sha256_file(path) != manifest["sha256"]:
        raise RuntimeError(f"{path}: sha256 differs from {FACETS_MANIFEST}; restore it with git or rebuild it with "
                           "`python -m mars_lib.judges.agreement --build-facets`")
    df = pd.read_parquet(path)
    df = df[(df.judge_id == judge_id) & (df.dataset == dataset)].set_index(["pair_id", "side"])
    out = []
    for side, col in (("chosen", "chosen"), ("rejected", "rejected")):
        keys = pd.MultiIndex.from_arrays([pairs.pair_id, [side] * len(pairs)])
        if not keys.isin(df.index).all():
            return None
        rows = df.loc[keys]
        want = [text_sha(p, r) for p, r in zip(pairs.prompt, pairs[col])]
        if list(rows.text_sha) != want:
            return None
        out.append(rows[list(FACETS)].reset_index(drop=True).astype(float))
    return tuple(out)


def build_facets(folder: Path = FACETS_DIR, judges=("old", "new"), chitchat_pairs: int = 400, seed: int = 0) -> Path:
    """Judge every pair of both data sets with both judges (cached by content) and commit the facets."""
    import time

    t0, rows, cost = time.perf_counter(), [], {}
    pairs = {ds: load_human_pairs(ds, chitchat_pairs, seed) for ds in DATASETS}
    for which in judges:
        judge, _, jid = load_judge(which)
        t = time.perf_counter()
        for ds, p in pairs.items():
            for side, f in zip(("chosen", "rejected"), pair_facets(judge, p)):
                rows.append(f.assign(judge_id=jid, dataset=ds, pair_id=p.pair_id.to_numpy(), side=side,
                                     text_sha=[text_sha(a, b) for a, b in zip(p.prompt, p[side])]))
        cost[jid] = {"seconds": round(time.perf_counter() - t, 1), "texts_judged": judge.judged}   # 0: all cached
        del judge
    df = pd.concat(rows, ignore_index=True)[["judge_id", "dataset", "pair_id", "side", "text_sha", *FACETS]]
    sha = write_parquet(df, Path(folder) / FACETS_FILE, "judge_agreement")
    atomic_write_json(Path(folder) / FACETS_MANIFEST, {
        "file": FACETS_FILE, "sha256": sha, "rows": len(df),
        "pairs": {ds: len(p) for ds, p in pairs.items()}, "judge_ids": list(cost), "chitchat_pairs": chitchat_pairs,
        "seed": seed, "judging_this_build": cost, "build_seconds": round(time.perf_counter() - t0, 1),
        "regenerate": f"python -m mars_lib.judges.agreement --build-facets --chitchat-pairs {chitchat_pairs} "
                      f"--facets-dir {repo_relative(folder)}",
        "what": "facets (judge.FACETS, each in [0, 1], finished=False) of the chosen and the rejected response of "
                "every human-labelled pair (mars_lib.judges.agreement.load_human_pairs), per judge; text_sha = "
                "sha256(prompt NUL response)[:16]"})
    return Path(folder) / FACETS_FILE


# ----------------------------------------------------------------------------- agreement

def outcomes(diff) -> np.ndarray:
    """Per pair: 1 if the judge prefers the human-preferred response (diff = chosen - rejected > 0),
    0 if it prefers the other, 1/2 on a tie."""
    d = np.asarray(diff, dtype=float)
    return np.where(np.abs(d) <= TIE, 0.5, (d > 0).astype(float))


def _boot(values: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator, level: float):
    codes, inv = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(inv, values, len(codes)), np.bincount(inv, minlength=len(codes)).astype(float)
    draw = rng.integers(0, len(codes), size=(n_boot, len(codes)))
    stats = sums[draw].sum(1) / counts[draw].sum(1)
    a = (1 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def agreement(diff, clusters=None, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """n_pairs, n_ties, agreement (ties count 1/2) and percentile-bootstrap intervals over pairs
    (lo, hi) and over clusters (lo_by_prompt, hi_by_prompt; = over pairs when clusters is None)."""
    o = outcomes(diff)
    n = len(o)
    out = {"n_pairs": n, "n_ties": int((o == 0.5).sum()), "agreement": float(o.mean()) if n else float("nan")}
    if n == 0:
        return out | {"lo": np.nan, "hi": np.nan, "lo_by_prompt": np.nan, "hi_by_prompt": np.nan}
    rng = np.random.default_rng(seed)
    out["lo"], out["hi"] = _boot(o, np.arange(n), n_boot, rng, level)
    groups = np.arange(n) if clusters is None else np.asarray(clusters)
    out["lo_by_prompt"], out["hi_by_prompt"] = _boot(o, groups, n_boot, np.random.default_rng(seed + 1), level)
    return out


def fit_weights(diff: pd.DataFrame, l2: float = 1e-3, steps: int = 5000, total: float = sum(WEIGHTS.values())
                ) -> dict[str, float]:
    """Non-negative weights w maximising the likelihood of P(chosen preferred) = sigmoid(w · diff), no
    intercept, with an L2 penalty l2/2 |w|^2; projected gradient descent from 0 (deterministic).
    Rescaled to sum to `total` (the scale changes no agreement); all zero when no facet helps."""
    X = diff[list(FACETS)].to_numpy(dtype=float)
    w = np.zeros(X.shape[1])
    lip = 0.25 * np.linalg.eigvalsh(X.T @ X / len(X)).max() + l2
    for _ in range(steps):
        p = 1 / (1 + np.exp(np.clip(X @ w, -50, 50)))          # = 1 - sigmoid(w · x)
        grad = -(X * p[:, None]).mean(0) + l2 * w
        w = np.maximum(w - grad / lip, 0.0)
    s = w.sum()
    return {k: float(total * v / s) if s > 0 else 0.0 for k, v in zip(FACETS, w)}


def agreement_table(facets: dict, clusters: dict, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tidy agreement table (COLUMNS). facets: {(judge, judge_id): {dataset: (chosen facets, rejected facets)}};
    clusters: {dataset: prompt id per pair}. Rows per judge and data set: each facet alone, all facets with
    the fixed weights, and all facets with weights tuned on each data set present."""
    rows = []
    for (name, jid), per_ds in facets.items():
        diffs = {ds: fc - fr for ds, (fc, fr) in per_ds.items()}
        tuned = {ds: fit_weights(d) for ds, d in diffs.items()}
        for ds, d in diffs.items():
            base = {"judge": name, "judge_id": jid, "dataset": ds}

            def row(facet, on, w, dd=d, b=base, ds=ds):
                score = sum(w[k] * dd[k].to_numpy(dtype=float) for k in FACETS)
                return b | {"facet": facet, "weights_tuned_on": on, "in_sample": on == ds,
                            "weights": json.dumps({k: round(v, 3) for k, v in w.items()})} | \
                    agreement(score, clusters[ds], n_boot, seed)
            for k in FACETS:
                rows.append(row(k, "single facet", {f: float(f == k) for f in FACETS}))
            rows.append(row("all", "fixed", dict(WEIGHTS)))
            for on, w in tuned.items():
                rows.append(row("all", on, w))
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ----------------------------------------------------------------------------- end to end

def load_judge(which: str):
    """("old" | "new") -> (judge, display name, judge id)."""
    if which not in JUDGES:
        raise ValueError(f"judge must be 'old' or 'new', got {which!r}")
    if which == "old":
        return GoldJudge.offline(), *JUDGES[which]
    return GoldJudge3.offline(), *JUDGES[which]


def compute(judges=("old", "new"), datasets=DATASETS, chitchat_pairs: int | None = 400, seed: int = 0,
            n_boot: int = 2000, mtbench_pairs: int | None = None) -> pd.DataFrame:
    """Facets of every pair of every data set by every judge (committed file, else judged and cached by
    content) and the agreement table. Judging cold on 2 CPU cores: tens of minutes; committed: seconds."""
    pairs = {ds: load_human_pairs(ds, chitchat_pairs, seed, mtbench_pairs) for ds in datasets}
    facets = {}
    for which in judges:
        name, jid = JUDGES[which]
        got = {ds: committed_facets(jid, ds, p) for ds, p in pairs.items()}
        if any(v is None for v in got.values()):
            judge = load_judge(which)[0]
            got = {ds: v if v is not None else pair_facets(judge, pairs[ds]) for ds, v in got.items()}
            del judge
        facets[(name, jid)] = got
    return agreement_table(facets, {ds: p.cluster.to_numpy() for ds, p in pairs.items()}, n_boot, seed)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judges", nargs="+", default=["old", "new"], choices=["old", "new"])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--chitchat-pairs", type=int, default=400)
    ap.add_argument("--mtbench-pairs", type=int, default=None)
    ap.add_argument("--out", default=None, help="CSV to write (with results.save_table); else printed only")
    ap.add_argument("--build-facets", action="store_true", help="judge every pair and commit the facets file")
    ap.add_argument("--facets-dir", type=Path, default=FACETS_DIR)
    args = ap.parse_args(argv)
    if args.build_facets:
        build_facets(args.facets_dir, tuple(args.judges), args.chitchat_pairs)
        return
    df = compute(args.judges, args.datasets, args.chitchat_pairs, mtbench_pairs=args.mtbench_pairs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns="weights").round(3).to_string(index=False))
    if args.out:
        save_table(df, args.out, config={"chitchat_pairs": args.chitchat_pairs, "mtbench_pairs": args.mtbench_pairs,
                                         "judges": args.judges})


if __name__ == "__main__":
    main()
