"""DPO evaluation tables (mars_lib.downstream.dpo_stage) on synthetic answers with a known effect, and the config
paths of the cpu_dpo profile (its judges, reading another run's reward models)."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.downstream import dpo_stage
from mars_lib.pipeline.config import ConfigError, RunConfig


def _answers(seeds=(0, 1), n=60, effect=0.3, rng_seed=0):
    """base + none/mars_v1 policies per seed; gold = prompt difficulty + policy effect + noise;
    gold3 = a noisier copy. mars_v1 is `effect` better than none on average."""
    rng = np.random.default_rng(rng_seed)
    pids = [f"p{i}" for i in range(n)]
    hard = rng.normal(0, 1, n)
    rows = [dict(policy="base", strategy="base", seed=-1, prompt_id=p, gold=h, log_ratio=0.0) for p, h in zip(pids, hard)]
    for seed in seeds:
        for s, shift in (("none", 0.1), ("mars_v1", 0.1 + effect)):
            rows += [dict(policy=f"{s}_seed{seed}", strategy=s, seed=seed, prompt_id=p,
                          gold=h + shift + rng.normal(0, 0.5), log_ratio=0.1) for p, h in zip(pids, hard)]
    df = pd.DataFrame(rows)
    return df.assign(gold3=df.gold + rng.normal(0, 0.3, len(df)))


def test_paired_two_seeds_pools_prompts_and_seeds():
    ans = _answers()
    out = dpo_stage.dpo_paired(ans, ("gold", "gold3"), n_boot=400)
    assert set(out.judge) == {"gold", "gold3"}
    assert set(zip(out.a, out.b)) == {("none", "base"), ("mars_v1", "base"), ("mars_v1", "none")}
    r = out[(out.judge == "gold") & (out.a == "mars_v1") & (out.b == "none")].iloc[0]
    piv = ans.pivot_table(index="prompt_id", columns="strategy", values="gold", aggfunc="mean")
    assert r.effect == pytest.approx((piv.mars_v1 - piv.none).mean())          # mean over prompts and seeds
    assert r.n_seeds == 2 and r.n_prompts == 60 and r.lo < r.effect < r.hi and r.mde > 0
    assert "two-stage" in r.method and r.mde > (r.hi - r.lo) / 2          # MDE with the interval's t quantiles
    base = out[(out.judge == "gold") & (out.b == "base")].set_index("a").effect
    assert base["mars_v1"] > base["none"] > 0


def test_paired_one_seed_is_over_prompts_and_says_so():
    ans = _answers(seeds=(0,), n=200, effect=0.3)
    r = dpo_stage.dpo_paired(ans, ("gold",)).set_index(["a", "b"]).loc[("mars_v1", "none")]
    assert r.n_seeds == 1 and "prompts" in r.method and "not covered" in r.method
    assert r.lo < 0.3 < r.hi and r.lo > 0                                        # the true effect, detected


def test_paired_interval_covers_a_known_effect():
    hits = 0
    for k in range(40):
        r = dpo_stage.dpo_paired(_answers(n=40, effect=0.2, rng_seed=k), ("gold",), n_boot=200)
        r = r.set_index(["a", "b"]).loc[("mars_v1", "none")]
        hits += r.lo <= 0.2 <= r.hi
    assert hits >= 34                                                            # nominal 95 %: >= 85 % of 40


def test_win_rates_compare_within_a_seed_and_stats_per_judge():
    ans = _answers()
    wr = dpo_stage.dpo_win_rates(ans, ("gold", "gold3"))
    cross = wr[(wr.b != "base")]
    assert len(cross) and (cross.a.str[-1] == cross.b.str[-1]).all()           # seed k vs seed k only
    assert len(wr) == 2 * (4 + 2)
    labels = pd.DataFrame({"strategy": ["none", "mars_v1"] * 2, "seed": [0, 0, 1, 1], "agrees_with_gold": [1, 0, 1, 1]})
    log = pd.DataFrame({"strategy": ["none", "mars_v1"] * 2, "seed": [0, 0, 1, 1], "loss": [0.6, 0.5, 0.6, 0.4]})
    st = dpo_stage.dpo_policy_stats(ans, labels, log)
    assert set(st.judge) == {"gold", "gold3"} and st.groupby("judge").size().eq(5).all()
    assert st[st.policy == "base"].label_agrees_with_gold.isna().all()
    with pytest.raises(ValueError, match="judge column"):
        dpo_stage.dpo_paired(ans.drop(columns=["gold", "gold3"]))


def test_cpu_dpo_profile_and_models_dir(tmp_path):
    cfg = RunConfig.resolve("cpu_dpo")
    assert cfg.dpo_eval_prompts >= 160 and len(cfg.dpo_seeds) >= 2 and "gold" in cfg.dpo_judges
    from mars_lib.judges.task_judge import task_judge_name
    assert task_judge_name(cfg.task_path) == "gold3"          # the task's judge shares no model with policy or RMs
    assert {"none_matched", "uniform", "mars_v1"} <= set(cfg.dpo_strategies)   # the compute-matched baselines
    assert cfg.models_dir == "results" and cfg.results_dir != "results"
    with pytest.raises(ConfigError, match="dpo_judges"):
        RunConfig.resolve("cpu", dpo_judges=("gold", "gpt4"))
    from mars_lib.reward_models import checkpoints
    other = RunConfig.resolve("cpu", results_dir=str(tmp_path / "a"), models_dir=str(tmp_path / "b"),
                              strategies=("none",), seeds=(0,))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "b")):
        checkpoints.load_reward_models(other)


def test_release_memory_returns_freed_heap():
    """After freeing many heap blocks (each below the mmap threshold, so they come from the heap and,
    under runtime_env.sh's 1 GB trim threshold, stay resident), release_memory gives them back."""
    import ctypes.util
    import sys

    from mars_lib.pipeline.memory import release_memory
    if not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None:
        pytest.skip("malloc_trim is glibc's")
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20   # noqa: E731  (MiB)
    blocks = [bytearray(b"x" * (1 << 20)) for _ in range(300)]                       # 300 MiB, touched
    keep = bytearray(16)                                                             # something above them
    before = rss()
    del blocks
    release_memory()
    assert before - rss() > 150, (before, rss())
    del keep
