"""The "when does margin-awareness help?" map (mars_lib.pipeline.helps_map) on small random features: every cell is
paired against uniform_stratified with the same budget, τ → 0 is that arm exactly, the table's schema and
verdicts, the per-seed label draw, the cache."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.pipeline import helps_map
from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.reward_models.features import Pairs

VERDICTS = {"held", "not held", "equivalent", "inconclusive", "identical"}


def _pairs(n, d=8, seed=0, prefix="b", prompts=10):
    rng = np.random.default_rng(seed)
    gold = rng.normal(size=(n, 2))
    df = pd.DataFrame({"pair_id": [f"{prefix}{i}" for i in range(n)], "prompt_id": [f"p{i % prompts}" for i in range(n)],
                       "prompt": "p", "chosen": [f"c{i}" for i in range(n)], "rejected": [f"r{i}" for i in range(n)],
                       "gold_chosen": gold[:, 0], "gold_rejected": gold[:, 1]})
    df["label_correct"] = df.gold_chosen >= df.gold_rejected
    return Pairs(df, rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32))


@pytest.fixture
def world():
    base, test = _pairs(30), _pairs(40, seed=2, prefix="t")
    pool = _pairs(120, seed=1, prefix="s")
    pool.df["source_id"] = np.repeat(base.df.pair_id.to_numpy(), 4)
    cfg = RunConfig.resolve("smoke", rounds=2, budget_ratio=2.0, seeds=[0, 1, 2], n_boot=200, helps_betas=(1.0,),
                            helps_taus_v1=(0.1, 30.0), helps_taus_v2=(50.0,), helps_operators=("paraphrase",))
    return cfg, base, test, (lambda op, beta: pool)


def test_every_cell_is_paired_with_uniform_stratified_on_the_same_budget(world):
    cfg, base, test, pool_for = world
    table, runs = helps_map.helps_map(cfg, base, test, pool_for, labels_beta=1.0, cache=False)
    assert len(table) == 3 and list(table.version) == ["mars_v1", "mars_v1", "mars_v2"]
    assert set(runs.strategy) == {"mars_v1", "mars_v2", "uniform_stratified"}
    assert (runs.n_synthetic == 60).all()                                       # B = 2 × 30 for every arm
    assert (table.n_synthetic_mars == table.n_synthetic_uniform).all()
    assert (runs.groupby(["strategy", "tau"], dropna=False).seed.apply(sorted).map(tuple) == (0, 1, 2)).all()
    cols = {"beta", "operator", "version", "tau", "tau_index", "authors_tau", "ess_over_n", "budget_on_mislabeled",
            "budget_on_mislabeled_uniform", "pool_pairs", "pool_distinct_per_source", "effect", "lo", "hi", "se", "df",
            "p", "p_adj", "mde", "delta", "verdict", "accuracy_effect", "accuracy_p_adj", "accuracy_verdict",
            "mars_gold_accuracy", "uniform_gold_accuracy", "n_seeds", "n_test_pairs", "identical"}
    assert cols <= set(table.columns)
    assert set(table.verdict) <= VERDICTS and set(table.accuracy_verdict) <= VERDICTS
    tested = table.p_adj.notna()                                                # identical cells have no test
    assert (table.delta == 0.01).all() and (table.p_adj[tested] >= table.p[tested] - 1e-12).all()
    assert (table.verdict[~tested] == "identical").all()
    np.testing.assert_allclose(table.effect, table.mars_gold_accuracy - table.uniform_gold_accuracy, atol=1e-9)
    conc = table.set_index("tau").ess_over_n
    assert conc[30.0] < conc[0.1] <= 1.0                                        # larger τ, more concentrated
    assert table.pool_distinct_per_source.iloc[0] == 4.0 and table.authors_tau.tolist() == [True, False, False]


def test_tau_to_zero_is_uniform_stratified_exactly(world):
    cfg, base, test, pool_for = world
    cfg = cfg.replace(helps_taus_v1=(1e-300,), helps_taus_v2=())
    table, _ = helps_map.helps_map(cfg, base, test, pool_for, labels_beta=1.0, cache=False)
    r = table.iloc[0]
    assert r.identical and r.effect == 0.0 and r.accuracy_effect == 0.0 and r.ess_over_n == 1.0
    assert r.verdict == "identical" and np.isnan(r.p_adj)


def test_verdicts_follow_the_adjusted_p():
    t = pd.DataFrame({"identical": [False, False, False, True], "effect": [0.05, -0.05, 0.001, 0.0],
                      "lo": [0.03, -0.07, -0.004, 0.0], "hi": [0.07, -0.03, 0.006, 0.0], "p": [1e-4, 1e-4, 0.7, np.nan],
                      "delta": 0.01, "accuracy_effect": 0.0, "accuracy_lo": -0.1, "accuracy_hi": 0.1,
                      "accuracy_p": 0.9, "accuracy_delta": 0.01})
    out = helps_map.finish(t)
    assert out.verdict.tolist() == ["held", "not held", "equivalent", "identical"]
    assert out.accuracy_verdict.tolist()[:3] == ["inconclusive"] * 3


def test_label_draw_swaps_paraphrases_with_their_source_but_not_a_labelled_pool(world):
    cfg, base, _, pool_for = world
    pool = pool_for("paraphrase", 1.0)
    b, p = helps_map.seed_pairs(cfg, base, pool, 0.05, 1.0, seed=3)
    swapped = set(base.df.pair_id[base.df.chosen != b.df.chosen])
    assert swapped and set(p.df.source_id[p.df.chosen != pool.df.chosen]) == swapped
    b2, _ = helps_map.seed_pairs(cfg, base, pool, 0.05, 1.0, seed=3)
    pd.testing.assert_frame_equal(b.df, b2.df)                                 # the same draw for every arm of a seed
    labelled = Pairs(pool.df.copy(), pool.phi_c, pool.phi_r)             # a resample pool: labels of its own
    b3, p3 = helps_map.seed_pairs(cfg.replace(operator="resample"), base, labelled, 0.05, 1.0, seed=3)
    assert p3 is labelled and b3.df.chosen.tolist() == b.df.chosen.tolist()
    assert b.df.label_correct.mean() > 0.9                                    # β = 0.05: near noise-free


def test_cache_resumes_and_empty_grid_skips(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_CACHE_DIR", str(tmp_path))
    cfg, base, test, pool_for = world
    cfg = cfg.replace(helps_taus_v2=())
    first, _ = helps_map.helps_map(cfg, base, test, pool_for, labels_beta=1.0)
    assert len(list((tmp_path / "helps_map").glob("arm-*.parquet"))) == 3      # baseline + 2 τ
    again, _ = helps_map.helps_map(cfg, base, test, pool_for, labels_beta=1.0)
    pd.testing.assert_frame_equal(first, again)
    empty, runs = helps_map.helps_map(cfg.replace(helps_operators=()), base, test, pool_for, labels_beta=1.0)
    assert empty.empty and runs.empty
    assert "empty" in helps_map.helps_sentence(empty)


def test_sentence_is_generated_from_the_table():
    t = pd.DataFrame({"version": ["mars_v1", "mars_v2", "mars_v2"], "operator": "paraphrase", "beta": [1.0, 1.0, 2.0],
                      "tau": [0.1, 10.0, 10.0], "effect": [0.02, -0.03, 0.0], "lo": [0.01, -0.05, -0.005],
                      "hi": [0.03, -0.01, 0.005], "verdict": ["held", "not held", "equivalent"], "delta": 0.01,
                      "ess_over_n": [0.9, 0.15, 0.5], "budget_on_mislabeled": [0.2, 0.45, 0.3],
                      "budget_on_mislabeled_uniform": 0.2, "identical": False})
    s = helps_map.helps_sentence(t)
    assert "in 1 cell(s)" in s and "mars_v1 τ=0.1" in s and "lost (not held) in 1 cell(s)" in s and "45.0%" in s


@pytest.mark.parametrize("field,value", [("helps_betas", (0.0,)), ("helps_taus_v1", (-1.0,)),
                                         ("helps_taus_v2", (0.5, -2.0)), ("helps_operators", ("nope",))])
def test_config_rejects_a_bad_grid(field, value):
    with pytest.raises(ConfigError, match=field):
        RunConfig.resolve("smoke", **{field: value})
