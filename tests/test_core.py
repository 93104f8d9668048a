"""Hand-computable checks of the BT loss, allocation, budgets, metrics and the Best-of-N estimator."""
import itertools
import math

import numpy as np
import pytest
import torch

from mars_lib.downstream.best_of_n import bon_expected_gold, kl_bon, win_rate
from mars_lib.evaluation.metrics import gap_stats, pairwise_accuracy, roc_auc
from mars_lib.reward_models.head import HeadConfig, HeadRewardModel, bt_loss
from mars_lib.baselines import west_of_n_top
from mars_lib.mars import allocation_probs, integer_budgets


def test_bt_loss_hand_value():
    # -log σ(1) = log(1 + e^-1) = 0.313261687..., -log σ(-2) = log(1 + e^2) = 2.126928011...
    loss = bt_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 2.0]))
    assert loss.item() == pytest.approx((0.3132616875 + 2.1269280110) / 2, abs=1e-7)


def test_bt_loss_label_margin_shape_never_broadcasts():
    r_c, r_r = torch.zeros(4, 1), torch.zeros(4, 1)
    m = torch.tensor([0.0, 1.0, 2.0, 3.0])
    got = bt_loss(r_c, r_r, m)
    want = np.mean([math.log1p(math.exp(x)) for x in [0, 1, 2, 3]])   # -log σ(-m)
    assert got.item() == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError):
        bt_loss(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        bt_loss(torch.zeros(4), torch.zeros(4), torch.zeros(3))


def test_allocation_sums_to_one_and_favours_small_gaps():
    d = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    q = allocation_probs(d, tau=1.0, gap="abs")
    assert q.sum() == pytest.approx(1.0)
    assert q[2] == q.max() and q[0] == pytest.approx(q[4]) and q[1] == pytest.approx(q[3])
    assert q[2] > q[3] > q[4]
    q2 = allocation_probs(d, tau=1.0, gap="signed")
    assert q2[0] == q2.max() and np.all(np.diff(q2) < 0)   # v2: mis-ranked first
    assert np.allclose(allocation_probs(d, tau=1e-12), 0.2)  # τ -> 0: uniform
    # hand value: softmax(-|d|) at d=0 vs d=0.5
    assert q[2] / q[3] == pytest.approx(math.exp(0.5))


@pytest.mark.parametrize("bad", [dict(tau=0.0), dict(tau=-1.0), dict(gap="square")])
def test_allocation_rejects_bad_params(bad):
    with pytest.raises(ValueError):
        allocation_probs([0.0, 1.0], **{"tau": 1.0, **bad})


def test_allocation_rejects_nan():
    with pytest.raises(ValueError, match="non-finite"):
        allocation_probs([0.0, float("nan")], tau=1.0)


def test_integer_budgets_sum_exactly_and_deterministic():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.dirichlet(np.ones(rng.integers(1, 40)))
        B = int(rng.integers(0, 500))
        b = integer_budgets(q, B, seed=3)
        assert b.sum() == B and np.all(b >= 0)
        assert np.all(np.abs(b - B * q) < 1.0)
        assert np.array_equal(b, integer_budgets(q, B, seed=3))
    # hand case: q = (0.5, 0.25, 0.25), B = 3 -> raw 1.5, .75, .75 -> floors 1,0,0; 2 left go to .75s
    assert integer_budgets(np.array([0.5, 0.25, 0.25]), 3).tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        integer_budgets(np.array([0.5, 0.5]), -1)


def test_west_of_n_picks_largest_gap_per_source():
    gaps = np.array([0.1, 2.0, -1.0, 0.5, 3.0, 0.2])
    src = np.array([0, 0, 0, 1, 1, 1])
    picks = west_of_n_top(gaps, src, k=1, n_sources=2)
    assert picks.tolist() == [1, 4]
    assert west_of_n_top(gaps, src, k=2, n_sources=2).tolist() == [1, 0, 4, 3]


def test_strict_accuracy_ties_wrong_and_auc():
    assert pairwise_accuracy([1, 2, 3], [0, 2, 4]) == pytest.approx(1 / 3)
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [1, 2]) == 0.5
    s = gap_stats([1, 3], [0, 0])
    assert s["mean_gap"] == 2 and s["std_gap"] == 1 and s["snr"] == 2


def test_bon_estimator_equals_brute_force():
    rng = np.random.default_rng(1)
    r, g = rng.normal(size=6), rng.normal(size=6)
    for n in range(1, 7):
        subs = list(itertools.combinations(range(6), n))
        brute = np.mean([g[max(s, key=lambda i: r[i])] for s in subs])
        assert bon_expected_gold(r, g, n) == pytest.approx(brute, abs=1e-12)


def test_kl_bon():
    assert kl_bon(1) == 0.0
    assert kl_bon(2) == pytest.approx(math.log(2) - 0.5)


def test_win_rate_self_is_half():
    g = np.random.default_rng(0).normal(size=200)
    assert win_rate(g, g)["win_rate"] == 0.5


def test_head_rm_learns_separable_preferences():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=16)
    Xc, Xr = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    swap = (Xc - Xr) @ theta < 0
    Xc[swap], Xr[swap] = Xr[swap].copy(), Xc[swap].copy()
    m = HeadRewardModel(16, HeadConfig(lr=0.05, epochs=30, seed=0))
    losses = m.fit(Xc, Xr)
    assert losses[-1] < losses[0] * 0.5
    assert pairwise_accuracy(m.score_features(Xc), m.score_features(Xr)) > 0.95


def test_evaluate_metric_loads_offline_and_matches():
    from mars_lib.evaluation.metrics import compute_metrics, load_evaluate_metric
    m = load_evaluate_metric()
    got = m.compute(reward_chosen=[1.0, 2.0, 3.0], reward_rejected=[0.0, 2.0, 4.0])
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert compute_metrics((np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 4.0]]), None))["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        compute_metrics((np.zeros((3, 3)), None))


def test_draw_from_pool_per_source_budgets():
    import pandas as pd

    from mars_lib.mars import draw_from_pool
    pool = pd.DataFrame({"source_id": ["a", "b", "a", "c", "a", "b"]})       # a: rows 0 2 4, b: 1 5, c: 3
    pos = draw_from_pool(pool, ["a", "b", "c", "zz"], [2, 5, 0, 3], seed=1)
    assert len(pos) == 10
    a, b, z = pos[:2], pos[2:7], pos[7:]
    assert set(a) <= {0, 2, 4} and len(set(a)) == 2                          # b_i <= pool: no duplicates
    assert set(b) <= {1, 5}                                                   # b_i > pool: with replacement
    assert ((z >= 0) & (z < len(pool))).all()                                 # no pool of its own: global pool
    assert np.array_equal(pos, draw_from_pool(pool, ["a", "b", "c", "zz"], [2, 5, 0, 3], seed=1))
    counts = np.bincount(np.concatenate([draw_from_pool(pool, ["a"], [1], seed=s) for s in range(3000)]), minlength=6)
    assert counts[[1, 3, 5]].sum() == 0 and counts[[0, 2, 4]].min() > 900     # uniform within the source
    assert len(draw_from_pool(pool, ["a"], [0], seed=0)) == 0


def test_authors_protocol_three_100_pair_rounds():
    from mars_lib.evaluation.metrics import authors_protocol
    rng = np.random.default_rng(0)
    rc, rr = rng.normal(0.5, 1, 2000), rng.normal(0, 1, 2000)
    out = authors_protocol(rc, rr)
    accs = [pairwise_accuracy(rc[i], rr[i]) for i in
            (np.random.default_rng(s).choice(2000, 100, replace=False) for s in (123, 124, 125))]
    assert out["accuracy"] == pytest.approx(np.mean(accs)) and out["pairs_per_round"] == 100 and out["rounds"] == 3
    assert out["acc_lo"] <= out["accuracy"] <= out["acc_hi"] and out["auc_lo"] <= out["roc_auc"] <= out["auc_hi"]
    assert out["snr"] == pytest.approx(out["mean_margin"] / out["std_margin"])
    assert authors_protocol(rc[:50], rr[:50])["pairs_per_round"] == 50          # fewer pairs than 100: all of them
    with pytest.raises(ValueError):
        authors_protocol(rc, rr[:10])
