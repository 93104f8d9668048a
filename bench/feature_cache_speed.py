"""Feature cache: MiniLM embedding of the task's texts, cold (empty cache) vs warm (served by content).

    python bench/feature_cache_speed.py [--texts 512]    # prints a table, writes results/bench/feature_cache_speed.csv

The texts are the first `--texts` "Human: x / Assistant: y" texts of the offline task's train pairs
(what the head RM embeds). Cold: a fresh cache in a temporary folder, so every text is encoded
(batched, length-bucketed, max length 256, fp32, 2 threads). Warm: the same call again, served
from the SQLite cache by the texts' content hashes.
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
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    a = ap.parse_args(argv)
    from mars_lib.pipeline.assets import set_offline
    from mars_lib.reward_models.features import Encoder, FeatureCache, rm_text
    from mars_lib.data.gold_task import load_task
    set_offline()
    torch.set_num_threads(a.threads)
    df = load_task(ROOT / "data" / "gold_task_v3").split("train")
    texts = list(dict.fromkeys([rm_text(p, c) for p, c in zip(df.prompt, df.chosen)] +
                               [rm_text(p, r) for p, r in zip(df.prompt, df.rejected)]))[: a.texts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        enc = Encoder.minilm(FeatureCache(Path(tmp) / "features.sqlite"))
        enc.embed(texts[:8], progress=False)                 # warm-up (model load, kernels); these 8 are cached
        for what in ("cold (encode)", "warm (cache)"):
            t0 = time.perf_counter()
            enc.embed(texts[8:], progress=False)
            sec = time.perf_counter() - t0
            rows.append({"what": what, "texts": len(texts) - 8, "seconds": sec, "texts_per_s": (len(texts) - 8) / sec})
    t = pd.DataFrame(rows)
    t["speedup"] = t.texts_per_s / t.texts_per_s.iloc[0]
    t["device"] = f"cpu, {a.threads} threads"
    a.out.mkdir(parents=True, exist_ok=True)
    t.to_csv(a.out / "feature_cache_speed.csv", index=False)
    print(t.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
