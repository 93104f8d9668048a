"""Interrupted runs: a generation killed with SIGKILL between batches resumes to exactly the texts of
an uninterrupted run, without duplicates; the same seed gives identical result tables."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd

SCRIPT = r'''
import sys, time, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from mars_lib.assets import smollm2_dir
from mars_lib.generation import Decoding, GenerationCache, Generator, Request
tok = AutoTokenizer.from_pretrained(smollm2_dir())
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)).eval()
reqs = [Request(f"Question number {i}: what is {i} + {i}?", Decoding(temperature=1.0, max_new_tokens=16))
        for i in range(12)]
g = Generator(model, tok, "tiny", GenerationCache(sys.argv[1]), batch_size=2)
pause, real = float(sys.argv[2]), model.generate
def slow(*a, **k):
    time.sleep(pause)
    return real(*a, **k)
model.generate = slow
print("\x1e".join(g.generate(reqs, desc="gen")))
'''


def _run(cache, pause=0.0):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(cache), str(pause)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().split("\x1e")


def _rows(cache):
    try:
        with sqlite3.connect(cache) as db:
            return db.execute("SELECT COUNT(*) FROM gen").fetchone()[0]
    except sqlite3.OperationalError:          # the file exists but its table is not created yet
        return 0


def test_generation_killed_mid_run_resumes_to_the_uninterrupted_texts(tmp_path):
    full = _run(tmp_path / "a.sqlite")
    cache = tmp_path / "b.sqlite"
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), "1.0"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and not (cache.exists() and _rows(cache) >= 4):
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = _rows(cache)
    assert 4 <= done < 12, f"kill came too late or too early ({done} rows)"
    resumed = _run(cache)
    assert resumed == full                                   # same batches, seeds and texts
    assert _rows(cache) == 12                                # nothing generated twice


def test_same_seed_gives_identical_tables_on_real_features():
    from mars_lib.config import RunConfig
    from mars_lib.features import Pairs
    from mars_lib.training import run_strategy
    rng = np.random.default_rng(0)
    n, d = 40, 16
    df = pd.DataFrame({"pair_id": [f"b{i}" for i in range(n)], "prompt": "p", "chosen": "c", "rejected": "r",
                       "label_correct": True})
    base = Pairs(df, rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32))
    pdf = pd.DataFrame({"pair_id": [f"s{i}" for i in range(4 * n)], "prompt": "p", "chosen": "c", "rejected": "r",
                        "source_id": np.repeat(df.pair_id, 4).to_numpy(), "label_correct": True})
    pool = Pairs(pdf, rng.normal(size=(4 * n, d)).astype(np.float32), rng.normal(size=(4 * n, d)).astype(np.float32))
    cfg = RunConfig.resolve("smoke", rounds=2, seeds=[3])
    for s in ("uniform", "won", "mars_v1", "mars_v2"):
        a = run_strategy(s, base, pool, {"test": base}, cfg, seed=3)
        b = run_strategy(s, base, pool, {"test": base}, cfg, seed=3)
        pd.testing.assert_frame_equal(a.history, b.history)
        pd.testing.assert_frame_equal(a.allocations, b.allocations)
