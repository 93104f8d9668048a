"""Atomic file writes (temp file + rename): an interrupted run never leaves a half-written file."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

def _project_root() -> Path:
    """The checkout this package runs from (the folder holding pyproject.toml beside mars_lib/); for an
    installed copy (site-packages has no pyproject.toml) the working directory, so that relative results
    and data paths never land inside the installation."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _project_root()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)          # mkstemp creates 0600; give the usual file mode
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def open_sqlite(path, schema: str):
    """A SQLite cache file with WAL journaling and `schema` created; a corrupt file is a clear error."""
    import sqlite3
    try:
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(schema)
        db.commit()
    except sqlite3.DatabaseError as e:
        raise RuntimeError(f"{path}: not a valid cache database ({e}). It only holds cached results: "
                           "delete it and it is rebuilt on the next run") from None
    return db



def content_key(*parts: Any) -> str:
    """A short sha256 of JSON-serialisable parts: the name of a result cached by its content."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def cached_frame(path: str | Path, compute) -> "pd.DataFrame":
    """The table at `path` (parquet) if present, else `compute()` written there atomically.

    Name `path` by content (`content_key` of everything the table is computed from), so a changed
    input is a new file and never a stale hit. The frame's `attrs` (JSON-serialisable) are kept in a
    `.json` file beside it, written first: the parquet file's presence marks a finished entry."""
    import io

    import pandas as pd
    path = Path(path)
    meta = path.with_suffix(".json")
    if path.exists():
        out = pd.read_parquet(path)
        if meta.exists():
            out.attrs.update(json.loads(meta.read_text()))
        return out
    out = compute()
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    if out.attrs:
        atomic_write_bytes(meta, json.dumps(out.attrs, default=str).encode())
    atomic_write_bytes(path, buf.getvalue())
    return out


def write_parquet(df: "pd.DataFrame", path: str | Path, label: str = "data") -> str:
    """zstd Parquet written atomically; returns its sha256 (recorded in the folder's manifest)."""
    import io as _io
    buf = _io.BytesIO()
    df.to_parquet(buf, compression="zstd", index=False)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    print(f"[{label}] wrote {path} ({len(data) / 1e6:.2f} MB)")
    return hashlib.sha256(data).hexdigest()


def repo_relative(path: str | Path) -> str:
    """`path` relative to the repository root when inside it (for manifests and commands), else as given."""
    root = REPO_ROOT
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
