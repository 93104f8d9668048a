"""Throughput of the paper-profile code path (fine-tuned RM training and scoring, batched generation)
on a CPU or a CUDA device, with the paper's model *shapes*.

    python bench/device_throughput.py --device cpu  --out results/bench   # this laptop
    python bench/device_throughput.py --device cuda --out results/bench   # a GPU machine

The hub is unreachable on the machines this project is built on (and on the GPU machine used for
the README's figures), so the paper's checkpoints cannot be loaded. Throughput does not depend on
the weights' values, only on shapes, sequence lengths and precision, so each model here is built
from its configuration with random weights:
  - reward model: DeBERTa-v3-base's architecture (12 layers, hidden 768, relative attention with
    256 position buckets, vocabulary 128,100) and MiniLM-L6 (the offline default backbone);
    texts = the offline task's real pairs, tokenized by MiniLM's WordPiece tokenizer (DeBERTa-v3's
    SentencePiece model is on the hub), max length 512, the authors' 4 × 16 = 64 pairs per step;
  - generation: SmolLM2-135M's and TinyLlama-1.1B's Llama shapes with SmolLM2's tokenizer and chat
    template, 80 new tokens per response (random weights rarely emit EOS, so every response runs
    the full 80 tokens: tokens/s counts the same work a real model does when it does not stop).
Tokenizer/config files are read from the installed assets, or from --assets DIR (a folder holding
`minilm/` and `smollm2/` tokenizer + config files, for a machine without the asset packages).
  - DPO (mars_lib.downstream.dpo, LoRA r16 on q/v): the same two Llama shapes, the task's real prompts and
    responses, chosen + rejected in one forward, reference log-probs cached (as in notebook 05);
  - paraphrasing (mars_lib.synthetic.paraphrase.Seq2SeqParaphraser, the authors' decoding: 5 beams, 5
    returns, no-repeat 3-grams, up to 192 new tokens): T5-base's shape (random weights never emit
    EOS, so every text runs all 192 steps: a worst case).
One table (rows: what, model, mode, precision, batch, items/s) is printed and written as CSV.

Contention. A small model's GPU step is bound by kernel launches from Python, i.e. by the CPU, so
another job on the machine's cores or on the card distorts its rows (the first H200 table had MiniLM
full fine-tuning in bf16 at 73 pairs/s against 235 with LoRA, and scoring at 529 against 5,004
sequences/s, with no reason in the code for such a gap). So the RM and DPO rows are measured
`--repeats` times (default 3 on CUDA) with the precisions interleaved, and report the median with
the range (`per_s_min`, `per_s_max`), the 1-minute load average (`load_1min`) and the number of
other processes on the GPU (`other_gpu_procs`) at the time of each row.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel  # noqa: E402
from mars_lib.synthetic.generation import Decoding, Generator, Request  # noqa: E402

DEBERTA_V3_BASE = dict(model_type="deberta-v2", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, vocab_size=128100, max_position_embeddings=512, relative_attention=True,
                       position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                       max_relative_positions=-1, position_biased_input=False, layer_norm_eps=1e-7, type_vocab_size=0,
                       pad_token_id=0)
TINYLLAMA_1B = dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                    intermediate_size=5632, max_position_embeddings=2048)


def asset_dirs(assets: str | None) -> tuple[Path, Path]:
    if assets:
        return Path(assets) / "minilm", Path(assets) / "smollm2"
    from mars_lib.pipeline.assets import minilm_dir, smollm2_dir
    return minilm_dir(), smollm2_dir()


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def contention(device) -> dict:
    """The 1-minute load average and how many *other* processes hold the GPU (nvidia-smi; -1 if unknown)."""
    out = {"load_1min": round(os.getloadavg()[0], 2), "other_gpu_procs": 0}
    if device.startswith("cuda"):
        try:
            pids = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=20).stdout.split()
            out["other_gpu_procs"] = len([p for p in pids if p.strip() != str(os.getpid())])
        except (OSError, subprocess.SubprocessError):
            out["other_gpu_procs"] = -1
    return out


def summarise(rates: list[float]) -> dict:
    return {"per_s": statistics.median(rates), "per_s_min": min(rates), "per_s_max": max(rates), "repeats": len(rates)}


def rm_rows(device, minilm: Path, pairs: pd.DataFrame, n_pairs: int, precisions, repeats: int = 1,
            models=("deberta-v3-base", "minilm-l6")) -> list[dict]:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DebertaV2Config
    tok = AutoTokenizer.from_pretrained(minilm)
    shapes = {"deberta-v3-base": DebertaV2Config(**{k: v for k, v in DEBERTA_V3_BASE.items() if k != "model_type"}),
              "minilm-l6": AutoConfig.from_pretrained(minilm)}
    rows = []
    df = pairs.head(n_pairs)
    for name, conf in shapes.items():
        if name not in models:
            continue
        conf.num_labels = 1
        for lora in (False, True):
            for bs, acc in ((4, 16), (16, 4)):
                rates = {(p, w): [] for p in precisions for w in ("train", "score")}
                seen = {}
                for _ in range(repeats):
                    for prec in precisions:                           # interleaved: drift hits both alike
                        torch.manual_seed(0)
                        model = AutoModelForSequenceClassification.from_config(conf, dtype=torch.float32)
                        m = FinetunedRewardModel(FinetuneConfig(str(minilm), lora=lora, batch_size=bs, grad_accum=acc,
                                                                max_length=512, precision=prec, device=device,
                                                                score_batch_size=64),
                                                 model=model, tokenizer=tok)
                        m.fit(df.head(bs * acc), progress=False)        # warm-up step (kernels, allocator)
                        sync(device)
                        m.stats.pairs, m.stats.train_seconds = 0, 0.0
                        m.fit(df, progress=False)
                        sync(device)
                        m.reward_gap(df.head(64))                       # warm-up
                        m.stats.sequences_scored, m.stats.score_seconds = 0, 0.0
                        m.reward_gap(df)
                        sync(device)
                        rates[(prec, "train")].append(m.stats.train_pairs_per_s)
                        rates[(prec, "score")].append(m.stats.score_seqs_per_s)
                        seen[prec] = (m.stats.pairs, m.stats.sequences_scored, contention(device))
                        del m, model
                mode = "lora" if lora else "full"
                for prec in precisions:
                    pairs_n, seqs_n, busy = seen[prec]
                    base = dict(model=name, mode=mode, precision=prec, device=device, **busy)
                    r = summarise(rates[(prec, "train")])
                    rows.append({**base, "what": "rm_train", "batch": f"{bs}x{acc}", "items": pairs_n,
                                 "seconds": pairs_n / r["per_s"], **r, "unit": "pairs/s"})
                    print(rows[-1], flush=True)
                    if (bs, acc) == (4, 16):
                        r = summarise(rates[(prec, "score")])
                        rows.append({**base, "what": "rm_score", "batch": "64", "items": seqs_n,
                                     "seconds": seqs_n / r["per_s"], **r, "unit": "sequences/s"})
    return rows


def llama_shapes(smollm2: Path):
    """(name, config) of the two policy shapes: SmolLM2-135M's own and TinyLlama-1.1B's."""
    from transformers import AutoConfig
    for name, extra in (("smollm2-135m", {}), ("tinyllama-1.1b", TINYLLAMA_1B)):
        conf = AutoConfig.from_pretrained(smollm2)
        for k, v in extra.items():
            setattr(conf, k, v)
        if extra:
            conf.head_dim = conf.hidden_size // conf.num_attention_heads
        yield name, conf


def gen_rows(device, smollm2: Path, prompts: list[str], batches, dtypes) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(smollm2)
    rows = []
    for name, conf in llama_shapes(smollm2):
        for dt in dtypes:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(conf, dtype=getattr(torch, dt)).to(device)
            for bs in batches:
                n = max(bs, min(len(prompts), bs * 2))
                g = Generator(model, tok, f"{name}-random", cache=None, batch_size=bs, device=device)
                dec = Decoding(temperature=1.0, top_p=0.95, repetition_penalty=1.1, max_new_tokens=80)
                g.generate([Request(p, dec, seed=99) for p in prompts[:bs]], desc="warm-up")
                sync(device)
                g.stats.new_tokens, g.stats.seconds = 0, 0.0
                t0 = time.perf_counter()
                g.generate([Request(p, dec, seed=0) for p in prompts[:n]], desc=f"{name} b{bs}")
                sync(device)
                rows.append({"what": "generate", "model": name, "mode": "sample", "precision": dt, "device": device,
                             "batch": str(bs), "items": g.stats.new_tokens, "seconds": time.perf_counter() - t0,
                             "per_s": g.stats.new_tokens / (time.perf_counter() - t0), "unit": "tokens/s"})
                print(rows[-1], flush=True)
            del model
    return rows


def dpo_rows(device, smollm2: Path, pairs: pd.DataFrame, n_pairs: int, precisions, batches, repeats: int = 1,
             models=("smollm2-135m", "tinyllama-1.1b")) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mars_lib.downstream.dpo import DPOConfig, DPOPolicy
    tok = AutoTokenizer.from_pretrained(smollm2)
    rows = []
    for name, conf in llama_shapes(smollm2):
        if name not in models:
            continue
        for bs in batches:
            rates, seen = {p: [] for p in precisions}, {}
            for _ in range(repeats):
                for prec in precisions:                               # interleaved: drift hits both alike
                    torch.manual_seed(0)
                    model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
                    pol = DPOPolicy(model, tok, DPOConfig(batch_size=bs, precision=prec, device=device))
                    pol.fit(pairs.head(bs), steps=1, progress=False)          # warm-up (kernels, allocator)
                    sync(device)
                    pol.stats.pairs, pol.stats.train_seconds = 0, 0.0
                    pol.fit(pairs.head(n_pairs), epochs=1, progress=False)    # reference log-probs included
                    sync(device)
                    rates[prec].append(pol.stats.train_pairs_per_s)
                    seen[prec] = (pol.stats.pairs, contention(device))
                    del pol, model
            for prec in precisions:
                r = summarise(rates[prec])
                rows.append({"what": "dpo_train", "model": name, "mode": "lora", "precision": prec, "device": device,
                             "batch": f"{bs}x1", "items": seen[prec][0], "seconds": seen[prec][0] / r["per_s"], **r,
                             **seen[prec][1], "unit": "pairs/s"})
                print(rows[-1], flush=True)
    return rows


T5_BASE = dict(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64, vocab_size=32128,
               decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def t5_rows(device, minilm: Path, texts: list[str], dtypes) -> list[dict]:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from mars_lib.synthetic.paraphrase import Seq2SeqParaphraser
    tok = AutoTokenizer.from_pretrained(minilm)          # T5's SentencePiece model is on the hub; ids < 30,522
    rows = []
    for dt in dtypes:
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(T5Config(**T5_BASE)).to(getattr(torch, dt))
        p = Seq2SeqParaphraser("t5-base-random", None, device, batch_size=16, model=model, tokenizer=tok)
        p.paraphrase_many(texts[:2], n=5, max_new_tokens=8)                   # warm-up
        sync(device)
        t0 = time.perf_counter()
        p.paraphrase_many(texts, n=5, max_new_tokens=192)
        sync(device)
        sec = time.perf_counter() - t0
        rows.append({"what": "paraphrase", "model": "t5-base", "mode": "beam5x5", "precision": dt, "device": device,
                     "batch": "16", "items": len(texts), "seconds": sec, "per_s": len(texts) / sec, "unit": "texts/s"})
        print(rows[-1], flush=True)
        del model, p
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("--assets", default=None, help="folder with minilm/ and smollm2/ tokenizer+config files")
    ap.add_argument("--rm-pairs", type=int, default=None, help="pairs per RM measurement (default 1024 cuda / 64 cpu)")
    ap.add_argument("--gen-batches", type=int, nargs="+", default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=["rm", "gen", "dpo", "t5"])
    ap.add_argument("--dpo-pairs", type=int, default=None, help="pairs per DPO measurement (default 128 cuda / 8 cpu)")
    ap.add_argument("--t5-texts", type=int, default=None, help="texts per paraphrase measurement (default 64 cuda / 4 cpu)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per RM / DPO row, median reported "
                    "(default 3 cuda / 1 cpu)")
    ap.add_argument("--rm-models", nargs="+", default=["deberta-v3-base", "minilm-l6"])
    ap.add_argument("--dpo-models", nargs="+", default=["smollm2-135m", "tinyllama-1.1b"])
    a = ap.parse_args(argv)
    repeats = a.repeats or (3 if a.device.startswith("cuda") else 1)
    cuda = a.device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False       # fp32 means fp32
    minilm, smollm2 = asset_dirs(a.assets)
    from mars_lib.data.gold_task import load_responses, make_pairs
    resp = load_responses(ROOT / "data" / "gold_task_v3", verify=False)
    pairs = make_pairs(resp, beta=1.0, seed=0).sample(frac=1.0, random_state=0)
    prompts = resp.drop_duplicates("prompt_id").prompt.tolist()
    name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    hw = f"{name}; torch {torch.__version__}; {torch.get_num_threads()} threads"
    a.out.mkdir(parents=True, exist_ok=True)
    tag = "cuda" if cuda else "cpu"
    rows = []

    def save():                                          # after each section: a cut-off run keeps its rows
        df = pd.DataFrame(rows).assign(hardware=hw)
        df.to_csv(a.out / f"device_throughput_{tag}.csv", index=False)
        return df

    if "rm" not in a.skip:
        rows += rm_rows(a.device, minilm, pairs, a.rm_pairs or (1024 if cuda else 64),
                        ("fp32", "bf16") if cuda else ("fp32",), repeats, a.rm_models)
        save()
    if "gen" not in a.skip:
        rows += gen_rows(a.device, smollm2, prompts, a.gen_batches or ((1, 32, 128) if cuda else (1, 32)),
                         ("float32", "bfloat16") if cuda else ("float32",))
        save()
    if "dpo" not in a.skip:
        rows += dpo_rows(a.device, smollm2, pairs, a.dpo_pairs or (128 if cuda else 8),
                         ("fp32", "bf16") if cuda else ("fp32",), (4, 16) if cuda else (4,), repeats, a.dpo_models)
        save()
    if "t5" not in a.skip:
        texts = resp.response.drop_duplicates().head(a.t5_texts or (64 if cuda else 4)).tolist()
        rows += t5_rows(a.device, minilm, texts, ("float32", "bfloat16") if cuda else ("float32",))
    df = save()
    (a.out / f"device_throughput_{tag}.json").write_text(json.dumps({"argv": sys.argv, "hardware": df.hardware.iloc[0]}))
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(df.drop(columns=["hardware"]).round(2).to_string(index=False))
    print(df.hardware.iloc[0])


if __name__ == "__main__":
    main()
