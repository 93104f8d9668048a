"""The resample operator (close pairs among fresh policy samples) and its labelers."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.synthetic.builders import resample_pool
from mars_lib.judges.labelers import GoldLabeler, LLMJudgeLabeler, RewardModelLabeler


def _samples(n_prompts=4, n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = [{"prompt_id": f"q{p}", "prompt": f"question {p}?", "response": f"answer {p}-{k}",
             "gold": float(rng.normal()), "n_tokens": 10 + k} for p in range(n_prompts) for k in range(n)]
    return pd.DataFrame(rows)


def _sources(n_prompts=4, per_prompt=2):
    return pd.DataFrame({"pair_id": [f"b{p}-{k}" for p in range(n_prompts) for k in range(per_prompt)],
                         "prompt_id": [f"q{p}" for p in range(n_prompts) for _ in range(per_prompt)]})


@pytest.mark.parametrize("band", [(0.1, 0.5), (0.0, 0.3), (0.5, 1.0)])
def test_emitted_pairs_fall_inside_the_band_under_the_labeler(band):
    s = _samples()
    lab = GoldLabeler(s, beta=1.0)
    pool = resample_pool(_sources(), s, lab, band=band, seed=0)
    lo, hi = pool.attrs["band_abs"]
    gap = np.abs(pool.gold_chosen - pool.gold_rejected)
    assert len(pool) and (gap >= lo - 1e-12).all() and (gap <= hi + 1e-12).all() and (gap > 0).all()
    assert np.allclose(gap, pool.label_gap)
    every = np.abs(np.subtract.outer(s.gold.to_numpy(), s.gold.to_numpy()))
    assert lo == pytest.approx(np.quantile(np.concatenate([every[6 * p:6 * p + 6, 6 * p:6 * p + 6][np.triu_indices(6, 1)]
                                                           for p in range(4)]), band[0]))


def test_counters_match_the_work_done():
    s = _samples()
    lab = GoldLabeler(s, beta=1.0)
    pool = resample_pool(_sources(), s, lab, seed=0)
    assert pool.attrs["labeler_calls"] == lab.calls == pool.attrs["candidates"] == 4 * 15
    assert pool.attrs["generated_tokens"] == s.n_tokens.sum()
    # each source of a prompt gets that prompt's kept pairs
    assert pool.groupby("source_id").size().sum() == 2 * pool.attrs["kept"]


def test_gold_labels_are_noisy_like_the_task_and_rm_labels_follow_the_rm_only():
    s = _samples(n_prompts=40, n=6, seed=1)
    src = _sources(40, 1)
    noisy = resample_pool(src, s, GoldLabeler(s, beta=1.0), band=(0.0, 1.0), seed=0)
    agree = (noisy.gold_chosen > noisy.gold_rejected).mean()
    expect = (1 / (1 + np.exp(-np.abs(noisy.gold_chosen - noisy.gold_rejected)))).mean()
    assert abs(agree - expect) < 0.05 and agree < 1.0
    seen = []

    def score_fn(prompts, responses):                  # an RM that prefers *lower* gold: labels must follow it
        seen.extend(responses)
        assert all(isinstance(x, str) for x in prompts + responses)
        g = dict(zip(s.response, s.gold))
        return np.array([-g[r] for r in responses])
    rm = RewardModelLabeler(score_fn)
    pool = resample_pool(src, s, rm, band=(0.0, 1.0), seed=0)
    assert (pool.gold_chosen < pool.gold_rejected).all()          # the RM's order, not the gold one
    assert rm.calls == pool.attrs["candidates"] and set(seen) <= set(s.response)


def test_gold_labeler_needs_judged_samples_and_bad_band_is_an_error():
    with pytest.raises(ValueError, match="gold"):
        GoldLabeler(pd.DataFrame({"response": ["a"]}), beta=1.0)
    s = _samples()
    with pytest.raises(ValueError, match="band"):
        resample_pool(_sources(), s, GoldLabeler(s, 1.0), band=(0.5, 0.2))


def test_llm_judge_is_order_symmetric_with_both_orders():
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mars_lib.pipeline.assets import smollm2_dir
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512))
    judge = LLMJudgeLabeler(model, tok, both_orders=True)
    p, a, b = ["Name a colour."] * 2, ["Blue.", "Red is a colour."], ["I like trains.", "no"]
    ab, ba = judge.compare(p, a, b), judge.compare(p, b, a)
    np.testing.assert_allclose(ab, -ba, atol=1e-5)
    assert judge.calls == 4
    rand = LLMJudgeLabeler(model, tok, both_orders=False, seed=1)
    assert rand.compare(p, a, b).shape == (2,)
