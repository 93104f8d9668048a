"""The registry of figures: each figure's name, drawing function and the saved tables it reads.

The figure modules (`margins`, `rm_training`, `curvature`, `downstream`, `claims_forest`) register their
functions here with `@figure(name, *tables)`; they import this module and nothing here imports them,
so there is no import cycle. `draw(name, cfg)` draws one figure for a notebook, `draw_all(results)`
redraws every figure whose tables exist (`./run_all.sh --figures-only`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from mars_lib.figures import plotting
from mars_lib.pipeline.tables import load_json, load_table

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



def draw(name: str, cfg):
    """Draws figure `name` from the tables under cfg's results_dir, saves it to results/figures/<name>.png
    and returns it (a notebook shows it inline)."""
    fig = FIGURES[name](cfg.path(), cfg)
    plotting.save(fig, cfg, name)
    return fig


def draw_all(results: Path, names=None) -> list[Path]:
    """Draws and saves every registered figure (or those in `names`) whose tables exist under `results`;
    prints the reason for each one skipped. Returns the paths written."""
    results, out = Path(results), []
    for name, fn in FIGURES.items():
        if names is not None and name not in names:
            continue
        missing = [t for t in TABLES[name] if not (results / t).exists()]
        if missing:
            print(f"skipped {name}: no {', '.join(missing)}")
            continue
        try:
            fig = fn(results)
        except FileNotFoundError as e:
            print(f"skipped {name}: {e}")
            continue
        out.append(plotting.save_png(fig, results / "figures" / f"{name}.png"))
        plt.close(fig)
    return out
