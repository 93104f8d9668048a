"""Closed-form BT Hessian vs autograd (fp64), the Fisher identity, and the curvature claim."""
import numpy as np
import pytest
import torch

from mars_lib.evaluation.curvature import (coverage_factor, empirical_fisher, hessian, lanczos_top, mean_sigma_prime,
                                sigma_prime, spectrum)
from mars_lib.mars import allocation_probs


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


def test_hutchinson_trace_within_error_bars():
    from mars_lib.evaluation.curvature import hutchinson_trace
    rng = np.random.default_rng(4)
    A = rng.normal(size=(40, 40))
    A = A @ A.T
    est = hutchinson_trace(lambda v: A @ v, 40, n_samples=400, seed=1)
    assert abs(est["trace"] - np.trace(A)) < 4 * est["se"]


def test_hvp_of_a_transformer_rm_matches_finite_differences():
    """Double backward through a tiny BERT reward model with eager attention (the CPU requirement)."""
    from transformers import BertConfig, BertForSequenceClassification

    from mars_lib.evaluation.curvature import bt_hvp_operator
    from mars_lib.reward_models.head import bt_loss
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     num_labels=1, attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg).double().eval()
    params = [model.classifier.weight, model.bert.pooler.dense.weight]
    bc = {"input_ids": torch.randint(0, 50, (3, 6))}
    br = {"input_ids": torch.randint(0, 50, (3, 6))}
    matvec, dim = bt_hvp_operator(model, bc, br, params)
    v = np.random.default_rng(0).normal(size=dim)
    hv = matvec(v)            # before the finite differences touch the parameters in place

    def grad_at(shift):
        offs = 0
        with torch.no_grad():
            for p in params:
                p.add_(torch.as_tensor(shift[offs:offs + p.numel()]).view_as(p))
                offs += p.numel()
        g = torch.autograd.grad(bt_loss(model(**bc).logits, model(**br).logits), params)
        with torch.no_grad():
            offs = 0
            for p in params:
                p.sub_(torch.as_tensor(shift[offs:offs + p.numel()]).view_as(p))
                offs += p.numel()
        return torch.cat([x.reshape(-1) for x in g]).numpy()
    eps = 1e-5
    fd = (grad_at(eps * v) - grad_at(-eps * v)) / (2 * eps)
    assert np.allclose(hv, fd, atol=1e-6, rtol=1e-4) and np.abs(hv).max() > 1e-4


def test_small_eigendecompositions_run_single_threaded_and_restore_the_thread_count():
    import torch

    from mars_lib.evaluation import curvature
    seen = []
    real = torch.linalg.eigvalsh

    def spy(a):
        seen.append(torch.get_num_threads())
        return real(a)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.linalg.eigvalsh = spy
        ev = curvature._eigvalsh(np.diag([3.0, 1.0, 2.0]))
    finally:
        torch.linalg.eigvalsh = real
    assert seen == [1] and torch.get_num_threads() == 2
    np.testing.assert_allclose(ev, [1.0, 2.0, 3.0])
    torch.set_num_threads(before)
