"""The gold judge: batched log-probs are exact, and it agrees with common sense on hand-picked cases."""
import numpy as np
import pytest
import torch

from mars_lib.judges.gold1 import SANITY_CASES, non_repetition, length_score, complete_score


@pytest.fixture(scope="module")
def judge():
    from mars_lib.judges.gold1 import GoldJudge
    return GoldJudge.offline()


def test_batched_logprob_equals_one_at_a_time(judge):
    prompts = ["How do I boil an egg?", "Name three primary colours, please, and explain why they are called primary."]
    responses = ["Put it in boiling water for nine minutes.", "Red, yellow and blue."]
    batched = judge.mean_logprob(prompts, responses)
    for p, r, b in zip(prompts, responses, batched):
        ctx = judge.tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        c = judge.tok(ctx, add_special_tokens=False).input_ids
        t = judge.tok(r, add_special_tokens=False).input_ids
        with torch.inference_mode():
            lp = torch.log_softmax(judge.lm(input_ids=torch.tensor([c + t])).logits[0].float(), -1)
        want = np.mean([lp[len(c) - 1 + k, t[k]].item() for k in range(len(t))])
        assert b == pytest.approx(want, abs=2e-4)


def test_sanity_cases_best_first_and_empty_last(judge):
    from mars_lib.judges.gold1 import sanity_table
    t = sanity_table(judge)
    assert t.gold_rank.iloc[0] == 1                        # the helpful recipe wins
    assert t.gold.iloc[-1] == 0.0                          # empty scores zero on every facet
    assert t.set_index("case").gold["off topic"] < t.set_index("case").gold["helpful recipe"] - 2
    assert len(t) == len(SANITY_CASES)


def test_facet_hand_values():
    assert non_repetition("a b c a b c a b c") == pytest.approx(3 / 7)
    assert non_repetition("one two three four") == 1.0
    assert length_score(" ".join(["w"] * 50)) == pytest.approx(1.0)
    assert complete_score("It ends.", False) == 1.0 and complete_score("It ends and", False) == 0.0


def test_judge_cache_returns_identical_facets_without_rejudging(judge, tmp_path):
    from mars_lib.judges.gold1 import JudgeCache
    old, judge.cache = judge.cache, JudgeCache(tmp_path / "judge.sqlite")
    try:
        p, r, f = ["Name a colour."] * 3, ["Blue.", "Red is a warm colour.", "Blue."], [True, True, True]
        n0 = judge.judged
        a = judge.facets(p, r, f)
        assert judge.judged - n0 == 2                            # duplicates judged once
        b = judge.facets(p, r, f)
        assert judge.judged - n0 == 2                            # second call: all from the cache
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy())
        assert a.iloc[0].equals(a.iloc[2])
    finally:
        judge.cache = old


def test_chunked_output_layer_gives_the_same_log_probs(judge):
    """response_mean_logprobs applies the 49k-word output layer `chunk` positions at a time (memory): the
    chunk size must not change the result."""
    from mars_lib.judges.gold1 import left_padded, response_mean_logprobs
    seqs = [judge.tok(t, add_special_tokens=False).input_ids for t in
            ["Tell me about rivers. Rivers carry water from hills to the sea, and they shape valleys.",
             "Hi. Hello there, friend."]]
    r_lens = [12, 3]
    ids, att, pos = left_padded(seqs, 0)
    whole = response_mean_logprobs(judge.lm, ids, att, pos, r_lens, chunk=4096)
    assert response_mean_logprobs(judge.lm, ids, att, pos, r_lens, chunk=5) == pytest.approx(whole, abs=1e-5)


def test_budget_split_keeps_short_batches_whole_and_splits_long_ones():
    from mars_lib.judges.gold1 import budget_split
    assert budget_split([200] * 16) == [list(range(16))]                       # a task batch: one forward
    groups = budget_split([300, 400, 1500, 1600, 1700], max_cells=4_000_000)
    assert sum(groups, []) == list(range(5)) and all(groups)
    assert all(len(g) * max([300, 400, 1500, 1600, 1700][j] for j in g) ** 2 <= 4_000_000 or len(g) == 1
               for g in groups)
    assert budget_split([5000], max_cells=10) == [[0]]                           # one row always fits
