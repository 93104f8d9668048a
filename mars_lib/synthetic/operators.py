"""The synthetic-pair operator registry: how synthetic pairs are made, one entry per operator.

Every operator has one interface: `build(ctx, base) -> Pairs`, the pre-generated synthetic pool of
the base pairs (each row carries `source_id`, `origin` and, where the task knows them, gold scores),
and, for operators that can build exactly b_i pairs for a source when it is selected
(pool_mode "on_demand"), `sources(ctx, base)`: the texts an on-demand build paraphrases.

- paraphrase: n×n WordNet (or seq2seq) paraphrase pairs per source; they inherit its label [C1];
- refined_paraphrase: semantic refinement of too-similar pairs first (`mars_lib.synthetic.refine`), then
  paraphrase [C2];
- resample: close-quality pairs among fresh policy samples, labelled by `cfg.labeler` (new
  information: the labels are drawn for the new texts, not inherited).
Config validation and the pool stage (`pools.make_pool`) read this registry; `register` adds one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


def _resolve(f: str | Callable) -> Callable:
    """A callable, or "module:function" imported now: the builders load models and data, so the registry
    itself stays light (config validation and the figures never import torch)."""
    if callable(f):
        return f
    module, name = f.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Operator:
    name: str
    label: str
    build: str | Callable                 # (ctx, base) -> Pairs: the synthetic pool of the base pairs
    sources: str | Callable | None = None  # (ctx, base) -> DataFrame: texts on-demand builds use (None: pool only)
    inherits_label: bool = True            # False: its pairs carry labels of their own

    def builder(self) -> Callable:
        return _resolve(self.build)

    def source_texts(self) -> Callable | None:
        return None if self.sources is None else _resolve(self.sources)


REGISTRY: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    REGISTRY[op.name] = op
    return op


def get(name: str) -> Operator:
    if name not in REGISTRY:
        raise ValueError(f"unknown operator {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


register(Operator("paraphrase", "Paraphrase (label inherited)", "mars_lib.synthetic.pools:paraphrase_pool",
                  sources="mars_lib.synthetic.pools:base_texts"))
register(Operator("refined_paraphrase", "Refined paraphrase (v2)", "mars_lib.synthetic.pools:refined_paraphrase_pool",
                  sources="mars_lib.synthetic.pools:refined_sources"))
register(Operator("resample", "Resample (new labels)", "mars_lib.synthetic.pools:resample_synthetic_pool", inherits_label=False))
