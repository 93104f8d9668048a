"""Peak resident memory (RSS) of the main stages, each in a fresh process, plus whole runs.

    python bench/stage_memory.py                       # every stage; writes results/bench/stage_memory.csv
    python bench/stage_memory.py --stages judge_long   # some of them
    /usr/bin/time -v ./run_tests.sh 2> suite.log
    python bench/stage_memory.py --from-time-log "test suite" suite.log --command "./run_tests.sh"

Each stage runs in its own Python process (`python bench/stage_memory.py --run STAGE`), and its peak
RSS is that process's `ru_maxrss` from `os.wait4`, so stages do not inherit each other's memory.
Stages use the cpu profile's sizes and models with every content cache off (cold work). The judge
stage runs twice, ours (output layer applied per row, 256 positions at a time) beside the previous
code (the whole batch's [b, R, V] logits and their log-softmax), on the 48 longest MT-Bench answers:
the texts that drove the test suite to 7.6 GB. The DPO stage also runs twice: the cpu profile's one
pair per forward pass (`dpo_micro_batch`, the other three of each 4-pair step accumulated) beside the
previous 4 pairs per forward. Whole runs (the test suite, the cpu profile) are
added from a GNU `time -v` log (its "Maximum resident set size": the largest single process of the
run — the notebooks' kernels are separate processes). The budget is 4 GiB (4,096 MiB); RSS is reported in MiB (GNU time and ru_maxrss count KiB).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "results" / "bench" / "stage_memory.csv"
BUDGET_MB = 4096                # MiB


def _long_texts(n: int = 48):
    from mars_lib.judges.agreement import load_human_pairs
    p = load_human_pairs("mt-bench-human")
    rows = [(x, y) for x, a, b in zip(p.prompt, p.chosen, p.rejected) for y in (a, b)]
    rows.sort(key=lambda r: -len(r[1]))
    return [r[0] for r in rows[:n]], [r[1] for r in rows[:n]]


def _old_mean_logprob(judge, prompts, responses):
    """The judge's log-prob code before the chunked output layer (kept here only as the baseline)."""
    import numpy as np
    import torch

    from mars_lib.judges.gold1 import left_padded
    out = np.full(len(prompts), -np.inf)
    for s in range(0, len(prompts), judge.batch_size):
        idx = list(range(s, min(s + judge.batch_size, len(prompts))))
        ctx = [judge.tok.apply_chat_template([{"role": "user", "content": prompts[i]}], tokenize=False,
                                             add_generation_prompt=True) for i in idx]
        c_ids = [judge.tok(c, add_special_tokens=False).input_ids for c in ctx]
        r_ids = [judge.tok(responses[i], add_special_tokens=False).input_ids for i in idx]
        seqs = [c + r for c, r in zip(c_ids, r_ids)]
        L, R = max(map(len, seqs)), max(map(len, r_ids))
        ids, att, pos = left_padded(seqs, judge.tok.pad_token_id or 0)
        with torch.inference_mode():
            logits = judge.lm(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=R + 1).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        tok_lp = logp.gather(-1, ids[:, L - R:, None])[..., 0]
        for j, r in enumerate(r_ids):
            out[idx[j]] = tok_lp[j, R - len(r):].mean().item()
    return out


def stage(name: str) -> dict:
    """Run one stage in this process; returns what it processed."""
    import torch
    torch.set_num_threads(2)
    if name == "import":
        import mars_lib.mars  # noqa: F401
        import transformers  # noqa: F401
        return {"items": 0, "what": "python + torch + transformers + mars_lib imported"}
    if name == "encode":
        from mars_lib.reward_models.features import Encoder
        from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_responses
        texts = load_responses(DEFAULT_TASK_DIR).response.head(1000).tolist()
        Encoder.minilm(None).embed(texts, progress=False)
        return {"items": len(texts), "what": "MiniLM features of 1,000 task responses, batch 64, no cache"}
    if name in ("judge_long", "judge_long_before"):
        from mars_lib.judges.gold1 import GoldJudge
        judge = GoldJudge.offline(cached=False)
        p, r = _long_texts()
        (judge.mean_logprob if name == "judge_long" else lambda a, b: _old_mean_logprob(judge, a, b))(p, r)
        return {"items": len(p), "what": f"task judge fluency on the 48 longest MT-Bench answers, batch "
                                         f"{judge.batch_size}, {'ours' if name == 'judge_long' else 'previous code'}"}
    if name == "judge3_long":
        from mars_lib.judges.gold3 import GoldJudge3
        judge = GoldJudge3.offline(cached=False, progress=False)
        p, r = _long_texts()
        judge.mean_logprob(p, r)
        return {"items": len(p), "what": f"gold3 (Gemma-3-270M) fluency on the same texts, batch {judge.batch_size}"}
    if name == "finetune":
        from mars_lib.pipeline.assets import minilm_dir
        from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
        from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task
        df = load_task(DEFAULT_TASK_DIR).split("train").head(64)
        rm = FinetunedRewardModel(FinetuneConfig(model=str(minilm_dir()), batch_size=8, grad_accum=1, max_length=128))
        rm.fit(df, progress=False)
        rm.reward_gap(df)
        return {"items": len(df), "what": "fine-tuned MiniLM RM: 64 task pairs, batch 8, length 128 (cpu regime)"}
    if name in ("dpo", "dpo_before"):
        from mars_lib.pipeline.config import RunConfig
        from mars_lib.downstream.dpo_stage import DPO_STEP_PAIRS
        from mars_lib.downstream.dpo import DPOConfig, DPOPolicy
        from mars_lib.synthetic.generation import Generator
        from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task
        mb = RunConfig.resolve("cpu").dpo_micro_batch if name == "dpo" else DPO_STEP_PAIRS
        g = Generator.smollm2(None)
        df = load_task(DEFAULT_TASK_DIR).split("train")
        df = df.assign(n=df.chosen.str.len() + df.rejected.str.len()).nlargest(16, "n")    # the longest pairs
        DPOPolicy(g.model, g.tok, DPOConfig(lr=5e-4, batch_size=mb, grad_accum=DPO_STEP_PAIRS // mb)).fit(
            df, steps=4, progress=False)
        return {"items": 16, "what": f"DPO of SmolLM2-135M (LoRA), 4 steps of 4 of the longest task pairs, {mb} "
                                     f"pair(s) per forward{' (cpu profile)' if name == 'dpo' else ' (previous setting)'}"}
    if name == "generate":
        from mars_lib.synthetic.generation import Generator, Request
        from mars_lib.data.gold_task import ARMS, DEFAULT_TASK_DIR, load_responses
        prompts = load_responses(DEFAULT_TASK_DIR).drop_duplicates("prompt_id").prompt.head(64).tolist()
        g = Generator.smollm2(None)
        g.generate([Request(p, ARMS["default"], seed=0) for p in prompts], desc="generate")
        return {"items": len(prompts), "what": f"SmolLM2 sampling, 64 prompts, batch {g.batch_size}, 80 new tokens"}
    raise SystemExit(f"unknown stage {name!r}; known: {STAGES}")


STAGES = ("import", "encode", "judge_long", "judge_long_before", "judge3_long", "finetune", "dpo", "dpo_before",
          "generate")


def measure(name: str) -> dict:
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, "--run", name], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    _, status, usage = os.wait4(p.pid, 0)
    out = p.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed:\n{out[-2000:]}")
    info = json.loads(out.strip().splitlines()[-1])
    return {"stage": name, "what": info["what"], "items": info["items"], "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024), "command": f"python bench/stage_memory.py --stages {name}"}


def from_time_log(label: str, log: Path, command: str, what: str = "") -> dict:
    text = Path(log).read_text(errors="replace")
    kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if not kb:
        raise SystemExit(f"{log}: no 'Maximum resident set size' line (run the command under /usr/bin/time -v)")
    parts = [float(x) for x in wall.group(1).split(":")] if wall else []
    secs = sum(v * 60 ** i for i, v in enumerate(reversed(parts))) if parts else float("nan")
    return {"stage": label, "what": what or "whole run; largest single process (GNU time -v)", "items": 0,
            "seconds": round(secs, 1), "peak_rss_mib": round(int(kb.group(1)) / 1024), "command": command}


def main(argv=None) -> None:
    import pandas as pd
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--from-time-log", nargs=2, metavar=("LABEL", "LOG"))
    ap.add_argument("--command", default="", help="with --from-time-log: the command that was timed")
    ap.add_argument("--what", default="", help="with --from-time-log: what the run was (commit, caches, outcome)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if a.run:
        print(json.dumps(stage(a.run)))
        return
    old = pd.read_csv(a.out) if a.out.exists() else pd.DataFrame()
    if a.from_time_log:
        new = [from_time_log(a.from_time_log[0], Path(a.from_time_log[1]), a.command, a.what)]
    else:
        new = []
        for s in a.stages:
            new.append(measure(s))
            print(new[-1], flush=True)
    new = pd.DataFrame(new)
    df = pd.concat([old[~old.stage.isin(new.stage)] if len(old) else old, new], ignore_index=True)
    df["peak_rss_mib"] = df.peak_rss_mib.astype(int)
    df["within_4gib"] = df.peak_rss_mib <= BUDGET_MB
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    with pd.option_context("display.width", 220, "display.max_colwidth", 70):
        print(df[["stage", "peak_rss_mib", "seconds", "within_4gib", "what"]].to_string(index=False))


if __name__ == "__main__":
    main()
