"""Reward-model training speed: our fine-tuning loop vs TRL's RewardTrainer, and MARS's own overhead.

    pip install -e ".[bench]"            # adds trl (only this benchmark needs it)
    python bench/rm_training_speed.py    # prints both tables, writes results/bench/rm_training_speed.csv

1. Fine-tuning pairs/s, side by side in one run: `mars_lib.reward_models.finetune.FinetunedRewardModel` —
   length-grouped padded batches, and packed padding-free rows (`packing=True`) — and
   `trl.RewardTrainer` on the same model (MiniLM-L6 as AutoModelForSequenceClassification,
   num_labels=1, full fine-tuning), the same pairs — real HH-RLHF harmless-base dialogues by default
   (`--data hh`: their real length spread; `--data task`: the offline task's short pairs) — the same max length, micro
   batch, gradient accumulation, learning rate, fp32 on CPU, one epoch, no evaluation, no saving,
   no logging integrations, and the same dropout setting — twice: dropout on (the backbone's own,
   as the authors' Trainer) and off (TRL's default `disable_dropout=True`). Each trainer gets an
   untimed warm-up run first; timings are wall clock of the training call only (TRL's dataset
   tokenization is done before the clock starts, ours inside it — which only favours TRL). Each row
   also gives the epoch's mean training loss: with dropout off, packed and padded must agree to
   float noise (same batches; `max_loss_diff_vs_padded`).
2. MARS round vs uniform round with the same budget on the head model (scoring the base pairs,
   allocating, drawing from the pool, training one epoch): the time MARS adds is its scoring and
   allocation. Goal in issue 4: ≤ 1.15×.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pairs_for_bench(n: int, data: str, model_dir, max_length: int) -> pd.DataFrame:
    """n pairs sampled from those whose two texts fit in max_length − 1 tokens. TRL's RewardTrainer drops
    longer pairs (and appends one EOS token): without this both trainers would not train on the same pairs."""
    from transformers import AutoTokenizer

    from mars_lib.reward_models.features import rm_text
    if data == "hh":
        from mars_lib.data.tracks import load_track
        df = load_track("hh-rlhf", "train")
    else:
        from mars_lib.data.gold_task import load_task
        df = load_task(ROOT / "data" / "gold_task_v3").split("train")
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok([rm_text(p, y) for p, c, r in zip(df.prompt, df.chosen, df.rejected) for y in (c, r)])["input_ids"]
    df = df.assign(tokens_chosen=[len(i) for i in ids[0::2]], tokens_rejected=[len(i) for i in ids[1::2]])
    df = df[df[["tokens_chosen", "tokens_rejected"]].max(axis=1) < max_length]
    print(f"[bench] {len(df)} of {len(ids) // 2} {data} pairs fit in {max_length} tokens; sampling {min(n, len(df))}")
    return df.sample(n=min(n, len(df)), random_state=0).reset_index(drop=True)


def ours(df, model_dir, a, dropout: bool, packing: bool) -> tuple[float, float]:
    from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
    cfg = FinetuneConfig(str(model_dir), lr=a.lr, batch_size=a.batch, grad_accum=a.accum, max_length=a.max_length, seed=0,
                         dropout=dropout, packing=packing)
    FinetunedRewardModel(cfg).fit(df.head(a.batch * a.accum), progress=False)          # warm-up
    m = FinetunedRewardModel(cfg)
    t0 = time.perf_counter()
    loss = m.fit(df, progress=False)[0]
    return len(df) / (time.perf_counter() - t0), loss


def trl(df, model_dir, a, tmp: Path, dropout: bool) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from mars_lib.reward_models.features import rm_text
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.truncation_side = "left"
    if tok.eos_token is None:               # TRL appends EOS text to every example; BERT's closest is [SEP]
        tok.eos_token = tok.sep_token       # (one extra token per sequence on TRL's side)
    data = Dataset.from_dict({"chosen": [rm_text(p, c) for p, c in zip(df.prompt, df.chosen)],
                              "rejected": [rm_text(p, r) for p, r in zip(df.prompt, df.rejected)]})

    def run(ds):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        args = RewardConfig(output_dir=str(tmp), per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum,
                            learning_rate=a.lr, num_train_epochs=1, max_length=a.max_length, use_cpu=True, report_to=[],
                            save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
                            dataloader_num_workers=0, seed=0, warmup_steps=0, weight_decay=0.0, lr_scheduler_type="linear",
                            gradient_checkpointing=False, bf16=False, fp16=False,    # as ours: fp32, no checkpointing
                            disable_dropout=not dropout)
        tr = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        torch.set_num_threads(a.threads)                                   # in case the trainer changed it
        t0 = time.perf_counter()
        out = tr.train()
        return time.perf_counter() - t0, out.training_loss

    run(data.select(range(a.batch * a.accum)))                                       # warm-up
    seconds, loss = run(data)
    return len(df) / seconds, loss          # every pair fits max_length (pairs_for_bench): TRL trains on all of them


def round_overhead(a) -> pd.DataFrame:
    from mars_lib.pipeline import context
    from mars_lib.synthetic import pools
    from mars_lib.pipeline.config import RunConfig
    from mars_lib.pipeline.arms import run_strategy
    cfg = RunConfig.resolve("cpu", rounds=1, seeds=[0], track_curvature=False, operator="paraphrase")
    ctx = context.setup(cfg)
    base, evals = ctx.pairs("train"), {}
    pool = pools.synthetic_pool(cfg, base, ctx.encoder)
    rows = []
    for rep in range(a.repeats):
        for s in ("uniform", "mars_v1", "mars_v2", "won"):
            t0 = time.perf_counter()
            run_strategy(s, base, pool, evals, cfg, seed=rep)
            rows.append({"strategy": s, "rep": rep, "seconds": time.perf_counter() - t0})
    df = pd.DataFrame(rows).groupby("strategy").seconds.median().rename("median_s").reset_index()
    df["vs_uniform"] = df.median_s / df.loc[df.strategy == "uniform", "median_s"].iloc[0]
    df["base_pairs"], df["budget"] = len(base.df), round(cfg.budget_ratio * len(base.df))
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--data", choices=("hh", "task"), default="hh", help="HH-RLHF dialogues (real length spread) or the task")
    ap.add_argument("--dropout", nargs="+", choices=("on", "off"), default=["on", "off"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512, help="MiniLM's positions; HH dialogues reach it")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7, help="repeats of the round-overhead timing (median)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("--no-rounds", action="store_true", help="skip the round-overhead timing")
    ap.add_argument("--no-trainers", action="store_true", help="skip the ours-vs-TRL timing")
    a = ap.parse_args(argv)
    import tempfile

    from mars_lib.pipeline.assets import minilm_dir, set_offline
    set_offline()
    torch.set_num_threads(a.threads)
    model_dir = minilm_dir()
    df = pairs_for_bench(a.pairs, a.data, model_dir, a.max_length)
    res = []
    with tempfile.TemporaryDirectory() as tmp:
        for dropout in ([d == "on" for d in a.dropout] if not a.no_trainers else ()):
            res += [("mars_lib FinetunedRewardModel, packed", dropout, *ours(df, model_dir, a, dropout, True)),
                    ("mars_lib FinetunedRewardModel, length-grouped padded", dropout, *ours(df, model_dir, a, dropout, False)),
                    ("trl RewardTrainer", dropout, *trl(df, model_dir, a, Path(tmp), dropout))]
    t = pd.DataFrame(res, columns=["trainer", "dropout", "pairs_per_s", "train_loss"])
    t["vs_trl"] = t.pairs_per_s / t.groupby("dropout").pairs_per_s.transform("last")
    t["max_loss_diff_vs_padded"] = (t.train_loss - t.groupby("dropout").train_loss.transform(lambda x: x.iloc[1])).abs()
    tokens = np.concatenate([df.tokens_chosen, df.tokens_rejected])       # the length spread of the texts trained on
    tok_mean, tok_p90 = float(tokens.mean()), float(np.percentile(tokens, 90))
    t = t.assign(model="all-MiniLM-L6-v2 (full fine-tuning)", data=a.data, pairs=len(df), batch=f"{a.batch}x{a.accum}",
                 max_length=a.max_length, mean_tokens=tok_mean, p90_tokens=tok_p90, precision="fp32",
                 device=f"cpu, {a.threads} threads", command="python bench/rm_training_speed.py " + " ".join(argv or sys.argv[1:]))
    a.out.mkdir(parents=True, exist_ok=True)
    if len(t):
        t.to_csv(a.out / "rm_training_speed.csv", index=False)
    o = pd.DataFrame() if a.no_rounds else round_overhead(a)
    if len(o):
        o.to_csv(a.out / "round_overhead.csv", index=False)
    with pd.option_context("display.width", 200):
        if len(t):
            print(t.round(3).to_string(index=False))
            print()
        print(o.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
