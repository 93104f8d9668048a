"""RewardBench (Lambert et al. 2024, `allenai/reward-bench`): pairs, section scores, two protocols.

Rows (hub splits `raw` and `filtered`): id, prompt, chosen, rejected (str), subset (str), plus model
names and counts (ignored). A pair is correct when r(chosen) > r(rejected) (strict; ties wrong).

Sections (RewardBench's own mapping, SECTIONS): Chat, Chat Hard, Safety, Reasoning. Subsets not in
the mapping (the `raw` split has a few extra ones) are kept in the pair table with section NaN and
left out of every section score.

Two ways to score, both here:
- `section_scores(..., weighting="official")` — RewardBench's leaderboard rule: a section's score is
  the mean of its subset accuracies weighted by subset size, except that math-prm is weighted as
  much as all six hep-* code subsets together (its real size is 447; RewardBench's EXAMPLE_COUNTS
  gives it 984 = 6 × 164). Weights are computed from the data, so the rule holds on any copy.
- `authors_protocol(...)` — the MARS v2 evaluation notebook [C2] (docs/method.md §4.5): on the `raw`
  split, per seed (188, 144) a stratified 500-example subset, proportional to subset sizes with at
  least one per subset; accuracy per subset; section = subset-size-weighted mean (size in the
  subsample); Core = unweighted mean of the 4 sections; mean ± population std over the seeds.
  How the authors rounded the stratum sizes is not recoverable [INF]: here largest remainder.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from mars_lib.data.pairs import DataError
from mars_lib.reward_models.features import featurize

HUB_ID = "allenai/reward-bench"
SECTIONS = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
SECTION_OF = {s: sec for sec, subs in SECTIONS.items() for s in subs}
AUTHORS_SEEDS = (188, 144)


def rewardbench_pairs(rows, where: str = HUB_ID, limit: int | None = None) -> pd.DataFrame:
    """Rows of allenai/reward-bench (a datasets.Dataset, list of dicts or DataFrame) -> pairs.

    Columns: prompt, chosen, rejected, pair_id (the row's `id`, else rb-<n>), source_id, origin,
    subset, section. Rows with a missing or empty text, or chosen == rejected, are skipped and
    counted in attrs["skipped"] (and printed); duplicates are kept, as RewardBench scores every row.
    A table without a `subset` column is an error naming the columns it has."""
    recs = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    out, skipped = [], Counter()
    for n, r in enumerate(recs, start=1):
        if limit is not None and len(out) >= limit:
            break
        if "subset" not in r:
            raise ValueError(f"{where}, row {n}: no 'subset' field (have {sorted(r)}); is this RewardBench?")
        p, c, j = r.get("prompt"), r.get("chosen"), r.get("rejected")
        if not all(isinstance(t, str) and t.strip() for t in (p, c, j)):
            skipped["missing or empty text"] += 1
            continue
        if c == j:
            skipped["chosen == rejected"] += 1
            continue
        pid = f"rb-{r['id']}" if r.get("id") is not None else f"rb-{n}"
        out.append({"prompt": p, "chosen": c, "rejected": j, "pair_id": pid, "source_id": pid, "origin": "original",
                    "subset": r["subset"], "section": SECTION_OF.get(r["subset"])})
    if not out:
        raise ValueError(f"{where}: no usable RewardBench rows ({dict(skipped) or 'empty'})")
    df = pd.DataFrame(out)
    df.attrs["skipped"] = dict(skipped)
    if skipped:
        print(f"[rewardbench] {where}: kept {len(df)} pairs, skipped {sum(skipped.values())}: {dict(skipped)}")
    return df


def load_rewardbench(path_or_id: str = HUB_ID, split: str = "filtered", limit: int | None = None) -> pd.DataFrame:
    """`datasets.load_dataset(path_or_id, split=split)` -> `rewardbench_pairs`. path_or_id is the hub
    id or a local folder / data files in the hub's format. A failure (hub unreachable, offline
    mode, missing split) raises a DataError that says what failed."""
    import os

    is_local = os.path.exists(path_or_id)
    if not is_local and (os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise DataError(f"RewardBench: cannot load {path_or_id!r} [{split}]: the hub is disabled in this process "
                        "(HF_*_OFFLINE=1, the offline profiles). Give a local copy (rewardbench=<folder>) or set "
                        "rewardbench=None to skip it.")
    try:
        from datasets import load_dataset
        rows = load_dataset(path_or_id, split=split)
    except Exception as e:  # network, missing split, auth
        raise DataError(f"RewardBench: cannot load {path_or_id!r} [{split}] ({type(e).__name__}: {e}). Give a local "
                        "copy (rewardbench=<folder>) or set rewardbench=None to skip it.") from None
    return rewardbench_pairs(rows, where=f"{path_or_id}[{split}]", limit=limit)


def subset_weights(counts: dict[str, int], weighting: str = "official") -> dict[str, float]:
    """Weight of each subset inside its section: its size ("size"), or RewardBench's rule ("official":
    math-prm counts as much as all hep-* subsets present together)."""
    if weighting not in ("official", "size"):
        raise ValueError(f"weighting must be 'official' or 'size', got {weighting!r}")
    w = {s: float(n) for s, n in counts.items()}
    if weighting == "official" and "math-prm" in w:
        code = sum(n for s, n in counts.items() if s.startswith("hep-"))
        if code:
            w["math-prm"] = float(code)
    return w


def section_scores(subsets, correct, weighting: str = "official") -> dict[str, float]:
    """Accuracy per section (subset accuracies weighted by `subset_weights`) and Core (their
    unweighted mean over the sections present). subsets: [N] names; correct: [N] bools."""
    df = pd.DataFrame({"subset": np.asarray(subsets), "correct": np.asarray(correct, dtype=float)})
    df = df[df.subset.isin(SECTION_OF)]
    acc, counts = df.groupby("subset").correct.mean(), df.groupby("subset").size()
    w = subset_weights(counts.to_dict(), weighting)
    out = {}
    for sec, subs in SECTIONS.items():
        present = [s for s in subs if s in acc.index]
        if present:
            out[sec] = float(sum(acc[s] * w[s] for s in present) / sum(w[s] for s in present))
    out["Core"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


def stratified_sample(subsets, size: int = 500, seed: int = 188) -> np.ndarray:
    """Row positions of a stratified sample: `size` rows proportional to subset sizes, at least one
    per subset (largest-remainder rounding), drawn without replacement with `seed`."""
    s = pd.Series(np.asarray(subsets))
    counts = s.value_counts().sort_index()
    if size >= len(s):
        return np.arange(len(s))
    quota = counts / counts.sum() * size
    n = np.maximum(1, np.floor(quota)).astype(int)
    rest = size - n.sum()
    if rest > 0:
        order = (quota - np.floor(quota)).sort_values(ascending=False, kind="stable").index
        for name in list(order)[:rest]:
            n[name] += 1
    n = np.minimum(n, counts)
    rng = np.random.default_rng(seed)
    pos = [rng.choice(np.flatnonzero(s.to_numpy() == name), size=int(k), replace=False) for name, k in n.items()]
    return np.sort(np.concatenate(pos))


def authors_protocol(subsets, reward_gap, seeds=AUTHORS_SEEDS, size: int = 500) -> pd.DataFrame:
    """The v2 notebook's RewardBench numbers [C2]: per seed a stratified subset, section scores
    (size-weighted), Core; then mean and population std over seeds. Rows: section, mean, std, seeds."""
    subsets, correct = np.asarray(subsets), np.asarray(reward_gap) > 0
    per = pd.DataFrame([section_scores(subsets[idx], correct[idx], weighting="size")
                        for idx in (stratified_sample(subsets, size, s) for s in seeds)])
    return pd.DataFrame({"section": per.columns, "mean": per.mean().to_numpy(), "std": per.std(ddof=0).to_numpy(),
                         "seeds": len(seeds), "subsample": size})


def rewardbench_eval(ctx, models: dict, trained_on: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every reward model on RewardBench (cfg.rewardbench: hub id or local copy; mars_lib.evaluation.rewardbench).

    Ours: the whole `filtered` split, section scores with RewardBench's official weighting, per
    (strategy, seed). The authors' [C2]: the `raw` split, two stratified 500-pair subsamples (seeds
    188, 144), size-weighted sections, mean ± population std over the subsamples.
    Returns (ours, authors) as tidy tables with columns strategy, seed, trained_on, section, ..."""
    cfg = ctx.cfg
    # featurized like every evaluation set (cached by content), so both RM kinds score through pair_scores
    data = {split: featurize(load_rewardbench(cfg.rewardbench, split), ctx.encoder, desc=f"features: RewardBench {split}")
            for split in ("filtered", "raw")}
    rows_a, rows_o = [], []
    for (s, seed), m in models.items():
        df = data["filtered"].df
        rc, rr = m.pair_scores(data["filtered"])
        for sec, v in section_scores(df.subset, rc > rr).items():
            rows_o.append({"strategy": s, "seed": seed, "trained_on": trained_on, "section": sec, "value": v,
                           "pairs": int(df.section.eq(sec).sum()) if sec != "Core" else int(df.section.notna().sum())})
        rc, rr = m.pair_scores(data["raw"])
        rows_a.append(authors_protocol(data["raw"].df.subset, rc - rr).assign(strategy=s, seed=seed, trained_on=trained_on))
    return pd.DataFrame(rows_o), pd.concat(rows_a, ignore_index=True)
