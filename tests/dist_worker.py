"""Worker of tests/test_distributed.py: trains a fine-tuned RM or a DPO policy and writes its final
scores. Run as one process (`python tests/dist_worker.py MODE OUT`) or under
`accelerate launch --multi_gpu --num_processes 2` (no GPU: 2 CPU processes with gloo); the
training code is the same in both (mars_lib.reward_models.distributed)."""
import json
import sys

import pandas as pd
import torch

from mars_lib.reward_models import distributed as ddp

GOOD = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level.",
        "The Earth orbits the Sun once a year.", "Seven times eight is fifty-six."]
BAD = ["banana banana banana banana", "I do not know, whatever.", "asdf qwer zxcv", "no no no no no no"]


def pairs(n: int) -> pd.DataFrame:
    return pd.DataFrame([{"prompt": f"Question {i}: tell me a fact{'!' * (i % 3)}", "chosen": GOOD[i % 4],
                          "rejected": BAD[(i + 1) % 4]} for i in range(n)])


def finetune(out: str) -> dict:
    from mars_lib.pipeline.assets import minilm_dir
    from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
    # dropout off: masks are drawn per rank, so only a dropout-free run can match one process exactly
    rm = FinetunedRewardModel(FinetuneConfig(model=str(minilm_dir()), lr=5e-4, batch_size=6, grad_accum=2,
                                             max_length=64, seed=0, score_batch_size=8, dropout=False))
    losses = rm.fit(pairs(24), epochs=2, progress=False)
    rm.save(out + ".model")
    return {"losses": losses, "steps": rm.steps, "scores": rm.reward_gap(pairs(24)).tolist()}


def dpo(out: str) -> dict:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mars_lib.pipeline.assets import smollm2_dir
    from mars_lib.downstream.dpo import DPOConfig, DPOPolicy, sequence_logprobs
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=512)).eval()
    policy = DPOPolicy(model, tok, DPOConfig(lr=5e-3, batch_size=4, grad_accum=2, lora_dropout=0.0))
    hist = policy.fit(pairs(16), steps=4, progress=False)
    df = pairs(16)
    with torch.no_grad():
        lp = sequence_logprobs(policy.model, tok, list(df.prompt), list(df.chosen))
    return {"losses": [h["loss"] for h in hist], "steps": policy.steps, "scores": lp.tolist()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out = sys.argv[1], sys.argv[2]
    result = {"finetune": finetune, "dpo": dpo}[mode](out)
    if ddp.is_main():
        result["world_size"] = ddp.world_size()
        with open(out, "w") as f:
            json.dump(result, f)
