"""The registry of figures: each figure's name, drawing function and the saved tables it reads.

`mars_lib.figures` (notebooks 01-04) and `mars_lib.figures_downstream` (notebook 05, and notebook 01's
judge-vs-people figure) register their functions here with `@figure(name, *tables)`; both import this
module and nothing imports them back, so there is no import cycle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .results import load_json, load_table

FIGURES: dict[str, Callable] = {}
TABLES: dict[str, tuple[str, ...]] = {}


def figure(name: str, *tables: str):
    """Registers a figure function under `name` with the tables (paths under results/) it reads."""
    def register(fn):
        FIGURES[name], TABLES[name] = fn, tables
        return fn
    return register


def config(results: Path, nb: str, cfg=None) -> dict:
    """The run's settings: `cfg` (a notebook's RunConfig) when given, else `<results>/<nb>/config.json`."""
    if cfg is not None:
        return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return load_json(Path(results) / nb / "config.json")


def _t(results: Path, table: str) -> pd.DataFrame:
    return load_table(Path(results) / table)
