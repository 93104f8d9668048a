"""Notebook 04's stages: each computes one view of the loss's curvature, saves its tables under
`<results>/04_curvature/` and returns them, so every computation cell of the notebook is one call.

    s = curvature_checks.setup(cfg)             the config saved, the base pairs' feature differences, the trained heads
    curv = curvature_checks.per_head(s)         the Hessian under uniform / MARS v1 / v2 weights, per head
    curvature_checks.tau_sweep(s)               ratios to uniform over τ, and over rescaled gaps
    curvature_checks.per_round(s)               the realised training set of each round (notebook 03's history)
    curvature_checks.finetuned(s)               a transformer RM by Hessian-vector products (and E_w[σ′] per fine-tuned RM)
    curvature_checks.what_held(curv)            one sentence per MARS version, from the per-head table

The tables are the notebook's results; figures read them back from disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mars_lib import mars
from mars_lib.evaluation import curvature, finetune_curvature
from mars_lib.pipeline import context
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.pipeline.tables import load_table, stage_saver
from mars_lib.reward_models import checkpoints
from mars_lib.reward_models.features import Pairs

OUT = "04_curvature"
# the per-head quantities the notebook shows (curvature.csv holds them all)
COLUMNS = ["mean_sigma_prime", "trace", "lambda_max", "lambda_min_span", "condition_span", "coverage_vs_uniform",
           "fisher_trace"]
GAP_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


_save = stage_saver(OUT)        # save(cfg, df, name) -> df, under <results>/<OUT>/


@dataclass
class Setup:
    """What every stage of notebook 04 reads: the base pairs, their feature differences Δφ [N, D] in
    float64, and the trained reward models by (strategy, seed)."""
    cfg: RunConfig
    ctx: Context
    base: Pairs
    dphi: np.ndarray
    heads: dict


def setup(cfg: RunConfig) -> Setup:
    """Saves the config; the base pairs and notebook 03's saved heads (cfg.rm "head"; without them, the
    first no-augmentation RM). With fine-tuned RMs the closed form uses a linear head on the encoder's
    features; the fine-tuned RMs are examined by Hessian-vector products (`finetuned`)."""
    cfg.save(cfg.path(OUT, "config.json"))
    ctx = context.setup(cfg)
    base = ctx.pairs("train")
    dphi = (base.phi_c - base.phi_r).astype(np.float64)       # [N, D]
    if cfg.rm == "head":
        try:
            heads = checkpoints.load_reward_models(cfg)
        except FileNotFoundError as e:
            print(f"{e}\n-> using the first (no-augmentation) RM instead")
            heads = {("none", cfg.seeds[0]): context.first_reward_model(cfg, base)}
    else:   # fine-tuned RMs (notebook 03 with rm full / lora): the closed form needs the linear model of the theory
        print(f"rm={cfg.rm!r}: the closed-form sections use a linear head on {cfg.encoder} features (no augmentation); "
              "the fine-tuned RMs of notebook 03 are examined by Hessian-vector products below")
        heads = {("none", cfg.seeds[0]): context.first_reward_model(cfg, base)}
    print(f"{len(dphi)} base pairs, feature dim {dphi.shape[1]}, {len(heads)} trained heads")
    return Setup(cfg, ctx, base, dphi, heads)


def _mars_weights(cfg: RunConfig, gap: np.ndarray) -> list[tuple[str, np.ndarray | None]]:
    return [("uniform", None), ("mars_v1", mars.allocation_probs(gap, cfg.tau_v1, "abs")),
            ("mars_v2", mars.allocation_probs(gap, cfg.tau_v2, "signed"))]


def per_head(s: Setup) -> pd.DataFrame:
    """curvature.csv: for every trained head θ, the curvature summary (E_w[σ′], trace, spectrum,
    Fisher) under uniform, MARS v1 and MARS v2 weights, and the coverage factor c of H_w ⪰ c·H_u."""
    rows = []
    for (strategy, seed), m in s.heads.items():
        theta = m.theta
        H_u = curvature.hessian(s.dphi, theta)
        for w_name, w in _mars_weights(s.cfg, s.dphi @ theta):
            summary = curvature.curvature_summary(s.dphi, theta, w)
            summary["coverage_vs_uniform"] = curvature.coverage_factor(curvature.hessian(s.dphi, theta, w), H_u)
            rows.append({"rm": strategy, "seed": seed, "weights": w_name, **summary})
    return _save(s.cfg, pd.DataFrame(rows), "curvature.csv")


def tau_sweep(s: Setup) -> pd.DataFrame:
    """For the no-augmentation head (else the first head): tau_sweep.csv, each quantity under q_τ over its
    value under uniform weights, for |Δ| (v1) and signed Δ (v2) at every τ of `cfg.curvature_taus`, and
    the E[σ′] ratio at the largest τ with the gaps rescaled; base_gaps.csv, that head's reward gaps."""
    cfg, dphi = s.cfg, s.dphi
    theta = next((m for k, m in s.heads.items() if k[0] == "none"), next(iter(s.heads.values()))).theta
    gap = dphi @ theta
    H_u = curvature.hessian(dphi, theta)
    base_u = curvature.curvature_summary(dphi, theta)
    rows = []
    for gap_kind in ("abs", "signed"):
        for tau in cfg.curvature_taus:
            w = None if tau == 0 else mars.allocation_probs(gap, tau, gap_kind)
            q = curvature.curvature_summary(dphi, theta, w)
            rows.append({"gap": gap_kind, "tau": tau, "gap_scale": 1.0,
                         "sigma_prime_ratio": q["mean_sigma_prime"] / base_u["mean_sigma_prime"],
                         "trace_ratio": q["trace"] / base_u["trace"],
                         "lambda_min_ratio": q["lambda_min_span"] / base_u["lambda_min_span"],
                         "condition_ratio": q["condition_span"] / base_u["condition_span"],
                         "coverage_vs_uniform": curvature.coverage_factor(curvature.hessian(dphi, theta, w), H_u)})
    for scale in GAP_SCALES:
        d = gap * scale
        q = mars.allocation_probs(d, max(cfg.curvature_taus), "abs")
        rows.append({"gap": "abs", "tau": max(cfg.curvature_taus), "gap_scale": scale,
                     "sigma_prime_ratio": curvature.mean_sigma_prime(d, q) / curvature.mean_sigma_prime(d)})
    # this head's reward gaps on the base pairs: the left panel of the figure
    _save(cfg, pd.DataFrame({"pair_id": s.base.df.pair_id, "reward_gap": gap}), "base_gaps.csv")
    return _save(cfg, pd.DataFrame(rows), "tau_sweep.csv")


def per_round(s: Setup) -> pd.DataFrame:
    """per_round.csv: the curvature ratios to the base set that notebook 03 recorded at every round
    (its history.csv), mean and std over seeds per strategy and round. Empty, with a note, when
    notebook 03 has not run under this results folder."""
    hist_path = s.cfg.path("03_rm_training", "history.csv")
    if not hist_path.exists():
        print(f"{hist_path} missing: run notebook 03 first for the per-round view")
        return pd.DataFrame()
    hist = load_table(hist_path)
    out = (hist[(hist.split == "curvature") & hist.metric.str.endswith("_ratio_to_base")]
           .groupby(["strategy", "round", "metric"]).value.agg(["mean", "std"]).reset_index())
    return _save(s.cfg, out, "per_round.csv")


def finetuned(s: Setup) -> dict[str, pd.DataFrame]:
    """finetuned_hvp.csv (`finetune_curvature.finetuned_curvature`: top eigenvalues by Lanczos, trace by
    Hutchinson): with head RMs, MiniLM with a fresh score head; with fine-tuned RMs, every RM of notebook
    03 at its trained weights, and finetuned_sigma_prime.csv, E_w[σ′(Δ)] under uniform and MARS weights
    from each one's own reward gaps (empty with head RMs)."""
    cfg, base = s.cfg, s.base
    hvp = dict(n_pairs=cfg.hvp_pairs, lanczos_iters=cfg.lanczos_iters, hutchinson_samples=cfg.hutchinson_samples)
    if cfg.rm == "head":
        ft = finetune_curvature.finetuned_curvature(cfg, base, **hvp).assign(rm="pretrained MiniLM, fresh head", seed=np.nan)
        return {"hvp": _save(cfg, ft, "finetuned_hvp.csv"), "sigma_prime": pd.DataFrame()}
    ft = pd.concat([finetune_curvature.finetuned_curvature(cfg, base, model_path=checkpoints.saved_model_path(cfg, a, seed),
                                                           **hvp).assign(rm=a, seed=seed)
                    for a in cfg.strategies for seed in cfg.seeds], ignore_index=True)
    rows = []
    for (a, seed), m in checkpoints.load_reward_models(cfg).items():
        g = m.pair_gap(base)
        rows += [{"rm": a, "seed": seed, "weights": w_name, "mean_sigma_prime": curvature.mean_sigma_prime(g, w),
                  "mean_abs_gap": float(np.abs(g).mean())} for w_name, w in _mars_weights(cfg, g)]
    sigma = _save(cfg, pd.DataFrame(rows), "finetuned_sigma_prime.csv")
    return {"hvp": _save(cfg, ft, "finetuned_hvp.csv"), "sigma_prime": sigma}


def what_held(curv: pd.DataFrame) -> list[str]:
    """One sentence per MARS version from curvature.csv's rows: whether E[σ′] rose over uniform weights,
    the range of the coverage factor c (the PSD lower bound H_q ⪰ c·H_u with c ≥ 1 holds or not) and
    whether the condition number improved."""
    mean = curv.groupby("weights")[COLUMNS].mean()
    u, out = mean.loc["uniform"], []
    for w in ("mars_v1", "mars_v2"):
        up = mean.loc[w, "mean_sigma_prime"] >= u["mean_sigma_prime"]
        cov = curv[curv.weights == w].coverage_vs_uniform
        kappa = mean.loc[w, "condition_span"] <= u["condition_span"]
        out.append(f"{w}: E[σ′] {'rose' if up else 'fell'} ({u['mean_sigma_prime']:.4f} -> {mean.loc[w, 'mean_sigma_prime']:.4f}); "
                   f"coverage factor c (H_q ⪰ c·H_u) = {cov.min():.3f}..{cov.max():.3f} -> the PSD lower bound with c ≥ 1 "
                   f"{'holds' if cov.min() >= 1 else 'does NOT hold'} on this data; condition number "
                   f"{'improved' if kappa else 'got worse'} ({u['condition_span']:.1f} -> {mean.loc[w, 'condition_span']:.1f}).")
    return out
