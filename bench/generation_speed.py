"""Generation speed: the batched, length-bucketed path of `mars_lib.generation.Generator` vs a
one-sample-at-a-time loop, on the offline generator (SmolLM2-135M-Instruct, fp32, CPU).

    python bench/generation_speed.py                      # writes results/bench/generation_speed.csv
    python bench/generation_speed.py --prompts 32 --batches 1 8 32

Both paths run the same prompts with the same decoding arm (the task's "default" arm: T=1.0,
top-p 0.95, repetition penalty 1.1, 80 new tokens) and no cache; batch size 1 *is* the naive loop
(one `generate` call per prompt). tokens/s counts generated tokens up to EOS; the KV cache is on
in every row (transformers' default). A third row reads the same requests back from a warm
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    a = ap.parse_args(argv)
    from mars_lib.assets import set_offline
    from mars_lib.generation import GenerationCache, Generator, Request
    from mars_lib.prompts import collect_prompts
    from mars_lib.tasks import ARMS
    set_offline()
    torch.set_num_threads(a.threads)
    prompts = collect_prompts(400).prompt.sample(n=a.prompts, random_state=1).tolist()
    reqs = [Request(p, ARMS["default"], seed=7) for p in prompts]
    gen = Generator.smollm2(None, batch_size=1)
    gen.generate(reqs[:2], desc="warm-up")
    rows = []
    for bs in a.batches:
        gen.batch_size, gen.stats = bs, type(gen.stats)()
        t0 = time.perf_counter()
        gen.generate(reqs, desc=f"batch {bs}")
        s = time.perf_counter() - t0
        rows.append({"path": "one at a time" if bs == 1 else f"batched ({bs})", "batch": bs, "responses": len(reqs),
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
    base = df.loc[df.batch == 1, "tokens_per_s"]
    df["speedup_vs_one_at_a_time"] = df.tokens_per_s / base.iloc[0] if len(base) else float("nan")
    df["hardware"] = f"cpu, {a.threads} threads, torch {torch.__version__}"
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / "generation_speed.csv", index=False)
    print(df.drop(columns="hardware").round(2).to_string(index=False))


if __name__ == "__main__":
    main()
