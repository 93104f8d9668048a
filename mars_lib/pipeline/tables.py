"""Tidy result tables written atomically, with the resolved config, seed and versions beside them.

Every table `results/<nb>/<name>.csv` gets a sidecar `results/<nb>/<name>.meta.json` holding the
run's configuration, the git commit of the code (and whether the working tree had uncommitted
changes), library versions and input checksums: the sha256 of every committed data file the run's
config reads (`config_inputs`: the task folder, the HH-RLHF copy when that track runs) plus any
`inputs` the caller names (docs/design.md §8).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import pandas as pd

from mars_lib.pipeline.io import atomic_write_bytes, atomic_write_json, atomic_write_text, REPO_ROOT

_PKGS = ("mars_lib", "torch", "transformers", "datasets", "peft", "numpy", "pandas")


@lru_cache(maxsize=1)
def git_state() -> dict:
    """{"commit": HEAD's sha, "dirty": uncommitted changes to tracked files outside `results/`} of the
    package's repository; None values outside a git checkout (an installed copy). The results folder is
    left out because a run rewrites its own committed tables (and config.json before any of them): a
    rerun of the reference profile would otherwise always call its code dirty. The README and
    docs/results.md are left out for the same reason: the runner regenerates their glance from the
    tables after each notebook, which made every later notebook of a clean run look dirty."""
    root = REPO_ROOT
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=20, check=True).stdout.strip()
        return {"commit": run("rev-parse", "HEAD"),
                "dirty": bool(run("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results",
                                      ":(exclude)README.md", ":(exclude)docs/results.md"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_info() -> dict:
    vers = {}
    for p in _PKGS:
        try:
            vers[p] = md.version(p)
        except md.PackageNotFoundError:
            vers[p] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": vers, "git": git_state()}


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per process per (path, size, mtime)."""
    st = Path(path).stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def config_inputs(config) -> dict[str, str]:
    """{repository-relative path: sha256} of the committed data files a run with this config reads:
    every file of its task folder, and the HH-RLHF copy when `hh-rlhf` is among its human tracks
    with no other path given. {} for a config without a task folder."""
    if not hasattr(config, "task_path"):
        return {}
    files = sorted(p for p in config.task_path.glob("*") if p.is_file())
    tracks = config.human_track if isinstance(config.human_track, (tuple, list)) else (config.human_track,)
    if "hh-rlhf" in tracks and config.human_track_path is None:
        files += sorted(p for p in (REPO_ROOT / "data" / "hh_rlhf_harmless").glob("*") if p.is_file())
    rel = lambda p: str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)  # noqa: E731
    return {rel(p): file_sha256(p) for p in files}


def save_table(df: pd.DataFrame, path: str | Path, config=None, inputs: dict | None = None) -> Path:
    """Write a tidy table atomically (CSV; `.parquet` for large per-pair tables), and its `.meta.json`
    (config, versions, input checksums)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False, compression="zstd")
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
    meta = {"table": path.name, "rows": len(df), "columns": list(df.columns),
            "config": config.to_dict() if hasattr(config, "to_dict") else config,
            "inputs": {**config_inputs(config), **(inputs or {})}, "environment": environment_info()}
    atomic_write_json(path.with_suffix(".meta.json"), meta)
    return path


def load_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the notebook that writes it first "
                                f"(./run_all.sh --only {path.parent.name[:2]})")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def table_if_present(results: str | Path, name: str) -> pd.DataFrame | None:
    """`load_table` of ``<results>/<name>``, or None where that run has not written it (the report and
    the findings read whatever tables a run has)."""
    p = Path(results) / name
    return load_table(p) if p.exists() else None


def load_json(path: str | Path):
    return json.loads(Path(path).read_text())


def stage_saver(nb: str):
    """The save function of one notebook's stages: `save(cfg, df, name, **kw)` writes `df` as
    `<results>/<nb>/<name>` (`save_table`, with provenance) and returns `df`, so a stage saves what it returns."""
    def save(cfg, df: pd.DataFrame, name: str, **kw) -> pd.DataFrame:
        save_table(df, cfg.path(nb, name), cfg, **kw)
        return df
    return save
