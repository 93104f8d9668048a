"""One registry per extension point: a new allocation rule or a new synthetic-pair operator is one
entry, and every stage (config, training, paired table, claims, figures, the command line) takes it
with no other file changed."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mars_lib import strategies
from mars_lib.evaluation import claims
from mars_lib.figures import plotting
from mars_lib.pipeline import arms
from mars_lib.synthetic import operators, pools
from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.reward_models.features import Pairs


def _pairs(n, d=8, seed=0, prefix="b"):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    pc, pr = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    swap = (pc - pr) @ w < 0                                 # a learnable preference: chosen has the larger w·φ
    pc[swap], pr[swap] = pr[swap].copy(), pc[swap].copy()
    df = pd.DataFrame({"pair_id": [f"{prefix}{i}" for i in range(n)], "prompt": [f"q{i % 7}" for i in range(n)],
                       "prompt_id": [f"q{i % 7}" for i in range(n)], "chosen": "c", "rejected": "r"})
    return Pairs(df, pc.astype(np.float32), pr.astype(np.float32))


@pytest.fixture
def toy_strategy():
    # ---- the whole new allocation rule: one entry (q ∝ exp(−τ Δ²), a Gaussian window around Δ = 0)
    from mars_lib.mars import Selection, integer_budgets

    def q(gaps, tau):
        s = -tau * np.asarray(gaps, float) ** 2
        return np.exp(s - s.max()) / np.exp(s - s.max()).sum()

    def rule(r):
        b = integer_budgets(q(r.gaps(), r.cfg.tau_v1), r.budget, seed=r.seed)
        return Selection(r.synthesize(b), r.gaps(), b)

    strategies.register(strategies.Strategy("toy_window", "Toy window", "#123456", rule, baselines=("uniform",),
                                            q=q, tau_field="tau_v1", aliases=("toy",)))
    # ---- end of the entry
    yield "toy_window"
    strategies.REGISTRY.pop("toy_window")


def _setup(strats, **kw):
    base = _pairs(40)
    pool = _pairs(160, seed=1, prefix="s")
    pool.df["source_id"] = np.repeat(base.df.pair_id.to_numpy(), 4)
    test = _pairs(60, seed=2, prefix="t")
    cfg = RunConfig.resolve("smoke", **{"rounds": 2, "budget_ratio": 1.0, "seeds": [0, 1, 2], "strategies": strats,
                                        "tau_v1": 5.0, "human_track": "off", **kw})
    return base, pool, test, cfg


def test_a_new_allocation_rule_runs_end_to_end(toy_strategy, tmp_path, capsys):
    base, pool, test, cfg = _setup(("uniform", toy_strategy))
    trained = arms.train_strategies(cfg, base, pool, {"test": test})              # training
    assert {s for s, _ in trained} == {"uniform", toy_strategy}
    alloc = trained[(toy_strategy, 0)].allocations
    assert (alloc.groupby("round").budget.sum() == 40).all()
    per_pair = claims.per_pair_outcomes(trained, test, "toy-track", "head")
    paired = claims.paired_table(per_pair, targets=(toy_strategy,), metrics=("accuracy",), n_boot=200)  # paired table
    assert set(paired.vs) == {"uniform"}
    table = claims.claims_table(per_pair, n_boot=200)                              # claims row
    row = table[table.claim_id == f"{toy_strategy}>uniform"]
    assert len(row) == 1 and "Toy window" in row.claim.iloc[0] and row.verdict.iloc[0] in claims_verdicts()
    ax = plotting.bars_with_ci(claims.strategy_intervals(per_pair, metrics=("accuracy",), n_boot=200), "accuracy")
    assert "Toy window" in [t.get_text() for t in ax.get_xticklabels()]          # figure: its label and colour
    assert matplotlib.colors.to_hex(ax.patches[-1].get_facecolor()) == "#123456"
    # the command line: `mars augment --version toy`
    from mars_lib.cli import main
    from mars_lib.data.pairs import to_trl_jsonl
    from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task
    pairs = tmp_path / "pairs.jsonl"
    to_trl_jsonl(load_task(DEFAULT_TASK_DIR, n_prompts=6).split("train"), pairs)
    assert main(["train", "--pairs", str(pairs), "--out", str(tmp_path / "rm"), "--epochs", "1"]) == 0
    assert main(["augment", "--pairs", str(pairs), "--rm", str(tmp_path / "rm"), "--budget", "12", "--version", "toy",
                 "--out", str(tmp_path / "aug.jsonl")]) == 0
    assert "allocation (toy)" in capsys.readouterr().err
    assert len([json.loads(line) for line in open(tmp_path / "aug.jsonl")]) > len(open(pairs).readlines())


def claims_verdicts():
    return {"held", "not held", "equivalent", "inconclusive", "identical"}


def test_config_names_only_registered_arms_and_operators(toy_strategy):
    assert RunConfig.resolve("smoke", strategies=(toy_strategy,)).strategies == (toy_strategy,)
    with pytest.raises(ConfigError, match="unknown strategy"):
        RunConfig.resolve("smoke", strategies=("no_such_arm",))
    with pytest.raises(ConfigError, match="operator"):
        RunConfig.resolve("smoke", operator="no_such_operator")
    assert plotting.color("not-an-arm", "k") == "k" and plotting.label("not-an-arm") == "not-an-arm"


@pytest.fixture
def toy_operator():
    # ---- the whole new operator: one entry (each source's pair with its features jittered, label inherited)
    def build(ctx, base):
        rng = np.random.default_rng(ctx.cfg.label_seed)
        df = base.df.assign(source_id=base.df.pair_id, pair_id=base.df.pair_id + "#jitter", origin="jitter")
        return Pairs(df, base.phi_c + 0.05 * rng.normal(size=base.phi_c.shape).astype(np.float32),
                     base.phi_r + 0.05 * rng.normal(size=base.phi_r.shape).astype(np.float32))

    operators.register(operators.Operator("jitter", "Feature jitter", build))
    # ---- end of the entry
    yield "jitter"
    operators.REGISTRY.pop("jitter")


def test_a_new_operator_runs_end_to_end(toy_operator):
    from mars_lib.pipeline.context import Context
    base, _, test, cfg = _setup(("uniform", "mars_v1"), operator=toy_operator)
    with pytest.raises(ConfigError, match="pre-generated pool"):                 # no on-demand builds: said so
        cfg.replace(pool_mode="on_demand")
    pool = pools.make_pool(cfg, Context(cfg, task=None, encoder=None), base)
    assert len(pool.df) == len(base.df) and set(pool.df.origin) == {"jitter"}
    trained = arms.train_strategies(cfg, base, pool, {"test": test})
    hist = pd.concat([r.history for r in trained.values()])
    assert (hist[hist.metric == "n_synthetic"].value == 40).all()


def test_the_dispatch_figures_and_command_line_name_no_arm():
    """Where arms used to be listed by hand (colours and labels, the training dispatch, the CLI's
    versions, the rounds loop), no arm's name appears as a string: they read the registry."""
    import re

    from mars_lib.pipeline.io import REPO_ROOT
    for name in ("figures/plotting.py", "cli.py", "pipeline/arms.py", "mars.py", "synthetic/operators.py"):
        text = (REPO_ROOT / "mars_lib" / name).read_text()
        hits = [n for n in strategies.names() if re.search(rf'(?<!\[)"{n}"', text)]     # (a column name is not an arm)
        assert not hits, (name, hits)


def test_an_arm_at_a_fixed_tau_is_its_own_arm():
    """"mars_v1@50" trains MARS v1 at τ = 50 whatever the config's tau_v1 says, beside mars_v1 at the config's
    τ, and gets its own claims rows; a name that cannot be one is refused clearly."""
    from mars_lib.mars import allocation_probs
    try:
        arm = strategies.get("mars_v1@50.0")
        assert arm.name == "mars_v1@50" and strategies.get("v1@50") is arm and strategies.known("mars_v1@50")
        g = np.linspace(-2, 2, 9)
        np.testing.assert_allclose(arm.q(g), allocation_probs(g, 50.0, "abs"))
        base, pool, test, cfg = _setup(("uniform_stratified", "mars_v1", "mars_v1@50"), tau_v1=1e-9)
        trained = arms.train_strategies(cfg, base, pool, {"test": test})
        b_cfg = trained[("mars_v1", 0)].allocations.query("round == 2").budget
        b_fixed = trained[("mars_v1@50", 0)].allocations.query("round == 2").budget
        assert b_cfg.nunique() == 1 and b_fixed.nunique() > 1          # τ ≈ 0: uniform; τ = 50: concentrated
        table = claims.claims_table(claims.per_pair_outcomes(trained, test, "toy", "head"), n_boot=200)
        assert "mars_v1@50>uniform_stratified" in set(table.claim_id)
        assert "at τ = 50" in table[table.claim_id == "mars_v1@50>uniform_stratified"].claim.iloc[0]
        for bad in ("mars_v1@x", "uniform@2", "nope@1"):
            assert not strategies.known(bad)
            with pytest.raises(ValueError):
                strategies.get(bad)
    finally:
        strategies.REGISTRY.pop("mars_v1@50", None)


def test_an_arm_at_a_target_ess_hits_it_every_round():
    """"mars_v1@ess0.5" picks τ each round from that round's gaps so that the trained budgets have
    ESS/N ≈ 0.5 (bisection: within 0.03 at N = 40, B = 40), whatever the config's τ; bad names refused."""
    from mars_lib.mars import concentration, tau_for_ess
    try:
        arm = strategies.get("v1@ess0.5")
        assert arm.name == "mars_v1@ess0.5" and strategies.get("mars_v1@ess0.5") is arm
        base, pool, test, cfg = _setup(("uniform_stratified", "mars_v1@ess0.5"), tau_v1=1e-9)
        trained = arms.train_strategies(cfg, base, pool, {"test": test})
        alloc = trained[("mars_v1@ess0.5", 0)].allocations
        for t, b in alloc.groupby("round").budget:
            assert b.sum() == 40
            if t > 1:                                     # round 1's RM is untrained: flat gaps, uniform
                assert abs(concentration(b.to_numpy())["ess_over_n"] - 0.5) < 0.03
        g = np.random.default_rng(0).normal(0, 0.3, 300)
        for target in (0.9, 0.5, 0.2):                    # v2's q as well as v1's, budgets or continuous q
            q2 = strategies.get("mars_v2").q
            tau = tau_for_ess(g, target, q2, budget=600, seed=1)
            assert tau > 0 and abs(concentration(q2(g, tau))["ess_over_n"] - target) < 0.03
        assert tau_for_ess(np.zeros(10), 0.5) == 1e4      # flat gaps cannot concentrate: the range's end
        for bad in ("mars_v1@essx", "mars_v1@ess1.5", "uniform@ess0.5"):
            assert not strategies.known(bad)
    finally:
        strategies.REGISTRY.pop("mars_v1@ess0.5", None)
