"""HH-RLHF offline: the committed harmless-base copy, its fixed split by dialogue, and local HH files.

The committed copy `data/hh_rlhf_harmless/test.jsonl.gz` is Anthropic's harmless-base test file
(2,312 human-labelled pairs, MIT; provenance and checksums in that folder's README). It is the
`hh-rlhf` track when no `path=` is given: `load_track("hh-rlhf", split)`.

Split rule (`split_by_prompt`, seed 0, sizes `HH_SPLIT_SIZES`): the pairs are grouped by their
prompt (the dialogue prefix up to the last "\\n\\nAssistant:", `data.split_hh`), so no prompt is in
two splits. The groups are ordered by sha256(f"{seed}|{prompt}") -- a function of the text only,
not of the row order -- and each group in turn goes to the first split, in the order train, test,
val, that still has room for all of its pairs (first fit); a group that fits nowhere is left
out (`None`). Rows that cannot form a pair are skipped first and counted (on_error="skip").
The assignment is committed as `data/hh_rlhf_harmless/split.csv` (row, pair_id, prompt_id, split);
`python -m mars_lib.data.hh write-split` regenerates it and `python -m mars_lib.data.hh check` compares.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
from collections import Counter
from pathlib import Path

import pandas as pd

from mars_lib.data.pairs import DataError, _hh_frame, _read_jsonl, load_hh_jsonl
from mars_lib.pipeline.io import REPO_ROOT

HH_DIR = REPO_ROOT / "data" / "hh_rlhf_harmless"
HH_FILE = HH_DIR / "test.jsonl.gz"
HH_SPLIT_CSV = HH_DIR / "split.csv"
HH_SHA256 = "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03"
HH_ID_PREFIX = "hh-harmless-test-"
HH_SPLIT_SIZES = {"train": 1000, "test": 1000, "val": 312}   # filled in this order; val takes any shortfall
HH_SPLIT_SEED = 0
SPLITS = ("train", "val", "test")


def split_by_prompt(prompts, sizes=None, seed: int = HH_SPLIT_SEED) -> list[str | None]:
    """The split of each pair (a list aligned with `prompts`), whole prompts per split (module doc).

    sizes: {split: number of pairs}, filled in the mapping's order (default `HH_SPLIT_SIZES`: train
    1000, test 1000, val 312). A value may also be a fraction in (0, 1) of all pairs (rounded), or
    None for "all the rest". Pairs beyond the sizes get None.
    """
    prompts = list(prompts)
    sizes = dict(HH_SPLIT_SIZES if sizes is None else sizes)
    if not sizes or any(k not in SPLITS for k in sizes):
        raise ValueError(f"split_sizes must map some of {SPLITS} to sizes, got {sizes!r}")
    cap = {}
    for k, v in sizes.items():
        if v is None:
            cap[k] = len(prompts)
        elif isinstance(v, float) and 0 < v < 1:
            cap[k] = round(v * len(prompts))
        elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            cap[k] = v
        else:
            raise ValueError(f"split size of {k!r} must be a count >= 0, a fraction in (0, 1) or None, got {v!r}")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    order = sorted(groups, key=lambda p: hashlib.sha256(f"{seed}|{p}".encode("utf-8")).hexdigest())
    out: list[str | None] = [None] * len(prompts)
    filled = Counter()
    for p in order:
        idx = groups[p]
        for k in sizes:
            if filled[k] + len(idx) <= cap[k]:
                filled[k] += len(idx)
                for i in idx:
                    out[i] = k
                break
    return out


def _select(df: pd.DataFrame, split: str, limit: int | None) -> pd.DataFrame:
    if split != "all" and split not in SPLITS:
        raise DataError(f"hh-rlhf split must be one of {SPLITS} or 'all', got {split!r}")
    out = df if split == "all" else df[df.split == split]
    out = out.head(limit) if limit is not None else out
    out = out.reset_index(drop=True)
    out.attrs = dict(df.attrs)
    out.attrs["counts"] = {s: int((df.split == s).sum()) for s in SPLITS}
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def harmless_pairs(on_error: str = "skip") -> pd.DataFrame:
    """Every pair of the committed copy (after its checksum is verified), with `split` computed by
    `split_by_prompt` (seed 0, HH_SPLIT_SIZES). The skipped rows are in df.attrs["skipped"]."""
    if not HH_FILE.exists():
        raise DataError(f"the committed HH-RLHF copy {HH_FILE} is missing (it is part of the repository)")
    got = _sha256(HH_FILE)
    if got != HH_SHA256:
        raise DataError(f"{HH_FILE}: sha256 {got} != {HH_SHA256} (README); the committed copy was modified")
    df = load_hh_jsonl(HH_FILE, on_error=on_error, id_prefix=HH_ID_PREFIX)
    df["split"] = split_by_prompt(df.prompt)
    df.attrs["unassigned"] = int(df.split.isna().sum())
    return df[df.split.notna()].reset_index(drop=True) if df.attrs["unassigned"] else df


def split_table(df: pd.DataFrame) -> str:
    """split.csv's text: one line per pair (row in the file, pair_id, prompt_id, split), by row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "pair_id", "prompt_id", "split"])
    for r in df.itertuples():
        w.writerow([int(r.pair_id[len(HH_ID_PREFIX):]), r.pair_id, r.prompt_id, r.split])
    return buf.getvalue()


def load_harmless(split: str = "all", on_error: str = "skip", limit: int | None = None) -> pd.DataFrame:
    """The `hh-rlhf` track offline: pairs of the committed copy in `split` (train / val / test / all).

    The split is computed (`harmless_pairs`) and checked against the committed `split.csv`: they
    must agree pair for pair, else a DataError says to regenerate it. Pairs per split in
    df.attrs["counts"]; skipped rows in df.attrs["skipped"].
    """
    df = harmless_pairs(on_error)
    if not HH_SPLIT_CSV.exists():
        raise DataError(f"{HH_SPLIT_CSV} is missing; regenerate it with python -m mars_lib.data.hh write-split")
    table = pd.read_csv(HH_SPLIT_CSV, dtype=str)
    if dict(zip(table.pair_id, table.split)) != dict(zip(df.pair_id, df.split)):
        raise DataError(f"{HH_SPLIT_CSV} does not agree with the split computed from {HH_FILE.name} "
                        f"(on_error={on_error!r}); regenerate it with python -m mars_lib.data.hh write-split")
    df.attrs["split_file"] = str(HH_SPLIT_CSV)
    return _select(df, split, limit)


def load_hh_file(path, split: str = "all", on_error: str = "skip", limit: int | None = None,
                 split_seed: int | None = None, split_sizes=None) -> pd.DataFrame:
    """One local HH .jsonl[.gz] file as the `hh-rlhf` track: a file never serves as both train and test.

    - rows with a `split` field ("train" / "val" / "test"): that field is the split (a row without a
      valid one is a row error under `on_error`);
    - otherwise only on request: `split_seed` (and optionally `split_sizes`, default HH_SPLIT_SIZES)
      applies `split_by_prompt` to the pairs of the file; pairs beyond the sizes are dropped and
      counted in df.attrs["unassigned"];
    - otherwise a DataError says how to provide a split.
    """
    if not Path(path).exists():
        raise DataError(f"path {path} does not exist")
    rows = _read_jsonl(Path(path))
    has_split = any("split" in rec for _, rec in rows)
    asked = split_seed is not None or split_sizes is not None
    if has_split and asked:
        raise DataError(f"{path}: the rows have a 'split' field; drop split_seed / split_sizes or the field")
    if not has_split and not asked:
        raise DataError(
            f"{path}: one HH file has no train/test split, and the same pairs must not be trained and "
            "tested on. Give a split: (a) a folder in the hub's layout (train.jsonl.gz and test.jsonl.gz), "
            "(b) a 'split' field ('train' / 'val' / 'test') on every row, or (c) ask for the seeded split "
            "by prompt: load_track('hh-rlhf', split, path=..., split_seed=0[, split_sizes={'train': n, "
            "'test': m, 'val': k}]).")
    df = _hh_frame(rows, Path(path), "hh-", on_error, None, SPLITS if has_split else None)
    if asked:
        df["split"] = split_by_prompt(df.prompt, split_sizes, HH_SPLIT_SEED if split_seed is None else split_seed)
        df.attrs["unassigned"] = int(df.split.isna().sum())
        df = df[df.split.notna()]
    return _select(df, split, limit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mars_lib.data.hh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("write-split", "check"))
    ap.add_argument("--out", default=str(HH_SPLIT_CSV))
    args = ap.parse_args(argv)
    df = harmless_pairs()
    text = split_table(df)
    counts = df.split.value_counts().to_dict()
    print(f"pairs {len(df)}, skipped {df.attrs['skipped']}, unassigned {df.attrs['unassigned']}, "
          f"prompts {df.prompt_id.nunique()}, splits {counts}")
    if args.command == "write-split":
        Path(args.out).write_text(text, encoding="utf-8", newline="")
        print(f"wrote {args.out} (sha256 {hashlib.sha256(text.encode()).hexdigest()})")
        return 0
    same = Path(args.out).exists() and Path(args.out).read_text(encoding="utf-8") == text
    print(f"{args.out}: {'matches' if same else 'DIFFERS from'} the recomputed split")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
