"""Curvature of a fine-tunable transformer reward model, by Hessian-vector products.

The closed-form Hessian of `mars_lib.evaluation.curvature` is for the linear head; a fine-tuned RM's is
reached through HVPs (`curvature.bt_hvp_operator`) over its last transformer block and score head:
Lanczos for the top eigenvalues, Hutchinson for the trace.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mars_lib.pipeline.config import RunConfig
from mars_lib.reward_models.features import Pairs, rm_text
from mars_lib.pipeline.assets import minilm_dir
from mars_lib.evaluation.curvature import bt_hvp_operator, hutchinson_trace, lanczos_top


def last_layer_and_head(model) -> list:
    """The parameters of the last transformer block and of the score head (classifier / score /
    pooler), found by name for any AutoModelForSequenceClassification (BERT, DeBERTa, Llama, ...)."""
    import re
    named = list(model.named_parameters())
    ids = [int(m.group(1)) for n, _ in named for m in [re.search(r"\.layers?\.(\d+)\.", n)] if m]
    if not ids:
        raise ValueError(f"{type(model).__name__}: no numbered transformer layers found among its parameters")
    last = re.compile(rf"\.layers?\.{max(ids)}\.")
    heads = ("classifier", "score", "pooler")
    out = [p for n, p in named if last.search(n) or n.split(".")[0] in heads]
    return out


def finetuned_curvature(cfg: RunConfig, pairs: Pairs, n_pairs: int = 16, lanczos_iters: int = 12, hutchinson_samples: int = 12,
                        max_length: int | None = None, seed: int = 0, model_path=None) -> pd.DataFrame:
    """Curvature of the BT loss for a *fine-tunable* transformer RM, by Hessian-vector products.

    model_path None: the pretrained MiniLM as AutoModelForSequenceClassification(num_labels=1) with a
    seeded score head (max_length default 128). Otherwise a reward model saved by notebook 03
    (`FinetunedRewardModel.save`: full, or LoRA merged into its backbone) at its trained parameters
    (max_length default cfg.max_length). Eager attention (SDPA has no double backward on CPU);
    float64 on CPU, float32 on CUDA. Parameters = the last transformer block + the score head.
    On a seeded random batch of `n_pairs` pairs: Lanczos top-3 eigenvalues (`lanczos_iters` HVPs) and
    a Hutchinson trace estimate (`hutchinson_samples` HVPs, with its standard error).
    """
    import time

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    dtype = torch.float64 if cfg.device == "cpu" else torch.float32
    if model_path is None:
        src, max_length = minilm_dir(), max_length or 128
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, attn_implementation="eager",
                                                                   dtype=dtype)
        tok.truncation_side = "left"
    else:
        from mars_lib.reward_models.finetune import FinetunedRewardModel, _is_peft
        rm = FinetunedRewardModel.load(model_path, device="cpu")      # pad token and truncation side set there
        tok, model, max_length = rm.tokenizer, rm.model.to(dtype), max_length or cfg.max_length
        model = model.merge_and_unload() if _is_peft(model) else model      # merged in the HVP's dtype
        model.set_attn_implementation("eager")
    model = model.to(device=cfg.device, dtype=dtype).eval()
    params = last_layer_and_head(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    rows = np.random.default_rng(seed).choice(len(pairs.df), size=min(n_pairs, len(pairs.df)), replace=False)
    df = pairs.df.iloc[rows]
    enc = lambda col: {k: v.to(cfg.device) for k, v in tok([rm_text(p, r) for p, r in zip(df.prompt, df[col])],  # noqa: E731
                       padding=True, truncation=True, max_length=max_length, return_tensors="pt").items()}
    t0 = time.perf_counter()
    matvec, dim = bt_hvp_operator(model, enc("chosen"), enc("rejected"), params)
    top = lanczos_top(matvec, dim, k=3, iters=lanczos_iters, seed=seed)
    t1 = time.perf_counter()
    tr = hutchinson_trace(matvec, dim, n_samples=hutchinson_samples, seed=seed)
    t2 = time.perf_counter()
    return pd.DataFrame([
        {"quantity": "lambda_1", "value": top[0], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "lambda_2", "value": top[1], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "lambda_3", "value": top[2], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "trace (Hutchinson)", "value": tr["trace"], "se": tr["se"], "iterations": hutchinson_samples,
         "seconds": t2 - t1}]).assign(params=dim, pairs=len(df), max_length=max_length)
