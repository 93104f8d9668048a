"""Tidy result tables written atomically, with the resolved config, seed and versions beside them.

Every table `results/<nb>/<name>.csv` gets a sidecar `results/<nb>/<name>.meta.json` holding the
run's configuration, library versions and input checksums (architecture.md §8).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
from pathlib import Path

import pandas as pd

from .io import atomic_write_json, atomic_write_text

_PKGS = ("mars_lib", "torch", "transformers", "datasets", "peft", "numpy", "pandas")


def environment_info() -> dict:
    vers = {}
    for p in _PKGS:
        try:
            vers[p] = md.version(p)
        except md.PackageNotFoundError:
            vers[p] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": vers}


def frame_sha256(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()[:16]


def save_table(df: pd.DataFrame, path: str | Path, config=None, inputs: dict | None = None) -> Path:
    """Write a tidy table atomically (CSV; `.parquet` for large per-pair tables), and its `.meta.json`
    (config, versions, input checksums)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import io

        from .io import atomic_write_bytes
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, compression="zstd")
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
    meta = {"table": path.name, "rows": len(df), "columns": list(df.columns),
            "config": config.to_dict() if hasattr(config, "to_dict") else config,
            "inputs": inputs or {}, "environment": environment_info()}
    atomic_write_json(path.with_suffix(".meta.json"), meta)
    return path


def load_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the notebook that writes it first "
                                f"(./run_all.sh --only {path.parent.name[:2]})")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def save_json(obj, path: str | Path) -> Path:
    return atomic_write_json(path, obj)


def load_json(path: str | Path):
    return json.loads(Path(path).read_text())
