"""Peak memory of a frozen encoder's embedding, by batch size: all-mpnet-base-v2 (or MiniLM) on HH-RLHF texts.

    python bench/encoder_memory.py [--encoder mpnet] [--texts 128] [--batch 64 16]
        # prints a table, writes results/bench/encoder_memory_<encoder>.csv

Each batch size runs in its own child process (so each peak is its own): load the encoder, embed the
`--texts` longest "Human: x / Assistant: y" texts of the committed HH-RLHF harmless-base pairs (the
worst case for activations: every batch is padded to max length 256) with no feature cache, and
report the process's peak RSS (ru_maxrss), the RSS after loading the model, the time, and the largest
|difference| from the first batch size's embeddings (a batch's padding must not change a text's vector).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def child(encoder: str, n: int, batch: int, threads: int, out: Path) -> None:
    """One measurement in this process: load, embed, write {peak, loaded, seconds} and the vectors."""
    import torch

    from mars_lib.data.hh import load_harmless
    from mars_lib.pipeline.assets import set_offline
    from mars_lib.pipeline.config import RunConfig
    from mars_lib.pipeline.context import encoder_for
    from mars_lib.reward_models.features import rm_text
    set_offline()
    torch.set_num_threads(threads)
    df = load_harmless("all")
    texts = sorted({rm_text(p, r) for p, c, rj in zip(df.prompt, df.chosen, df.rejected) for r in (c, rj)},
                   key=lambda t: (-len(t), t))[:n]         # deterministic: each child picks the same texts
    enc = encoder_for(RunConfig.resolve("cpu").replace(encoder=encoder))
    enc.cache, enc.batch_size = None, batch
    enc.embed(texts[:2], progress=False)                  # the model loads, kernels warm up
    loaded = _rss_mib()
    t0 = time.perf_counter()
    vec = enc.embed(texts, progress=False)
    sec = time.perf_counter() - t0
    np.save(out.with_suffix(".npy"), vec)
    out.write_text(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                               "rss_after_load_mib": loaded, "seconds": sec}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="mpnet")
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.encoder, a.texts, a.batch[0], a.threads, a.child)
    a.out.mkdir(parents=True, exist_ok=True)
    rows, first = [], None
    for b in a.batch:
        tmp = a.out / f".encoder_memory_{b}.json"
        subprocess.run([sys.executable, __file__, "--encoder", a.encoder, "--texts", str(a.texts), "--batch", str(b),
                        "--threads", str(a.threads), "--child", str(tmp)], check=True)
        r, vec = json.loads(tmp.read_text()), np.load(tmp.with_suffix(".npy"))
        tmp.unlink(), tmp.with_suffix(".npy").unlink()
        first = vec if first is None else first
        rows.append({"encoder": a.encoder, "batch_size": b, "texts": a.texts, **r, "texts_per_s": a.texts / r["seconds"],
                     "max_abs_diff_vs_first": float(np.abs(vec - first).max()), "device": f"cpu, {a.threads} threads"})
    t = pd.DataFrame(rows)
    t.to_csv(a.out / f"encoder_memory_{a.encoder}.csv", index=False)
    print(t.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
