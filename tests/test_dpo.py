"""DPO on a tiny random Llama with SmolLM2's tokenizer: log 2 at step 0, exact batched log-probs,
learning on easy pairs, determinism for a seed, clear errors, and save -> load."""
import math

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from mars_lib.pipeline.assets import smollm2_dir
from mars_lib.downstream.dpo import DPOConfig, DPOPolicy, dpo_loss, sequence_logprobs

GOOD = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level.",
        "The Earth orbits the Sun once a year.", "Seven times eight is fifty-six."]
BAD = ["banana banana banana banana", "I do not know, whatever.", "asdf qwer zxcv", "no no no no no no"]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(smollm2_dir())


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(1)


def _model(tok):
    torch.manual_seed(0)                       # the same random weights on every call
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)).eval()


def _df(n=8):
    return pd.DataFrame([{"prompt": f"Question {i}: tell me a fact{'!' * (i % 3)}", "chosen": GOOD[i % 4],
                          "rejected": BAD[(i + 1) % 4]} for i in range(n)])


def _policy(tok, **kw):
    return DPOPolicy(_model(tok), tok, DPOConfig(**{"lr": 5e-3, "batch_size": 4, **kw}))


def test_step0_loss_is_log2(tok):
    ev = _policy(tok).evaluate(_df())                      # LoRA B = 0: the policy is the reference
    assert ev["loss"] == pytest.approx(math.log(2), abs=1e-6) and ev["mean_margin"] == 0.0
    hist = _policy(tok).fit(_df(), steps=2, progress=False)  # a step's loss is taken before its update
    assert hist[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and hist[0]["reward_accuracy"] == 0.0
    assert hist[1]["loss"] != hist[0]["loss"]


def test_batched_logprobs_equal_one_at_a_time(tok):
    m = _model(tok)
    prompts = ["How do I boil an egg?", "Name three primary colours, please, and explain why they are called primary."]
    responses = ["Put it in boiling water for nine minutes.", "Red, yellow and blue."]
    with torch.no_grad():
        batched = sequence_logprobs(m, tok, prompts, responses)
        for p, r, b in zip(prompts, responses, batched):
            ctx = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            c = tok(ctx, add_special_tokens=False).input_ids
            t = tok(r, add_special_tokens=False).input_ids + [tok.eos_token_id]      # EOS counts
            lp = torch.log_softmax(m(input_ids=torch.tensor([c + t])).logits[0].float(), -1)
            want = sum(lp[len(c) - 1 + k, t[k]].item() for k in range(len(t)))
            assert b.item() == pytest.approx(want, abs=1e-4)
    assert batched.shape == (2,)


def test_learns_easy_pairs(tok):
    p, df = _policy(tok, lr=2e-2), _df()
    before = p.evaluate(df)
    hist = p.fit(df, steps=8, progress=False)
    after = p.evaluate(df)
    assert [h["step"] for h in hist] == list(range(1, 9))
    assert hist[-1]["loss"] < hist[0]["loss"] and after["loss"] < before["loss"] - 0.03
    assert after["reward_accuracy"] > before["reward_accuracy"] and after["mean_margin"] > 0
    assert len(p.ref_cache) == len(df)                    # the reference was computed once per pair


def test_same_seed_same_losses(tok):
    a = _policy(tok).fit(_df(), epochs=2, seed=3, progress=False)
    b = _policy(tok).fit(_df(), epochs=2, seed=3, progress=False)
    assert len(a) == 4 and a == b                          # 8 pairs / 4 per step × 2 epochs
    c = _policy(tok).fit(_df(), epochs=2, seed=4, progress=False)
    assert c != a                                          # the seed sets the batch order


def test_loss_shape_checks():
    x = torch.zeros(3)
    assert dpo_loss(x, x, x, x, 0.1)[0].item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(x, x[:, None], x, x, 0.1)                 # [B] vs [B, 1]: no silent broadcast
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(x, torch.zeros(4), x, x, 0.1)


def test_bad_settings_are_clear_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="bf16"):
        DPOConfig(precision="bf16", device="cpu")
    with pytest.raises(ValueError, match="precision"):
        DPOConfig(precision="fp16")
    with pytest.raises(ValueError, match="not both"):
        DPOConfig(steps=2, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        DPOConfig(batch_size=0)
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=0)
    with pytest.raises(ValueError, match="columns"):
        _policy(tok).fit(pd.DataFrame({"prompt": ["x"]}), steps=1, progress=False)
    with pytest.raises(FileNotFoundError, match="mars_dpo.json"):
        DPOPolicy.load(tmp_path, _model(tok))


def test_save_load_identical_logprobs(tok, tmp_path):
    p, df = _policy(tok), _df()
    p.fit(df, steps=3, progress=False)
    p.save(tmp_path / "dpo")
    files = {f.name for f in (tmp_path / "dpo").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "mars_dpo.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    q = DPOPolicy.load(tmp_path / "dpo", _model(tok))
    assert q.steps == 3 and q.cfg == p.cfg and q.digest() == p.digest()
    assert not any(m.training for m in q.model.modules())      # loaded in eval mode: no LoRA dropout in scores
    args = (list(df.prompt), list(df.chosen))
    with torch.no_grad():
        a, b = sequence_logprobs(p.model.eval(), tok, *args), sequence_logprobs(q.model, tok, *args)
        base = sequence_logprobs(_model(tok), tok, *args)
        merged = sequence_logprobs(p.merged(), tok, *args)
    assert torch.equal(a, b) and not torch.allclose(a, base)  # the adapters were saved, and they matter
    torch.testing.assert_close(merged, a, atol=1e-4, rtol=0)   # the merged copy scores like the policy


def test_policy_model_generates_through_generator(tok):
    from mars_lib.synthetic.generation import Decoding, Generator, Request
    p = _policy(tok)
    p.fit(_df(), steps=2, progress=False)
    reqs = [Request("Tell me a fact.", Decoding(temperature=0, max_new_tokens=4))]
    a = Generator(p.model, tok, f"tiny-dpo@{p.digest()}", None, batch_size=2).generate(reqs, desc="peft")
    b = Generator(p.merged(), tok, f"tiny-dpo@{p.digest()}", None, batch_size=2).generate(reqs, desc="merged")
    assert a == b and isinstance(a[0], str)
