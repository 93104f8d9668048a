"""MARS and its baselines with a *fine-tuned* transformer reward model, on a GPU.

    python bench/gpu_finetuned_mars.py --model DIR --pool POOL.parquet --out results/gpu_finetuned

The paper fine-tunes DeBERTa-v3-base; the offline CPU default trains a linear head on frozen
MiniLM features. This script runs the rounds loop of `mars_lib.mars` with
`FinetunedRewardModel` (full fine-tuning of all-MiniLM-L6-v2 as AutoModelForSequenceClassification)
on the committed offline task, with the paraphrase pool of notebook 03 (built on CPU by
`pools.paraphrase_pool_frame`, cached by content) — the paper-profile code path on the offline
assets. It reads everything from files (no asset packages needed), so it runs on a machine that
only has torch / transformers / pandas. Output: tidy history + summary CSVs and timings.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="folder of the backbone (config, tokenizer, safetensors)")
    ap.add_argument("--pool", required=True, help="paraphrase pool parquet of the task's train pairs")
    ap.add_argument("--strategies", nargs="+", default=["none", "uniform", "won", "mars_v1", "mars_v2"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-base", type=int, default=None, help="subset of base pairs (a quick CPU check)")
    ap.add_argument("--n-test", type=int, default=None, help="subset of test pairs (a quick CPU check)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    import torch

    from mars_lib.pipeline.config import RunConfig
    from mars_lib.pipeline.context import model_factory
    from mars_lib.reward_models.features import Pairs
    from mars_lib.data.gold_task import load_task
    from mars_lib.pipeline.arms import run_strategy
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = RunConfig.resolve("cpu", device=a.device, rm="full", rm_model=a.model, batch_size=a.batch, grad_accum=a.accum,
                            ft_lr=a.lr, rounds=a.rounds, seeds=a.seeds, strategies=a.strategies,
                            track_curvature=False, human_track="off")
    task = load_task(ROOT / "data" / "gold_task_v3", beta=cfg.beta, label_seed=cfg.label_seed)

    def text_pairs(df):
        z = np.zeros((len(df), 0), np.float32)
        return Pairs(df.reset_index(drop=True), z, z)
    tr, te = task.split("train"), task.split("test")
    tr = tr if a.n_base is None else tr.sample(n=a.n_base, random_state=0)
    te = te if a.n_test is None else te.sample(n=a.n_test, random_state=0)
    base, test = text_pairs(tr), text_pairs(te)
    pool = pd.read_parquet(a.pool)
    pool = pool[pool.source_id.isin(set(tr.pair_id))]
    src = base.df.set_index("pair_id")
    if not set(pool.source_id) <= set(src.index):
        raise SystemExit(f"{a.pool} was not built from this task's train pairs")
    for col in ("gold_chosen", "gold_rejected", "label_correct"):
        pool[col] = src.loc[pool.source_id, col].to_numpy()
    pool = text_pairs(pool)
    print(f"base {len(base.df)}, pool {len(pool.df)}, test {len(test.df)}, device {a.device}, "
          f"{torch.cuda.get_device_name() if a.device.startswith('cuda') else 'cpu'}", flush=True)
    make = model_factory(cfg)
    a.out.mkdir(parents=True, exist_ok=True)
    hist, times = [], []
    for seed in cfg.seeds:
        for s in cfg.strategies:
            t0 = time.perf_counter()
            r = run_strategy(s, base, pool, {"test": test}, cfg, seed, make_model=make)
            dt = time.perf_counter() - t0
            hist.append(r.history)
            last = r.history[(r.history["round"] == cfg.rounds) & (r.history.split == "test")].set_index("metric").value
            times.append({"strategy": s, "seed": seed, "seconds": dt, "train_pairs_per_s": r.model.stats.train_pairs_per_s,
                          "score_seqs_per_s": r.model.stats.score_seqs_per_s})
            print(f"{s:8s} seed {seed}: acc {last['accuracy']:.4f} gold_acc {last['gold_accuracy']:.4f} "
                  f"auc {last['roc_auc']:.4f} ({dt:.0f} s, {times[-1]['train_pairs_per_s']:.0f} pairs/s)", flush=True)
            pd.concat(hist, ignore_index=True).to_csv(a.out / "history.csv", index=False)     # survives a cut-off
            pd.DataFrame(times).to_csv(a.out / "timings.csv", index=False)
    h = pd.concat(hist, ignore_index=True)
    summ = (h[(h["round"] == cfg.rounds) & (h.split == "test")]
            .pivot_table(index="strategy", columns="metric", values="value", aggfunc="mean"))
    summ.to_csv(a.out / "summary.csv")
    cfg.save(a.out / "config.json")
    print(summ[["accuracy", "gold_accuracy", "roc_auc", "snr"]].round(4).to_string())


if __name__ == "__main__":
    main()
