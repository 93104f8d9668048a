"""Our decoding loop (mars_lib.synthetic.decoding) against transformers' own sampling and greedy search."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor, TopPLogitsWarper

from mars_lib.synthetic.decoding import decode, repetition_penalty, sample_tokens, top_p_candidates

EOS = 1


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def _batch(lengths, seed=0):
    """Left-padded random prompts (no EOS inside), as the Generator's tokenizer produces them."""
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.full((len(lengths), L), EOS, dtype=torch.long)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, L - n:] = torch.randint(2, 300, (n,), generator=g)
        mask[i, L - n:] = 1
    return ids, mask


def test_nucleus_is_transformers_top_p_set():
    torch.manual_seed(1)
    for scale in (0.5, 2.0, 5.0, 20.0):                       # flat (nucleus > 4096 tokens: the sort path) to peaked
        logits = torch.randn(12, 49152) * scale
        ref = TopPLogitsWarper(0.95)(None, logits.clone()) > -float("inf")
        p, ids = top_p_candidates(logits, 0.95)
        ours = torch.zeros_like(ref).scatter_(1, ids, p > 0)
        diff = (ref != ours)
        # the two cumulative sums round differently, so the boundary token may differ; nothing else
        assert int(diff.sum()) <= 1 and bool((torch.softmax(logits, -1)[diff] < 1e-4).all())


def test_repetition_penalty_is_transformers():
    torch.manual_seed(2)
    ids = torch.randint(0, 50, (3, 7))
    logits = torch.randn(3, 50)
    seen = torch.zeros(3, 50, dtype=torch.bool).scatter_(1, ids, True)
    expect = RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())
    assert torch.equal(repetition_penalty(logits, seen, 1.3), expect)


def test_draws_follow_the_warped_distribution():
    torch.manual_seed(3)
    logits = torch.randn(1, 40) * 2
    want = torch.softmax(TopPLogitsWarper(0.8)(None, logits / 0.7), -1)[0]
    draws = sample_tokens(logits.repeat(40_000, 1), 0.7, 0.8, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=40).double() / draws.numel()
    assert float((freq - want).abs().max()) < 0.01
    assert float(freq[want == 0].sum()) == 0.0                 # nothing outside the nucleus


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_equals_transformers_generate(tiny, penalty):
    for n in (5, 11):
        ids, mask = _batch([n], seed=n)
        ref = tiny.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                            repetition_penalty=penalty, pad_token_id=EOS, eos_token_id=EOS)[0, ids.shape[1]:].tolist()
        ref = ref[:ref.index(EOS)] if EOS in ref else ref
        (ours, finished), = decode(tiny, ids, mask, max_new_tokens=12, temperature=0, top_p=1.0,
                                   repetition_penalty_=penalty, eos_token_id=EOS, seed=0)
        assert ours == ref and finished == (len(ref) < 12)


def test_batch_with_padding_and_finished_rows_gives_each_row_its_own_greedy_text(tiny):
    """Chunked prefill, rows leaving the batch and trimmed padding change nothing a row sees."""
    lengths = [3, 17, 8, 8, 30]
    ids, mask = _batch(lengths, seed=5)
    together = decode(tiny, ids, mask, max_new_tokens=10, temperature=0, top_p=1.0, repetition_penalty_=1.2,
                      eos_token_id=EOS, seed=0)
    for i, n in enumerate(lengths):
        alone = decode(tiny, ids[i:i + 1, -n:], mask[i:i + 1, -n:], max_new_tokens=10, temperature=0, top_p=1.0,
                       repetition_penalty_=1.2, eos_token_id=EOS, seed=0)
        assert together[i] == alone[0]


def test_right_padding_is_refused(tiny):
    ids, mask = _batch([4, 6])
    with pytest.raises(ValueError, match="left-padded"):
        decode(tiny, ids.flip(1), mask.flip(1), max_new_tokens=3, temperature=0, top_p=1.0, repetition_penalty_=1.0,
               eos_token_id=EOS, seed=0)
