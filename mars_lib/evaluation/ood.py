"""Out-of-distribution evaluation of reward models, offline: LLMBar and MT-Bench human judgments.

Data (`data/llmbar/`, committed; README there): the five LLMBar subsets (Zeng et al., ICLR 2024),
the same 419 items as RewardBench's `llmbar-*` subsets of its Chat Hard section, and LLMBar's
processed MT-Bench human judgments (200 items: expert majority vote, ties already removed by the
source). Every file is a JSON list of {input, output_1, output_2, label}, label 1 or 2 naming the
better output. The loader verifies each file's sha256 against the README of its folder, validates
every row (a malformed file raises `data.DataError`, a ValueError naming the file, the row and the
problem) and gives one row per distinct (prompt, unordered pair of responses): a pair listed more
than once is kept once, with its majority label; a split vote drops it (counted in
df.attrs["skipped"]). On the committed files this drops 5 MT-Bench items listed twice in swapped
order (each time with the same winner): 419 LLMBar rows + 195 MT-Bench human rows.

Method (RewardBench's, Lambert et al. 2024): each reward model scores r(x, chosen) and
r(x, rejected); a pair is correct when r(chosen) > r(rejected) strictly (ties count as wrong).
Per model and subset: n, correct, ties, accuracy and a 95 % Wilson score interval. Per model and
section: RewardBench's section rule (`rewardbench.subset_weights`, which for these subsets weights
each subset accuracy by its size), so the LLMBar section accuracy equals the accuracy over all its
419 pairs and gets the Wilson interval of that pooled count; the unweighted mean of the five
subset accuracies is given beside it (`unweighted_mean`). The MT-Bench human section is its one
subset. Wilson intervals treat pairs as independent draws given the model: they cover the choice
of pairs, not training seeds, and MT-Bench human's 195 pairs share 75 questions, so its interval
is narrower than a question-clustered one would be (`score_ood` keeps a `cluster` column, the
prompt id, for clustered intervals over prompts and seeds with `mars_lib.evaluation.stats`).

Scoring is batched: the features of all OOD texts are computed once through the encoder's
content cache (`features.featurize`), then each model scores every pair with `pair_scores`. The
encoder truncates long inputs from the left (`features.Encoder`), so two responses that differ only
in their first tokens can get the same features and tie (counted wrong, and in `ties`).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from mars_lib.data.pairs import DataError, prompt_id
from mars_lib.evaluation.rewardbench import subset_weights
from mars_lib.evaluation.stats import norm_quantile
from mars_lib.pipeline.io import REPO_ROOT
from mars_lib.reward_models.features import Pairs, featurize

OOD_DIR = REPO_ROOT / "data" / "llmbar"
# file name -> (subset, section); subset names follow RewardBench's
FILES = {
    "LLMBar_Natural.json": ("llmbar-natural", "LLMBar"),
    "LLMBar_Adversarial_Neighbor.json": ("llmbar-adver-neighbor", "LLMBar"),
    "LLMBar_Adversarial_GPTInst.json": ("llmbar-adver-GPTInst", "LLMBar"),
    "LLMBar_Adversarial_GPTOut.json": ("llmbar-adver-GPTOut", "LLMBar"),
    "LLMBar_Adversarial_Manual.json": ("llmbar-adver-manual", "LLMBar"),
    "MT-Bench_human.json": ("mt-bench-human", "MT-Bench human"),
}
SUBSETS = tuple(s for s, _ in FILES.values())
SECTIONS = {"LLMBar": SUBSETS[:5], "MT-Bench human": SUBSETS[5:]}
KEYS = ("input", "output_1", "output_2", "label")
COLUMNS = ("subset", "section", "prompt", "chosen", "rejected", "pair_id", "source_id", "origin", "prompt_id")
LEVEL = 0.95
INTERVAL = "wilson95"


# ----------------------------------------------------------------------------- loading
def readme_sha256(folder: Path) -> dict[str, str]:
    """{file name: sha256} listed in folder/README.md (a line naming `file` and a `<64 hex>` digest);
    {} when the folder has no README."""
    readme = Path(folder) / "README.md"
    if not readme.exists():
        return {}
    out = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        m = re.search(r"`([^`]+)`.*`([0-9a-f]{64})`", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _check_sha256(path: Path, listed: dict[str, str], required: bool) -> None:
    want = listed.get(path.name)
    if want is None:
        if required:
            raise DataError(f"{path}: {path.parent / 'README.md'} lists no sha256 for {path.name}")
        return
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != want:
        raise DataError(f"{path}: sha256 {got} != {want} (README.md); the file was modified")


def _read_items(path: Path) -> list:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty (expected a JSON list of items with keys {', '.join(KEYS)})")
    try:
        items = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {raw[e.start]:#x} at offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of items, got a JSON {type(items).__name__}")
    if not items:
        raise DataError(f"{path}: the list has no items")
    return items


def check_item(item, path, row: int) -> None:
    """Raise DataError for a malformed LLMBar item. Rows are numbered from 1 (position in the list)."""
    where = f"{path}, row {row}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object with keys {', '.join(KEYS)}, got {type(item).__name__}")
    missing = [k for k in KEYS if k not in item]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)} (need {', '.join(KEYS)}; "
                        f"got {', '.join(map(str, item)) or 'none'})")
    for k in KEYS[:3]:
        v = item[k]
        if not isinstance(v, str):
            raise DataError(f"{where}: '{k}' must be text, got {type(v).__name__} {v!r:.40}")
        if not v.strip():
            raise DataError(f"{where}: '{k}' is empty or whitespace")
    lab = item["label"]
    if isinstance(lab, bool) or not isinstance(lab, int) or lab not in (1, 2):
        raise DataError(f"{where}: 'label' must be the integer 1 or 2 (which output is better), got {lab!r}")
    if item["output_1"].strip() == item["output_2"].strip():
        raise DataError(f"{where}: output_1 == output_2 (a pair needs two different responses)")


def read_llmbar_file(path: str | Path, subset: str, section: str) -> pd.DataFrame:
    """One LLMBar-format file -> pair rows (no checksum here): validated, one row per distinct
    (prompt, unordered responses) with its majority label; split votes dropped and counted."""
    path = Path(path)
    items = _read_items(path)
    groups: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
    for row, item in enumerate(items, start=1):
        check_item(item, path, row)
        key = (item["input"], frozenset((item["output_1"], item["output_2"])))
        groups[key].append((row, item["output_1"] if item["label"] == 1 else item["output_2"]))
    out, skipped = [], Counter()
    for (prompt, outs), votes in groups.items():
        tally = Counter(w for _, w in votes).most_common()
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            skipped["split vote between listings (dropped)"] += len(votes)
            continue
        if len(votes) > 1:
            skipped["listed again (kept once)"] += len(votes) - 1
        chosen = tally[0][0]
        (rejected,) = outs - {chosen}
        pid = f"{subset}-{votes[0][0]}"
        out.append({"subset": subset, "section": section, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                    "pair_id": pid, "source_id": pid, "origin": "original", "prompt_id": prompt_id(prompt)})
    if not out:
        raise DataError(f"{path}: no usable pairs ({dict(skipped)})")
    df = pd.DataFrame(out, columns=list(COLUMNS))
    df.attrs["skipped"] = dict(skipped)
    return df


def _sources(name_or_path) -> list[tuple[Path, bool]]:
    """(file, checksum required) for every file `load_ood` reads."""
    if name_or_path is None:
        return [(OOD_DIR / f, True) for f in FILES]
    key = str(name_or_path)
    if key in SUBSETS or key in SECTIONS:
        subs = SECTIONS.get(key, (key,))
        return [(OOD_DIR / f, True) for f, (s, _) in FILES.items() if s in subs]
    path = Path(name_or_path)
    if path.is_dir():
        return [(path / f, path.resolve() == OOD_DIR) for f in FILES]
    if path.is_file():
        if path.name not in FILES:
            raise DataError(f"{path}: unknown file name; an OOD file is one of {', '.join(FILES)}")
        return [(path, path.parent.resolve() == OOD_DIR)]
    raise DataError(f"{name_or_path!r} is neither an OOD subset ({', '.join(SUBSETS)}), a section "
                    f"({', '.join(SECTIONS)}), nor an existing file or folder")


def load_ood(name_or_path: str | Path | None = None) -> pd.DataFrame:
    """The OOD pairs: columns subset, section, prompt, chosen, rejected, pair_id (plus source_id, origin,
    prompt_id). name_or_path: None (all six committed files), a subset or section name (from the
    committed files), a folder holding the six files, or one file named as in `FILES`.
    A file's sha256 is checked against the README.md of its folder (required for the committed
    folder; elsewhere checked when the README lists the file). Rows skipped by the duplicate rule
    are counted per file in df.attrs["skipped"]."""
    frames, skipped = [], {}
    for path, required in _sources(name_or_path):
        if not path.exists():
            raise DataError(f"{path}: missing (an OOD folder holds {', '.join(FILES)})")
        _check_sha256(path, readme_sha256(path.parent), required)
        subset, section = FILES[path.name]
        df = read_llmbar_file(path, subset, section)
        if df.attrs["skipped"]:
            skipped[path.name] = df.attrs["skipped"]
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["skipped"] = skipped
    return out


# ----------------------------------------------------------------------------- scoring
def wilson_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion correct / n (NaNs for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    z = norm_quantile(0.5 + level / 2)
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _names(key) -> tuple[str, str, object]:
    """(model, strategy, seed) of a models-dict key: a name, or a (strategy, seed) tuple."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}/seed{key[1]}", str(key[0]), key[1]
    return str(key), str(key), pd.NA


def score_ood(models: dict, encoder, df: pd.DataFrame, desc: str = "features: OOD") -> pd.DataFrame:
    """Every model scores every OOD pair. models: {name or (strategy, seed): RewardModel}; encoder: the
    `features.Encoder` whose features head models read (None when every model reads texts only).
    One row per (model, pair): model, strategy, seed, pair_id, cluster (prompt id), subset, section,
    r_chosen, r_rejected, correct (strict), tie. Non-finite scores are an error naming the model."""
    missing = [c for c in ("subset", "section", "prompt", "chosen", "rejected", "pair_id") if c not in df]
    if missing:
        raise ValueError(f"OOD table lacks column(s) {missing}; build it with load_ood")
    if not models or df.empty:
        raise ValueError(f"nothing to evaluate: {len(models)} model(s), {len(df)} pair(s)")
    if encoder is None:          # texts only: a model that reads encoder features fails below, with the fix named
        empty = np.zeros((len(df), 0), np.float32)
        pairs = Pairs(df.reset_index(drop=True), empty, empty)
    else:
        pairs = featurize(df, encoder, desc=desc)
    d = pairs.df
    cluster = d.prompt_id.astype(str) if "prompt_id" in d else d.prompt.map(prompt_id)
    frames = []
    for key, m in models.items():
        model, strategy, seed = _names(key)
        try:
            rc, rr = (np.asarray(x, dtype=np.float64).reshape(-1) for x in m.pair_scores(pairs))
        except (RuntimeError, ValueError, IndexError) as e:
            if encoder is not None:
                raise
            raise ValueError(f"model {model} could not score the pairs from their texts alone ({e}); a model that "
                             "reads encoder features (a head RM) needs them: pass the encoder") from e
        if rc.shape != (len(d),) or rr.shape != (len(d),):
            raise ValueError(f"model {model}: pair_scores gave shapes {rc.shape}, {rr.shape} for {len(d)} pairs")
        bad = int((~np.isfinite(rc)).sum() + (~np.isfinite(rr)).sum())
        if bad:
            raise ValueError(f"model {model}: {bad} non-finite score(s) on the OOD pairs")
        frames.append(pd.DataFrame({"model": model, "strategy": strategy, "seed": seed, "pair_id": d.pair_id.to_numpy(),
                                    "cluster": cluster.to_numpy(), "subset": d.subset.to_numpy(),
                                    "section": d.section.to_numpy(), "r_chosen": rc, "r_rejected": rr,
                                    "correct": rc > rr, "tie": rc == rr}))
    return pd.concat(frames, ignore_index=True)


def _row(model, strategy, seed, level, section, subset, correct: int, n: int, ties: int, **extra) -> dict:
    lo, hi = wilson_interval(correct, n)
    return {"model": model, "strategy": strategy, "seed": seed, "level": level, "section": section, "subset": subset,
            "n": n, "correct": correct, "ties": ties, "accuracy": correct / n if n else float("nan"),
            "lo": lo, "hi": hi, "interval": INTERVAL, **extra}


def ood_accuracy(per_pair: pd.DataFrame) -> pd.DataFrame:
    """Strict accuracy per model × subset (level "subset") and per model × section (level "section",
    subset "all": RewardBench's size-weighted section rule = the pooled accuracy, plus the unweighted
    mean of its subset accuracies), each with n, correct, ties and a 95 % Wilson interval."""
    rows = []
    for (model, strategy), g in per_pair.groupby(["model", "strategy"], sort=False):
        seed = g.seed.iloc[0]
        stats = g.groupby("subset", sort=False).agg(n=("correct", "size"), correct=("correct", "sum"),
                                                    ties=("tie", "sum"), section=("section", "first"))
        for sub, s in stats.iterrows():
            rows.append(_row(model, strategy, seed, "subset", s.section, sub, int(s.correct), int(s.n), int(s.ties)))
        for section, secg in stats.groupby("section", sort=False):
            w = subset_weights(secg.n.to_dict(), "official")      # RewardBench's rule: here the subset sizes
            acc = secg.correct / secg.n
            r = _row(model, strategy, seed, "section", section, "all", int(secg.correct.sum()), int(secg.n.sum()),
                     int(secg.ties.sum()), unweighted_mean=float(acc.mean()), n_subsets=len(secg))
            r["accuracy"] = float(sum(acc[s] * w[s] for s in secg.index) / sum(w.values()))   # == correct / n
            rows.append(r)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figure


