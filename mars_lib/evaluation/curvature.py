"""Curvature and Fisher information of the Bradley-Terry loss for the linear head r = θᵀφ.

Theory (docs/method.md §3.1, [S-zh1]): with Δφ = φ(x, y+) − φ(x, y−) and Δ = θᵀΔφ,
    H(θ) = E_w[ σ′(Δ) Δφ Δφᵀ ],   σ′(t) = σ(t)(1 − σ(t)),
which for the logistic BT model equals the expected Fisher information. The empirical Fisher on
labelled pairs is E_w[ (1 − σ(Δ))² Δφ Δφᵀ ]. Weights w are any distribution over pairs (uniform,
a MARS allocation q, the realised budgets b_i of an augmented set).

All functions work in float64 numpy; shapes are in the docstrings.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np


@contextmanager
def one_thread():
    """Small dense linear algebra (a 384 × 384 eigendecomposition) on one torch thread: with 2 threads on
    a busy 2-core machine such a call was measured at 4.0 s against 0.014 s single-threaded, because
    its threads wait for each other. The caller's thread count is restored afterwards."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _eigvalsh(A: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of a symmetric matrix (torch's LAPACK: ~25x faster than numpy's here)."""
    import torch
    with one_thread():
        return torch.linalg.eigvalsh(torch.as_tensor(np.ascontiguousarray(A), dtype=torch.float64)).numpy()


def _eigh(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch
    with one_thread():
        ev, U = torch.linalg.eigh(torch.as_tensor(np.ascontiguousarray(A), dtype=torch.float64))
    return ev.numpy(), U.numpy()


def sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(t, dtype=np.float64)))


def sigma_prime(t) -> np.ndarray:
    """σ′(t) = σ(t)(1 − σ(t)); 1/4 at t = 0."""
    s = sigmoid(t)
    return s * (1.0 - s)


def _weights(w, n: int) -> np.ndarray:
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with shape ({n},) and a positive sum")
    return w / w.sum()


def hessian(dphi, theta, w=None) -> np.ndarray:
    """Closed-form BT-loss Hessian Σ_i w_i σ′(Δ_i) Δφ_i Δφ_iᵀ. dphi [N, D], theta [D] -> [D, D]."""
    dphi = np.asarray(dphi, dtype=np.float64)
    w = _weights(w, len(dphi)) * sigma_prime(dphi @ np.asarray(theta, np.float64))
    return (dphi * w[:, None]).T @ dphi


def empirical_fisher(dphi, theta, w=None) -> np.ndarray:
    """Σ_i w_i (1 − σ(Δ_i))² Δφ_i Δφ_iᵀ: the outer product of per-pair gradients of −log σ(Δ_i)."""
    dphi = np.asarray(dphi, dtype=np.float64)
    g = 1.0 - sigmoid(dphi @ np.asarray(theta, np.float64))
    w = _weights(w, len(dphi)) * g * g
    return (dphi * w[:, None]).T @ dphi


def mean_sigma_prime(reward_gap, w=None) -> float:
    """E_w[σ′(Δ)]: the scalar curvature factor MARS raises."""
    d = np.asarray(reward_gap, dtype=np.float64)
    return float(_weights(w, d.size) @ sigma_prime(d))


def spectrum(H, rel_tol: float = 1e-10) -> dict:
    """Trace, λ_max, λ_min on the data span (eigenvalues > rel_tol·λ_max), condition number there,
    and the rank used. H [D, D] symmetric PSD."""
    ev = _eigvalsh((H + H.T) / 2)
    lmax = float(ev[-1])
    span = ev[ev > rel_tol * max(lmax, 1e-300)]
    lmin = float(span[0]) if span.size else 0.0
    return {"trace": float(ev.sum()), "lambda_max": lmax, "lambda_min_span": lmin,
            "condition_span": lmax / lmin if lmin > 0 else float("inf"), "rank": int(span.size)}


def coverage_factor(H_w, H_ref, rel_tol: float = 1e-10) -> float:
    """Largest c with H_w ⪰ c · H_ref on the span of H_ref (the feature-coverage condition of the
    PSD lower bound; c ≥ 1 means the weighted curvature dominates in every direction).

    Computed as the smallest generalised eigenvalue of (H_w, H_ref) restricted to range(H_ref).
    """
    ev, U = _eigh((H_ref + H_ref.T) / 2)
    keep = ev > rel_tol * ev[-1]
    P = U[:, keep] / np.sqrt(ev[keep])           # whitening of H_ref on its range
    M = P.T @ ((H_w + H_w.T) / 2) @ P
    return float(_eigvalsh(M)[0])


def curvature_summary(dphi, theta, w=None, fisher_spectrum: bool = True) -> dict:
    """One row of the curvature table for a weighting w of the pairs. The Fisher trace is
    Σ_i w_i (1 − σ(Δ_i))² ‖Δφ_i‖², computed without forming the matrix; `fisher_spectrum` False skips
    the Fisher matrix and its λ_max (NaN) — the rounds loop logs only the trace."""
    dphi = np.asarray(dphi, np.float64)
    d = dphi @ np.asarray(theta, np.float64)
    H = hessian(dphi, theta, w)
    g = 1.0 - sigmoid(d)
    wf = _weights(w, len(dphi)) * g * g
    s = spectrum(H)
    lam = float(_eigvalsh(empirical_fisher(dphi, theta, w))[-1]) if fisher_spectrum else float("nan")
    return {"mean_sigma_prime": mean_sigma_prime(d, w), **s,
            "fisher_trace": float(wf @ np.einsum("ij,ij->i", dphi, dphi)), "fisher_lambda_max": lam}


ROUND_KEYS = ("mean_sigma_prime", "trace", "lambda_max", "lambda_min_span", "condition_span", "fisher_trace")


def training_set_curvature(train, base, theta) -> list[dict]:
    """History rows of the rounds loop: BT curvature of a round's realised training set and its ratio to
    the base set's, both at the allocating model's θ (docs/method.md §3.1: the claim compares data
    distributions at one θ). `train`, `base`: features.Pairs."""
    c_train = curvature_summary(train.phi_c - train.phi_r, theta, fisher_spectrum=False)
    c_base = curvature_summary(base.phi_c - base.phi_r, theta, fisher_spectrum=False)
    return ([{"split": "curvature", "metric": k, "value": c_train[k]} for k in ROUND_KEYS]
            + [{"split": "curvature", "metric": f"{k}_ratio_to_base", "value": c_train[k] / c_base[k]} for k in ROUND_KEYS])


def lanczos_top(matvec, dim: int, k: int = 1, iters: int = 50, seed: int = 0) -> np.ndarray:
    """Top-k eigenvalues of a symmetric operator given only v -> A v (Lanczos with full
    re-orthogonalisation). For Hessian-vector products of fine-tuned models."""
    rng = np.random.default_rng(seed)
    iters = min(iters, dim)
    Q = np.zeros((dim, iters + 1))
    alpha, beta = np.zeros(iters), np.zeros(iters)
    q = rng.standard_normal(dim)
    Q[:, 0] = q / np.linalg.norm(q)
    m = iters
    for j in range(iters):
        v = matvec(Q[:, j])
        alpha[j] = Q[:, j] @ v
        v -= Q[:, :j + 1] @ (Q[:, :j + 1].T @ v)
        v -= Q[:, :j + 1] @ (Q[:, :j + 1].T @ v)
        beta[j] = np.linalg.norm(v)
        if beta[j] < 1e-12:
            m = j + 1
            break
        Q[:, j + 1] = v / beta[j]
    T = np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
    return np.sort(_eigvalsh(T))[::-1][:k]


def hutchinson_trace(matvec, dim: int, n_samples: int = 30, seed: int = 0) -> dict:
    """Hutchinson estimate of tr(A) = E[vᵀAv] with Rademacher v; returns mean, standard error, n."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_samples):
        v = rng.choice([-1.0, 1.0], size=dim)
        vals.append(float(v @ matvec(v)))
    vals = np.asarray(vals)
    return {"trace": float(vals.mean()), "se": float(vals.std(ddof=1) / np.sqrt(n_samples)) if n_samples > 1 else float("nan"),
            "n_samples": n_samples}


def bt_hvp_operator(model, batch_chosen: dict, batch_rejected: dict, params=None):
    """v -> H v for the BT loss of a fine-tuned reward model (torch module returning `.logits` [B, 1]).

    Uses double backward, so attention must support it: load the model with
    attn_implementation="eager" on CPU (SDPA has no double backward there). `params` defaults to
    every trainable parameter; vectors are flat float64 numpy arrays of their total size.
    Returns (matvec, dim).
    """
    import torch

    from mars_lib.reward_models.head import bt_loss
    params = [p for p in (params or model.parameters()) if p.requires_grad]
    sizes = [p.numel() for p in params]
    loss = bt_loss(model(**batch_chosen).logits, model(**batch_rejected).logits)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat_g = torch.cat([g.reshape(-1) for g in grads])

    def matvec(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(v, dtype=flat_g.dtype, device=flat_g.device)
        hv = torch.autograd.grad(flat_g @ t, params, retain_graph=True)    # ∇(gᵀv) = H v
        return torch.cat([h.reshape(-1) for h in hv]).double().cpu().numpy()
    return matvec, int(sum(sizes))
