"""The rounds loop on small random features: same budget for every strategy, history schema."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.pipeline.config import RunConfig
from mars_lib.reward_models.features import Pairs
from mars_lib.mars import RoundInputs, Sources
from mars_lib.pipeline.arms import run_strategy
from mars_lib.strategies import get
from mars_lib.reward_models.head import HeadRewardModel


def select_synthetic(name, model, base, pool, budget, cfg, round_seed):
    """One round of an arm's rule: (synthetic pairs, base reward gaps, per-source budgets)."""
    sel = get(name).rule(RoundInputs(model, base, Sources(pool), budget, cfg, round_seed, trained=True))
    return sel.synthetic, sel.gaps, sel.budgets


def _pairs(n, d=8, seed=0, prefix="b"):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"pair_id": [f"{prefix}{i}" for i in range(n)], "prompt": "p", "chosen": "c", "rejected": "r",
                       "gold_chosen": 1.0, "gold_rejected": 0.0, "label_correct": rng.random(n) < 0.8})
    return Pairs(df, rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32))


@pytest.fixture
def setup():
    base = _pairs(30)
    pool = _pairs(120, seed=1, prefix="s")
    pool.df["source_id"] = np.repeat(base.df.pair_id.to_numpy(), 4)
    cfg = RunConfig.resolve("smoke", rounds=2, budget_ratio=2.0, seeds=[0])
    return base, pool, {"test": _pairs(20, seed=2, prefix="t")}, cfg


@pytest.mark.parametrize("strategy", ["uniform", "won", "mars_v1", "mars_v2"])
def test_every_strategy_spends_exactly_the_budget(setup, strategy):
    base, pool, evals, cfg = setup
    r = run_strategy(strategy, base, pool, evals, cfg, seed=0)
    n_syn = r.history[(r.history.metric == "n_synthetic")].value
    assert (n_syn == 60).all() and len(n_syn) == 2
    assert set(r.history.columns) >= {"strategy", "seed", "round", "split", "metric", "value"}
    assert (r.allocations.groupby("round").budget.sum() == 60).all()


@pytest.mark.parametrize("strategy", ["none_matched", "reweight", "easy_first", "hard_filter"])
def test_controls_take_exactly_as_many_optimizer_steps_as_uniform(setup, strategy):
    """Compute-matched controls: the same training-set size, hence optimizer steps, as uniform."""
    base, pool, evals, cfg = setup
    steps = lambda s: run_strategy(s, base, pool, evals, cfg, seed=0).history.query(  # noqa: E731
        "metric in ['optimizer_steps', 'n_train']").pivot_table(index="round", columns="metric", values="value")
    u, c = steps("uniform"), steps(strategy)
    pd.testing.assert_frame_equal(u, c)
    assert (u.optimizer_steps.diff().dropna() > 0).all()
    none = steps("none")
    assert (none.optimizer_steps < u.optimizer_steps).all()        # the authors' none takes fewer steps


def test_reweight_and_none_matched_add_no_synthetic_text(setup):
    """reweight repeats base pairs b_i times with MARS's q; no row of its training set is synthetic."""
    base, pool, evals, cfg = setup
    cfg = RunConfig.resolve("smoke", rounds=1, budget_ratio=2.0, seeds=[0], tau_v1=50.0)
    model = HeadRewardModel(8)
    model.fit(base.phi_c, base.phi_r, epochs=3)
    for s in ("reweight", "none_matched"):
        syn, gaps, b = select_synthetic(s, model, base, pool, 60, cfg, round_seed=1)
        assert set(syn.df.pair_id) <= set(base.df.pair_id) and len(syn.df) == 60 == b.sum()
        counts = syn.df.pair_id.value_counts().reindex(base.df.pair_id, fill_value=0).to_numpy()
        assert (counts == b).all()
        np.testing.assert_array_equal(syn.phi_c, base.phi_c[np.repeat(np.arange(len(b)), b)])
    _, gaps, b_re = select_synthetic("reweight", model, base, pool, 60, cfg, round_seed=1)
    _, _, b_mars = select_synthetic("mars_v1", model, base, pool, 60, cfg, round_seed=1)
    np.testing.assert_array_equal(b_re, b_mars)              # the same allocation as MARS v1, without new text
    assert b_re.max() > b_re.min()                            # (at τ = 50 it is not uniform)


def test_easy_first_is_the_mirror_of_mars_and_hard_filter_drops_negative_gaps(setup):
    from mars_lib.baselines import hard_filter_keep
    from mars_lib.mars import allocation_probs
    gaps = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0, -0.2, 1.0, 0.1, -2.0])
    q_hard, q_easy = allocation_probs(gaps, 1.0, "abs"), allocation_probs(gaps, 1.0, "abs", easy=True)
    assert q_hard.argmax() == 2 and q_easy.argmax() == 5      # MARS: smallest |Δ|; easy-first: largest |Δ|
    keep = hard_filter_keep(gaps, 0.2)
    assert list(np.flatnonzero(~keep)) == [0, 9]               # the two most negative gaps
    base, pool, evals, cfg = setup
    r = run_strategy("hard_filter", base, pool, evals, cfg, seed=0)
    assert (r.allocations.groupby("round").budget.sum() == 60 + 3).all()   # B + the 3 dropped (10 % of 30)


def test_none_adds_nothing_and_is_deterministic(setup):
    base, pool, evals, cfg = setup
    a = run_strategy("none", base, pool, evals, cfg, seed=0).history
    b = run_strategy("none", base, pool, evals, cfg, seed=0).history
    assert (a[a.metric == "n_synthetic"].value == 0).all()
    pd.testing.assert_frame_equal(a, b)


def test_mars_v2_gives_mis_ranked_sources_more(setup):
    base, pool, _, cfg = setup
    m = HeadRewardModel(8)
    with __import__("torch").no_grad():
        m.net.weight.copy_(__import__("torch").ones(1, 8))
    syn, gaps, b = select_synthetic("mars_v2", m, base, pool, 600, cfg, round_seed=1)
    assert np.corrcoef(gaps, b)[0, 1] < -0.5                  # negative gap -> larger budget
    syn1, gaps1, b1 = select_synthetic("mars_v1", m, base, pool, 600, cfg, round_seed=1)
    assert np.corrcoef(np.abs(gaps1), b1)[0, 1] < -0.5        # v1: small |gap| -> larger budget


def test_on_demand_mode_uses_builder(setup):
    base, pool, evals, _ = setup
    cfg = RunConfig.resolve("smoke", rounds=1, budget_ratio=1.0, seeds=[0], pool_mode="on_demand")
    calls = []

    def builder(budgets, round_seed):
        calls.append(int(budgets.sum()))
        return pool.take(np.arange(int(budgets.sum())) % len(pool.df))
    run_strategy("mars_v1", base, Sources(pool, on_demand=builder), evals, cfg, seed=0)
    assert calls == [30]
    with pytest.raises(ValueError, match="on_demand"):
        run_strategy("mars_v1", base, pool, evals, cfg, seed=0)


def test_per_round_curvature_of_realised_training_set(setup):
    base, pool, evals, cfg = setup
    h = run_strategy("mars_v1", base, pool, evals, cfg, seed=0).history
    c = h[h.split == "curvature"]
    assert set(c["round"]) == {1, 2}
    ratio = c[c.metric == "mean_sigma_prime_ratio_to_base"].value
    assert ratio.between(0.1, 10).all()
    none = run_strategy("none", base, pool, evals, cfg, seed=0).history
    r0 = none[(none.split == "curvature") & (none.metric == "trace_ratio_to_base")].value
    assert (r0 == 1.0).all()           # no synthetic pairs: the training set is the base set


def _candidates(n_prompts=5, n=4, d=8, seed=3):
    from mars_lib.baselines import Candidates
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"prompt_id": np.repeat([f"q{i}" for i in range(n_prompts)], n), "prompt": "p",
                       "response": [f"r{i}" for i in range(n_prompts * n)]})
    return Candidates(df, rng.normal(size=(n_prompts * n, d)).astype(np.float32))


def test_west_of_n_pace_spends_the_budget_on_the_rms_most_confident_pairs():
    from mars_lib.baselines import west_of_n_pace
    cand = _candidates()
    model = HeadRewardModel(8)
    torch_seed_scores = model.score_features(cand.phi)
    syn = west_of_n_pace(model, cand, budget=12, seed=0)
    assert len(syn.df) == 12 and (syn.df.groupby("source_id").size() <= 6).all()
    rc, rr = model.pair_scores(syn)
    assert (rc >= rr).all()                                     # labelled by the RM's own order
    for pid, g in syn.df.groupby("source_id", sort=False):      # (best, worst) of the prompt comes first
        s = pd.Series(torch_seed_scores, index=cand.df.response)[cand.df.prompt_id.eq(pid).to_numpy()]
        assert g.chosen.iloc[0] == s.idxmax() and g.rejected.iloc[0] == s.idxmin()
    assert syn.df.gold_chosen.isna().all()                      # never reads a gold score


def test_won_pace_adds_nothing_before_the_rm_is_trained(setup):
    base, pool, evals, cfg = setup
    base.df["prompt_id"] = [f"q{i % 5}" for i in range(len(base.df))]
    r = run_strategy("won_pace", base, Sources(pool, policy=_candidates(n=6)), evals, cfg, seed=0)
    n_syn = r.history[r.history.metric == "n_synthetic"].sort_values("round").value.to_numpy()
    assert n_syn[0] == 0 and n_syn[1] == 60


def test_flip_filter_drops_pairs_the_first_rm_reverses():
    """flip_filter='rm': synthetic pairs whose features the no-augmentation RM orders against their
    inherited label are dropped and counted; 'off' keeps everything."""
    import dataclasses

    import pandas as pd

    from mars_lib.synthetic import pools
    from mars_lib.pipeline.config import RunConfig
    from mars_lib.reward_models.features import Pairs
    rng = np.random.default_rng(0)
    n, d = 60, 8
    v = np.eye(d)[0].astype(np.float32)
    noise = lambda k: 0.1 * rng.normal(size=(k, d)).astype(np.float32)      # noqa: E731
    base = Pairs(pd.DataFrame({"pair_id": [f"b{i}" for i in range(n)], "prompt": "p", "chosen": "c", "rejected": "r"}),
                 v + noise(n), -v + noise(n))
    flipped = np.arange(2 * n) % 4 == 0                                        # a quarter carry a reversed label
    sc = np.where(flipped[:, None], -v, v) + noise(2 * n)
    pool = Pairs(pd.DataFrame({"pair_id": [f"s{i}" for i in range(2 * n)], "prompt": "p", "chosen": "c", "rejected": "r",
                               "source_id": np.repeat(base.df.pair_id, 2).to_numpy()}), sc, -sc)
    cfg = RunConfig.resolve("smoke", seeds=[0])
    kept = pools.drop_label_flips(dataclasses.replace(cfg, flip_filter="rm"), None, base, pool)
    assert kept.df.attrs["flip_dropped"] == flipped.sum() and len(kept.df) == (~flipped).sum()
    assert set(kept.df.pair_id) == set(pool.df.pair_id[~flipped])
    assert pools.drop_label_flips(cfg, None, base, pool) is pool


def test_evaluating_only_after_the_last_round_trains_the_same_model(setup):
    """eval_every_round=False (the τ sweep, the fine-tuned regime on CPU) skips the held-out scoring
    of rounds 0..T-1 and changes nothing else: same allocations, same final model and accuracy."""
    import dataclasses
    base, pool, evals, cfg = setup
    every = run_strategy("mars_v1", base, pool, evals, cfg, seed=3)
    last = run_strategy("mars_v1", base, pool, evals, dataclasses.replace(cfg, eval_every_round=False), seed=3)
    te = lambda r: r.history[r.history.split == "test"]  # noqa: E731
    assert sorted(te(every)["round"].unique()) == [0, 1, 2] and sorted(te(last)["round"].unique()) == [2]
    pd.testing.assert_frame_equal(te(every)[te(every)["round"] == 2].reset_index(drop=True),
                                  te(last).reset_index(drop=True))
    pd.testing.assert_frame_equal(every.allocations, last.allocations)
    np.testing.assert_array_equal(every.model.linear_theta(), last.model.linear_theta())


@pytest.mark.parametrize("budget", [60, 65])
def test_uniform_stratified_budgets_are_exactly_uniform(setup, budget):
    """MARS's draw with q uniform: every source gets floor(B/N) or one more, B in all; the synthetic
    pairs of each source are drawn from that source's own pool rows (4 per source here)."""
    base, pool, _, cfg = setup
    model = HeadRewardModel(8)
    model.fit(base.phi_c, base.phi_r, epochs=1)
    syn, _, b = select_synthetic("uniform_stratified", model, base, pool, budget, cfg, round_seed=3)
    b = np.asarray(b)
    assert b.sum() == budget and b.max() - b.min() <= (0 if budget % len(b) == 0 else 1)
    assert set(np.unique(b)) <= {budget // len(b), budget // len(b) + 1}
    counts = syn.df.source_id.value_counts().reindex(base.df.pair_id, fill_value=0).to_numpy()
    assert (counts == b).all()
