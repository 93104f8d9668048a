"""Generation speed: `mars_lib.synthetic.generation.Generator` (batched, length-bucketed, our decoding loop in
`mars_lib.synthetic.decoding`) vs one sample at a time, on the offline generator (SmolLM2-135M-Instruct, fp32, CPU).

    python bench/generation_speed.py                      # writes results/bench/generation_speed.csv
    python bench/generation_speed.py --prompts 64 --batches 1 16 64

Run it as the notebooks run (`source scripts/runtime_env.sh` first: its allocator settings matter
for large batches). Every row runs the same prompts with the same decoding arm (the task's "default" arm: T=1.0,
top-p 0.95, repetition penalty 1.1, 80 new tokens), no cache, KV cache on:
- "one at a time, model.generate": the naive loop a user writes (one transformers `generate` call
  per prompt, its own sampling) — the baseline every speed-up is measured against;
- "one at a time (ours)": the Generator with batch size 1;
- "batched (b)": the Generator with batch size b.
tokens/s counts generated tokens up to EOS. The one-at-a-time rows run the first `--single-prompts`
of the prompts (their rate does not depend on the other prompts; all 64 would take ~10 minutes). A last row reads the same requests back from a warm
generation cache (what a rerun costs).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 32, 64])
    ap.add_argument("--single-prompts", type=int, default=16,
                    help="prompts for the one-at-a-time rows (a rate: independent of the others; saves minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    a = ap.parse_args(argv)
    from mars_lib.pipeline.assets import set_offline
    from mars_lib.synthetic.generation import GenerationCache, Generator, Request
    from mars_lib.data.prompts import collect_prompts
    from mars_lib.data.gold_task import ARMS
    set_offline()
    torch.set_num_threads(a.threads)
    prompts = collect_prompts(400).prompt.sample(n=a.prompts, random_state=1).tolist()
    reqs = [Request(p, ARMS["default"], seed=7) for p in prompts]
    gen = Generator.smollm2(None, batch_size=1)
    gen.generate(reqs[:2], desc="warm-up")
    gen.batch_size = max(a.batches)
    gen.generate([Request(p, ARMS["default"], seed=1) for p in prompts], desc="warm-up (batched)")   # allocator, weights
    rows = []
    t0, n_tok = time.perf_counter(), 0
    dec = ARMS["default"]
    for r in tqdm(reqs[:a.single_prompts], desc="model.generate, one at a time"):
        enc = gen.tok([gen._chat(r.prompt)], return_tensors="pt", add_special_tokens=False)
        torch.manual_seed(r.seed)
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=dec.max_new_tokens, do_sample=True, temperature=dec.temperature,
                                     top_p=dec.top_p, top_k=0, repetition_penalty=dec.repetition_penalty,
                                     pad_token_id=gen.tok.pad_token_id)
        ids = out[0, enc.input_ids.shape[1]:].tolist()
        n_tok += ids.index(gen.tok.eos_token_id) if gen.tok.eos_token_id in ids else len(ids)
    s = time.perf_counter() - t0
    rows.append({"path": "one at a time, model.generate", "batch": 0, "responses": a.single_prompts, "tokens": n_tok,
                 "seconds": s, "tokens_per_s": n_tok / s})
    print(rows[-1], flush=True)
    for bs in a.batches:
        gen.batch_size, gen.stats = bs, type(gen.stats)()
        sub = reqs[:a.single_prompts] if bs == 1 else reqs
        t0 = time.perf_counter()
        gen.generate(sub, desc=f"batch {bs}")
        s = time.perf_counter() - t0
        rows.append({"path": "one at a time (ours)" if bs == 1 else f"batched ({bs})", "batch": bs, "responses": len(sub),
                     "tokens": gen.stats.new_tokens, "seconds": s, "tokens_per_s": gen.stats.new_tokens / s})
        print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = GenerationCache(Path(tmp) / "g.sqlite")
        gen.cache, gen.batch_size = cache, max(a.batches)
        gen.generate(reqs, desc="fill cache")
        t0 = time.perf_counter()
        n_calls = gen.calls
        gen.generate(reqs, desc="from cache")
        s = time.perf_counter() - t0
        assert gen.calls == n_calls, "cache miss on a rerun"
        rows.append({"path": "rerun from cache", "batch": max(a.batches), "responses": len(reqs), "tokens": 0,
                     "seconds": s, "tokens_per_s": float("nan")})
    df = pd.DataFrame(rows)
    df["speedup_vs_one_at_a_time"] = df.tokens_per_s / df.tokens_per_s.iloc[0]     # vs model.generate, one at a time
    df["hardware"] = f"cpu, {a.threads} threads, torch {torch.__version__}"
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / "generation_speed.csv", index=False)
    print(df.drop(columns="hardware").round(2).to_string(index=False))


if __name__ == "__main__":
    main()
