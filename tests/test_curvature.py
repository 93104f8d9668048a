"""Closed-form BT Hessian vs autograd (fp64), the Fisher identity, and the curvature claim."""
import numpy as np
import pytest
import torch

from mars_lib.curvature import (coverage_factor, empirical_fisher, hessian, lanczos_top, mean_sigma_prime,
                                sigma_prime, spectrum)
from mars_lib.selection import allocation_probs


def test_hessian_matches_autograd():
    rng = np.random.default_rng(0)
    dphi, theta = rng.normal(size=(50, 7)), rng.normal(size=7)
    w = rng.random(50)
    W = torch.tensor(w / w.sum())
    X = torch.tensor(dphi)

    def loss(t):
        return (W * -torch.nn.functional.logsigmoid(X @ t)).sum()
    H_auto = torch.autograd.functional.hessian(loss, torch.tensor(theta)).numpy()
    assert np.allclose(hessian(dphi, theta, w), H_auto, atol=1e-12, rtol=1e-10)


def test_fisher_identity_for_linear_bt():
    # expected Fisher: labels y ~ Bernoulli(σ(Δ)); E[score score^T] = Σ σ'(Δ) ΔφΔφᵀ = Hessian
    rng = np.random.default_rng(1)
    dphi, theta = rng.normal(size=(30, 5)), rng.normal(size=5) * 0.5
    s = 1 / (1 + np.exp(-(dphi @ theta)))
    # label +1 (chosen wins): grad of -log σ(Δ) = -(1-σ)Δφ ; label -1: grad of -log σ(-Δ) = σ Δφ
    F = np.zeros((5, 5))
    for x, p in zip(dphi, s):
        F += p * np.outer((1 - p) * x, (1 - p) * x) + (1 - p) * np.outer(p * x, p * x)
    F /= len(dphi)
    assert np.allclose(F, hessian(dphi, theta), atol=1e-12)
    # the empirical Fisher on all-"chosen wins" labels is the first term only
    assert np.allclose(empirical_fisher(dphi, theta), (dphi * ((1 - s) ** 2)[:, None]).T @ dphi / 30)


def test_margin_aware_weights_raise_mean_curvature():
    rng = np.random.default_rng(2)
    for _ in range(100):
        d = rng.normal(rng.normal(), rng.uniform(0.1, 4), size=200)
        for tau in (0.1, 0.5, 2.0):
            q = allocation_probs(d, tau, "abs")
            assert mean_sigma_prime(d, q) >= mean_sigma_prime(d) - 1e-15
    assert sigma_prime(0.0) == 0.25


def test_lanczos_recovers_top_eigenvalue():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    ev = np.linspace(0.1, 5.0, 60)
    A = Q @ np.diag(ev) @ Q.T
    top = lanczos_top(lambda v: A @ v, 60, k=2, iters=40)
    assert top[0] == pytest.approx(5.0, rel=1e-8)


def test_spectrum_and_coverage():
    H = np.diag([4.0, 1.0, 0.0])
    s = spectrum(H)
    assert s["lambda_max"] == 4 and s["lambda_min_span"] == 1 and s["rank"] == 2 and s["condition_span"] == 4
    assert coverage_factor(2 * H, H) == pytest.approx(2.0)
    assert coverage_factor(np.diag([8.0, 0.5, 0.0]), H) == pytest.approx(0.5)
