"""Committed seeds of the model-output caches for the suite's background notebook runs.

The smoke and paper-stand-in runs spend most of their cold time in three deterministic model calls
whose results the package caches by content (sha256 of the model's id and the input text): the task
judge's facets (`judge3.sqlite`), LM generations (`generations.sqlite`) and frozen-encoder features
(`features.sqlite`). From a fresh clone the suite computed them all again on every run: 1,030 s of
the smoke run's uncontended time on 2 cores against 254 s with every cache warm (docs/reference.md).

`seeded_cache(dst, name)` makes a cache folder for one background run: those three files rebuilt
from `tests/cache_seed/<name>/*.sql.gz` (SQL dumps of the rows that run reads), and `models/` /
`verified/` linked to the suite's own cache, so the model conversions still happen once per suite.
Everything else — pools, refinements, trained RMs and DPO policies, the notebooks themselves — is
computed as before. The keys name the judge's id, the models and every input, so a seed row is only
read where a cold run would compute the very same value; a changed judge, encoder or text misses
the seed and is computed (slower, never wrong). What the seeded calls compute cold is tested where
it lives: tests/test_judge3.py, test_task_judges.py, test_judge_agreement.py (fresh judgments equal
committed ones), test_decoding.py / test_resume.py (generation), test_backbones.py / test_ood.py (features).

Refresh a seed after a change that moves the smoke inputs (the terminal summary prints how many
rows each background run had to compute): `MARS_WRITE_CACHE_SEED=1 ./run_tests.sh -m slow -k
"smoke or paper_profile"`, then commit tests/cache_seed/.
"""
from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

from mars_lib.pipeline.assets import cache_dir

SEED_DIR = Path(__file__).resolve().parent / "cache_seed"
FILES = {"judge3.sqlite": "facets", "generations.sqlite": "gen", "features.sqlite": "feat"}
SHARED = ("models", "verified")         # converted / checked once per suite, in the suite's cache


def rows(path: Path) -> int:
    """Rows in a cache file (0 when it does not exist)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {FILES[path.name]}").fetchone()[0]
    finally:
        db.close()


def seeded_cache(dst: Path, name: str) -> Path:
    """A cache folder at `dst` holding seed `name`'s rows, with the suite's models linked in."""
    dst.mkdir(parents=True, exist_ok=True)
    shared = cache_dir()
    for sub in SHARED:
        (shared / sub).mkdir(parents=True, exist_ok=True)
        (dst / sub).symlink_to(shared / sub, target_is_directory=True)
    for f in FILES:
        dump = SEED_DIR / name / f"{f}.sql.gz"
        if dump.exists():
            db = sqlite3.connect(dst / f)
            db.executescript(gzip.decompress(dump.read_bytes()).decode("utf-8"))
            db.close()
    return dst


def seeded_rows(name: str) -> dict[str, int]:
    """How many rows seed `name` holds per cache file (what `new_rows` compares with)."""
    out = {}
    for f in FILES:
        dump = SEED_DIR / name / f"{f}.sql.gz"
        out[f] = gzip.decompress(dump.read_bytes()).decode("utf-8").count("\nINSERT INTO") if dump.exists() else 0
    return out


def new_rows(cache: Path, name: str, files=tuple(FILES)) -> int:
    """Rows a run computed beyond its seed in `files`: 0 when the seed is current."""
    seeded = seeded_rows(name)
    return sum(rows(cache / f) - seeded[f] for f in files)


def export(cache: Path, name: str, files=tuple(FILES)) -> None:
    """Write `cache`'s rows of `files` as seed `name` (with MARS_WRITE_CACHE_SEED=1, after a run)."""
    out = SEED_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        if rows(cache / f):
            db = sqlite3.connect(f"file:{cache / f}?mode=ro", uri=True)
            sql = "\n".join(db.iterdump()) + "\n"
            db.close()
            (out / f"{f}.sql.gz").write_bytes(gzip.compress(sql.encode("utf-8"), 9, mtime=0))


def finish(cache: Path, name: str, files=tuple(FILES)) -> int:
    """After a background run: export the seed of `files` when asked to; the rows computed beyond it.
    Name only the files whose keys do not depend on where the run put its models (the paper stand-ins
    live in a temporary folder, so only the task judge's facets of their texts carry over)."""
    if os.environ.get("MARS_WRITE_CACHE_SEED") == "1":
        export(cache, name, files)
    return new_rows(cache, name, files)
