"""The preference-pair schema, loaders and validation (docs/design.md §5).

Schema of one pair (a row of a `datasets.Dataset` or a pandas DataFrame):
  prompt, chosen, rejected : str   the conversation prefix and the two responses
  pair_id                  : str   unique id of the pair
  source_id                : str   the original pair a synthetic one came from (== pair_id for originals)
  origin                   : str   "original" or the synthetic operator's name
  gold_chosen, gold_rejected : float, optional   gold-judge scores where a gold judge exists

Bad input gets a `DataError` naming the file, the row and the problem, never a traceback from
deep inside a library. Rows with a problem can instead be skipped (on_error="skip"), and the skip
counts are reported — never a silent drop.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import unicodedata
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from mars_lib.pipeline.io import atomic_write_text

REQUIRED = ("prompt", "chosen", "rejected")
SCHEMA = REQUIRED + ("pair_id", "source_id", "origin")
HH_SPLIT = "\n\nAssistant:"


class DataError(ValueError):
    """Malformed preference data; the message names the file, the row and the problem."""


def _where(path, row) -> str:
    return f"{path or '<data>'}, row {row}"


def check_pair(rec: dict, path=None, row=None) -> None:
    """Raise DataError for a malformed pair. Rows are numbered from 1 as a text editor shows them."""
    for col in REQUIRED:
        if col not in rec:
            raise DataError(f"{_where(path, row)}: missing column '{col}' (need {', '.join(REQUIRED)}; "
                            f"got {', '.join(map(str, rec))})")
        val = rec[col]
        if not isinstance(val, str):
            if val is None or (isinstance(val, float) and math.isnan(val)):
                raise DataError(f"{_where(path, row)}: column '{col}' is empty (null)")
            if isinstance(val, list) and all(isinstance(m, dict) and "content" in m for m in val):
                raise DataError(f"{_where(path, row)}: column '{col}' is a list of messages (TRL's conversational "
                                "format); give text: the prompt as the conversation so far and chosen / rejected as the "
                                "last assistant message's content (e.g. chosen = row['chosen'][-1]['content'])")
            raise DataError(f"{_where(path, row)}: column '{col}' must be text, got {type(val).__name__}")
        if col != "prompt" and not val.strip():
            raise DataError(f"{_where(path, row)}: column '{col}' is empty or whitespace")
        if col != "prompt" and not _visible(val):
            raise DataError(f"{_where(path, row)}: column '{col}' holds invisible characters only (e.g. a zero-width space)")
    if rec["chosen"].strip() == rec["rejected"].strip():
        raise DataError(f"{_where(path, row)}: chosen == rejected (a pair needs two different responses)")
    for col in ("gold_chosen", "gold_rejected"):
        v = rec.get(col)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise DataError(f"{_where(path, row)}: '{col}' must be a finite number, got {v!r}")


def _visible(text: str) -> bool:
    """Whether a text has a character that shows: not only whitespace or format characters (zero-width
    space, joiners, BOM: Unicode category Cf)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def prompt_id(prompt: str) -> str:
    """Stable id of a prompt text (HH: the dialogue prefix): 'p-' + the first 16 hex digits of its
    UTF-8 sha256. Pairs with the same prompt share it (statistics resample prompts by this id)."""
    return "p-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def split_hh(dialogue_chosen: str, dialogue_rejected: str) -> tuple[str, str, str]:
    """HH-RLHF: the two dialogues share a prefix up to the last '\\n\\nAssistant:'.

    Returns (prompt, chosen_response, rejected_response); the prompt keeps its trailing
    '\\n\\nAssistant:' so that prompt + response is the original dialogue.
    """
    i = dialogue_chosen.rfind(HH_SPLIT)
    if i < 0:
        raise DataError("no '\\n\\nAssistant:' turn in the chosen dialogue")
    cut = i + len(HH_SPLIT)
    prompt = dialogue_chosen[:cut]
    if not dialogue_rejected.startswith(prompt):
        # the dialogues diverge earlier; fall back to the rejected dialogue's own last turn
        j = dialogue_rejected.rfind(HH_SPLIT)
        if j < 0:
            raise DataError("no '\\n\\nAssistant:' turn in the rejected dialogue")
        if dialogue_rejected[:j] != dialogue_chosen[:i]:
            raise DataError("chosen and rejected dialogues do not share a prompt")
    return prompt, dialogue_chosen[cut:].strip(), dialogue_rejected[len(prompt):].strip()


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}, row {line}: not UTF-8 (byte {raw[e.start]:#x} at offset {e.start}); "
                        "re-encode the file as UTF-8") from None


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """JSON Lines (one object per line) or, when the file's first character is '[', one JSON array of
    objects (rows numbered by position in the array, from 1)."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            arr = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: starts with '[' but is not a valid JSON array ({e.msg}, line {e.lineno})") from None
        bad = next((i for i, rec in enumerate(arr, start=1) if not isinstance(rec, dict)), None)
        if bad is not None:
            raise DataError(f"{path}, row {bad}: expected a JSON object, got {type(arr[bad - 1]).__name__}")
        return list(enumerate(arr, start=1))
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, row {n}: invalid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}, row {n}: expected a JSON object, got {type(rec).__name__}")
        rows.append((n, rec))
    return rows


def _finish(records: list[tuple[int, dict]], path, on_error: str, origin: str = "original",
            pre_skipped: Counter | None = None) -> pd.DataFrame:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    keep, skipped = [], Counter(pre_skipped or {})
    seen = set()
    stem = Path(path).name.split(".")[0] if path else "pair"
    for i, (n, rec) in enumerate(records):
        if "pair_id" not in rec:          # numbered by input position, so that skipping a row renumbers nothing
            rec = {**rec, "pair_id": f"{stem}-{i}"}
        try:
            check_pair(rec, path, n)
        except DataError as e:
            if on_error == "raise":
                raise
            skipped[str(e).split(": ", 1)[1].split(" (")[0]] += 1
            continue
        trip = (rec["prompt"], rec["chosen"], rec["rejected"])
        if trip in seen:
            if on_error == "raise":
                raise DataError(f"{_where(path, n)}: duplicate of an earlier pair "
                                "(use on_error='skip' to drop duplicates with a count)")
            skipped["duplicate pair"] += 1
            continue
        seen.add(trip)
        keep.append(rec)
    if not keep:
        raise DataError(f"{path or '<data>'}: no valid pairs left ({dict(skipped) or 'the input is empty'})")
    df = pd.DataFrame(keep)
    df["pair_id"] = df["pair_id"].astype(str)
    if "source_id" not in df:
        df["source_id"] = df["pair_id"]
    if "origin" not in df:
        df["origin"] = origin
    df.attrs["skipped"] = dict(skipped)
    df.attrs["path"] = str(path) if path else None
    if skipped:
        print(f"[data] {path}: kept {len(df)} pairs, skipped {sum(skipped.values())}: {dict(skipped)}")
    return df


def _hh_frame(rows, where, id_prefix: str, on_error: str, limit: int | None,
              splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """HH dialogue rows (n, {"chosen", "rejected"[, "split"]}) -> validated pairs with a `prompt_id`
    column; unparseable rows raise (naming `where` and the row) or are counted, per `on_error`.
    `splits`: every row must have a field `split` with one of these values (kept as a column)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    recs, pre = [], Counter()
    for n, rec in rows:
        if limit is not None and len(recs) >= limit:
            break
        try:
            bad = [c for c in ("chosen", "rejected") if not isinstance(rec.get(c), str)]
            if bad:
                raise DataError(f"missing or non-text column(s) {bad} (the HH format needs 'chosen' and "
                                "'rejected' dialogues)")
            if splits is not None and rec.get("split") not in splits:
                raise DataError(f"missing or unknown 'split' field (need one of {list(splits)}, "
                                f"got {rec.get('split')!r})")
            p, c, r = split_hh(rec["chosen"], rec["rejected"])
        except DataError as e:
            if on_error == "raise":
                raise DataError(f"{where}, row {n}: {e}") from None
            pre[str(e).split(" (")[0]] += 1
            continue
        out = {"prompt": p, "chosen": c, "rejected": r, "pair_id": f"{id_prefix}{n}"}
        if isinstance(rec.get("split"), str):
            out["split"] = rec["split"]
        if on_error == "raise":
            check_pair(out, where, n)          # so that "raise" names the first bad row in file order
        recs.append((n, out))
    df = _finish(recs, where, on_error, pre_skipped=pre)
    df["prompt_id"] = df["prompt"].map(prompt_id)
    return df


def load_hh_jsonl(path: str | Path, on_error: str = "raise", limit: int | None = None,
                  splits: tuple[str, ...] | None = None, id_prefix: str = "hh-") -> pd.DataFrame:
    """HH-RLHF dialogue format (`{"chosen": dialogue, "rejected": dialogue}` per line), .jsonl[.gz].

    Columns: prompt, chosen, rejected, pair_id (`id_prefix` + row number), source_id, origin,
    prompt_id (`prompt_id(prompt)`), and `split` when the rows have that field. `splits`: require
    a `split` field with one of these values on every row (a row without one is a row error).
    on_error="raise" stops at the first bad row naming the file and the row; "skip" drops it and
    counts the reason in df.attrs["skipped"].
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"path {path} does not exist")
    return _hh_frame(_read_jsonl(path), path, id_prefix, on_error, limit, splits)


def load_pairs(path: str | Path, on_error: str = "raise") -> pd.DataFrame:
    """Any local JSONL / CSV / Parquet file with prompt/chosen/rejected columns (extra columns kept)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".jsonl", ".json"):
        recs = _read_jsonl(path)
    elif kind in (".csv", ".tsv"):
        text = _read_text(path)
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if kind == ".tsv" else ",")
        recs = [(n, dict(r)) for n, r in enumerate(reader, start=2)]   # row 1 is the header
    elif kind == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow's errors are opaque; say what file failed
            raise DataError(f"{path}: cannot read as Parquet ({type(e).__name__}: {e})") from None
        recs = [(n, r) for n, r in enumerate(frame.to_dict("records"), start=1)]
    else:
        raise DataError(f"{path}: unknown file type '{kind}' (use .jsonl, .csv, .tsv or .parquet, optionally .gz)")
    return _finish(recs, path, on_error)


def as_pairs(data, on_error: str = "raise", name: str = "<data>") -> pd.DataFrame:
    """The validated pair table of `data`: a file path (`load_pairs`), a pandas DataFrame, a
    `datasets.Dataset` or a list of dicts with prompt / chosen / rejected (extra columns kept). Each row
    is checked as a file's would be (`check_pair`); `name` is what an error calls the input."""
    if isinstance(data, (str, os.PathLike)):
        return load_pairs(data, on_error=on_error)
    if hasattr(data, "to_pandas") and hasattr(data, "column_names"):        # a datasets.Dataset
        data = data.to_pandas()
    if isinstance(data, pd.DataFrame):
        data = data.to_dict("records")
    if not isinstance(data, list):
        raise DataError(f"{name}: expected a path, a DataFrame, a datasets.Dataset or a list of dicts, "
                        f"got {type(data).__name__}")
    return _finish(list(enumerate(data, start=1)), name, on_error)


def to_trl_jsonl(df: pd.DataFrame, path: str | Path, extra: tuple[str, ...] | list[str] = ()) -> Path:
    """Export as TRL-style `prompt/chosen/rejected` JSONL (atomic write), plus the `extra` columns."""
    keys = [*REQUIRED, *extra]
    clean = lambda v: None if isinstance(v, float) and v != v else v       # noqa: E731  NaN -> null (valid JSON)
    lines = [json.dumps({k: clean(r[k]) for k in keys}, ensure_ascii=False, default=str) for r in df.to_dict("records")]
    return atomic_write_text(path, "\n".join(lines) + "\n")


_DATA_SUFFIXES = (".jsonl", ".json", ".gz", ".csv", ".tsv", ".parquet", ".arrow", ".zip")


def looks_like_path(path) -> bool:
    """Whether a `path=` argument is meant as a filesystem path rather than a hub id.

    A filesystem path: a `pathlib.Path`; or a string that is "." or "..", starts with "/", "./",
    "../", "~" (or ".\\", "..\\"), contains a backslash or a drive ("C:"), contains more than one
    "/", or ends with a data-file suffix (.jsonl, .json, .gz, .csv, .tsv, .parquet, .arrow, .zip).
    Anything else ("Anthropic/hh-rlhf": at most one "/") is a hub id unless it exists on disk; write
    a relative local folder as "./folder" so that a typo is reported as a missing path.
    """
    if isinstance(path, os.PathLike):
        return True
    s = str(path)
    return (s in (".", "..") or s.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in s
            or (len(s) > 1 and s[1] == ":") or (os.sep != "/" and os.sep in s) or s.count("/") > 1
            or s.lower().endswith(_DATA_SUFFIXES))


def resolve_source(path) -> tuple[str, bool]:
    """(source, is_local) of a `path=` argument: an existing file or folder is local; a string that
    `looks_like_path` but does not exist raises DataError "path ... does not exist" (never a hub
    error); anything else is a hub id."""
    s = os.path.expanduser(os.fspath(path))
    if os.path.exists(s):
        return s, True
    if looks_like_path(path):
        raise DataError(f"path {path} does not exist (resolved to {os.path.abspath(s)}); check the spelling "
                        "(a hub id is written 'owner/name')")
    return str(path), False


def load_hh_hub(split: str = "test", data_dir: str | None = None, on_error: str = "skip",
                limit: int | None = None, dataset: str = "Anthropic/hh-rlhf") -> pd.DataFrame:
    """HH-RLHF read with `datasets.load_dataset(dataset, split=...)`: the hub's `Anthropic/hh-rlhf`
    (paper profile; needs network access) or a local folder in the same format (chosen / rejected
    dialogues; e.g. train.jsonl.gz and test.jsonl.gz). A `dataset` that looks like a filesystem path
    (`looks_like_path`) and does not exist raises "path ... does not exist".

    From the hub in an offline profile (HF_DATASETS_OFFLINE=1) this fails with a message saying so,
    instead of a 30-second time-out deep inside `datasets`.
    """
    dataset, local = resolve_source(dataset)
    if not local and (os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise DataError("load_hh_hub: the hub is disabled in this process (HF_*_OFFLINE=1, the offline "
                        "profiles). Use the committed copy (load_track('hh-rlhf', split)), a local file with "
                        "load_hh_jsonl(path), or run the paper profile.")
    from datasets import load_dataset
    ds = load_dataset(dataset, data_dir=data_dir, split=split)
    return _hh_frame(enumerate(ds, start=1), f"{dataset}[{split}]", f"hh-{split}-", on_error, limit)
