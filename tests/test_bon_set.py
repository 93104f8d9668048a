"""The i.i.d. Best-of-N set: requests, the committed table's checksum, and the all-n estimator."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from mars_lib.downstream import bon_set, best_of_n
from mars_lib.data.gold_task import TaskError, TaskSpec


def test_requests_are_n_iid_draws_of_one_arm_for_the_first_test_prompts():
    reqs = bon_set.bon_requests(TaskSpec(), n=4, n_test_prompts=3)
    assert len(reqs) == 12 and len({pid for pid, *_ in reqs}) == 3
    assert {r.decoding for *_, r in reqs} == {bon_set.ARMS["default"]}          # one policy, one decoding
    assert sorted(r.sample for pid, _, r in reqs if pid == reqs[0][0]) == [2000, 2001, 2002, 2003]
    assert len({r.key("m") for *_, r in reqs}) == 12                          # distinct draws, distinct cache keys
    with pytest.raises(ValueError, match="test prompts"):
        bon_set.bon_requests(TaskSpec(), n=4, n_test_prompts=10_000)
    with pytest.raises(ValueError, match="arm"):
        bon_set.bon_requests(TaskSpec(), n=4, n_test_prompts=2, arm="nope")


def _toy(P=4, N=6, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"prompt_id": np.repeat([f"p{i}" for i in range(P)], N), "sample": np.tile(np.arange(N), P),
                         "gold": rng.normal(size=P * N), "gold3": rng.normal(size=P * N)}).sample(frac=1, random_state=1)


def test_all_n_estimator_matches_brute_force_over_every_subset():
    bon = _toy()
    r = np.random.default_rng(3).normal(size=len(bon))
    r[:4] = r[4]                                                               # ties are broken by sample order
    pp = best_of_n.bon_iid_per_prompt(bon, {("x", 0): r}, judges=("gold",))
    bon = bon.assign(r=r)
    for pid, g in bon.groupby("prompt_id"):
        g = g.sort_values("sample")
        rr, gg = g.r.to_numpy(), g.gold.to_numpy()
        for n in range(1, len(g) + 1):
            subs = list(itertools.combinations(range(len(g)), n))
            # the RM's pick in each subset: highest reward, ties to the later draw (as the stable sort)
            brute = np.mean([gg[sorted(s, key=lambda i: rr[i])[-1]] for s in subs])
            got = pp.query("strategy == 'x' and prompt_id == @pid and n == @n").value.item()
            assert got == pytest.approx(brute, abs=1e-12)
            assert got == pytest.approx(best_of_n.bon_expected_gold(rr, gg, n), abs=1e-12)
        oracle = pp.query("strategy == 'oracle' and prompt_id == @pid")
        assert oracle.value.iloc[-1] == pytest.approx(gg.max()) and oracle.value.iloc[0] == pytest.approx(gg.mean())


def test_summary_and_paired_intervals_cover_prompts_and_seeds():
    bon = _toy(P=30, N=8)
    rng = np.random.default_rng(0)
    rewards = {(s, k): bon.gold.to_numpy() * (1.0 if s == "good" else 0.0) + rng.normal(size=len(bon))
               for s in ("good", "blind") for k in range(3)}
    pp = best_of_n.bon_iid_per_prompt(bon, rewards)
    summ = best_of_n.bon_iid_summary(pp, n_boot=200)
    top = summ[(summ.n == 8) & (summ.judge == "gold")].set_index("strategy")
    assert top.loc["oracle", "mean"] >= top.loc["good", "mean"] > top.loc["blind", "mean"]
    assert (summ.lo <= summ["mean"]).all() and (summ["mean"] <= summ.hi).all()
    paired = best_of_n.bon_iid_paired(pp, [("good", "blind")], n_boot=200)
    row = paired[paired.judge == "gold"].iloc[0]
    assert row.lo > 0 and row.n_seeds == 3 and row.n_clusters == 30


def test_loader_verifies_the_checksum(tmp_path):
    with pytest.raises(TaskError, match="bon_set"):
        bon_set.load_bon_set(tmp_path)
    df = _toy().assign(prompt="x", split="test", arm="default", response="y", finished=True, n_tokens=3)
    bon_set.write_bon_set(df[[c for c in bon_set.COLUMNS if c in df]], tmp_path, "cmd", {})
    assert len(bon_set.load_bon_set(tmp_path)) == len(df)
    meta = json.loads((tmp_path / bon_set.MANIFEST).read_text())
    assert meta["samples_per_prompt"] == 6 and meta["n_prompts"] == 4
    (tmp_path / bon_set.FILE).write_bytes((tmp_path / bon_set.FILE).read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(TaskError, match="checksum"):
        bon_set.load_bon_set(tmp_path)


def test_one_seed_gives_prompt_intervals_and_no_paired_claims():
    """The paper profile trains one seed: intervals over prompts only, and no paired rows (no claim)."""
    bon = _toy(P=10, N=4)
    pp = best_of_n.bon_iid_per_prompt(bon, {("a", 42): bon.gold.to_numpy(), ("b", 42): -bon.gold.to_numpy()})
    summ = best_of_n.bon_iid_summary(pp, n_boot=50)
    assert set(summ.strategy) == {"a", "b", "oracle"} and (summ.n_seeds == 1).all() and (summ.lo <= summ.hi).all()
    assert best_of_n.bon_iid_paired(pp, [("a", "b")]).empty
