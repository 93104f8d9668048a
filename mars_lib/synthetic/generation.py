"""Batched, cached text generation with a causal LM (SmolLM2-135M-Instruct offline).

Every generation is stored in a content-addressed cache keyed by (model id, prompt, decoding
parameters, sample index, seed), so a rerun regenerates nothing and an interrupted run resumes
where it stopped: each finished batch is committed to the cache (SQLite, one transaction per
batch) before the next starts.

Determinism: requests are grouped by decoding parameters, sorted by prompt length (length
bucketing keeps padding small) and cut into fixed-size batches; each batch's RNG seed is derived
from its keys. The same request list therefore reproduces the same texts on the same machine.
The text of a key is fixed once it is cached.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn

from mars_lib.synthetic.decoding import decode
from mars_lib.pipeline.io import open_sqlite
from mars_lib.pipeline.memory import release_memory
from mars_lib.pipeline.assets import ASSETS, smollm2_dir, weights_id


@dataclass(frozen=True)
class Decoding:
    """Decoding parameters of one generation (all part of the cache key)."""
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0   # 1.1-1.2 stops the Q4 model's greedy loops (docs/design.md §4.3)
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0 or self.max_new_tokens < 1:
            raise ValueError(f"invalid decoding parameters: {self}")


@dataclass(frozen=True)
class Request:
    prompt: str                 # the user message (the chat template is applied by the generator)
    decoding: Decoding
    sample: int = 0             # index of the sample for the same prompt and decoding
    seed: int = 0

    def key(self, model_id: str) -> str:
        payload = json.dumps([model_id, self.prompt, asdict(self.decoding), self.sample, self.seed],
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """SQLite key -> (text, n_tokens) store; safe against interruption (one commit per batch)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, "CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                                          "n_tokens INTEGER NOT NULL, finished INTEGER NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, int, bool]]:
        out = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, text, n_tokens, finished FROM gen WHERE key IN ({','.join('?' * len(chunk))})"
                for k, t, n, f in self._db.execute(q, chunk):
                    out[k] = (t, n, bool(f))
        return out

    def put_many(self, rows: list[tuple[str, str, int, bool]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO gen VALUES (?, ?, ?, ?)",
                                 [(k, t, n, int(f)) for k, t, n, f in rows])
            self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM gen").fetchone()[0]


def load_causal_lm(path: str, device: str = "cpu"):
    """(model, tokenizer, cache id) of a causal LM from a local folder or hub id: fp32, safetensors only,
    no remote code; a clear error when it cannot be loaded (offline, a hub id cannot)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                                     trust_remote_code=False).to(device)
    except OSError as e:
        raise OSError(f"{path!r} could not be loaded ({str(e).splitlines()[0][:160]}). Hub models need network "
                      "access (the paper profile); offline, give a local folder or leave the field None for the "
                      "SmolLM2 asset.") from None
    return model, tok, weights_id(path, model)


def smollm2_model_id() -> str:
    """The cache id of the offline SmolLM2-135M-Instruct weights (dequantized from the Q4_1 GGUF asset)."""
    return f"smollm2-135m-instruct-q4_1@{ASSETS['smollm2_gguf'].sha256[:12]}"


@dataclass
class GenStats:
    requested: int = 0
    cache_hits: int = 0
    generated: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else float("nan")


class Generator:
    """Wraps a causal LM + tokenizer; `generate(requests)` returns texts in request order.

    `model_id` names the checkpoint in cache keys (e.g. 'smollm2-135m-instruct@<sha>').
    """

    def __init__(self, model, tokenizer, model_id: str, cache: GenerationCache | None,
                 batch_size: int = 32, device: str = "cpu", system_prompt: str | None = None):
        self.model, self.tok, self.model_id = model.eval(), tokenizer, model_id
        self.cache, self.batch_size, self.device = cache, batch_size, device
        self.system_prompt = system_prompt
        self.tok.padding_side = "left"    # decoder-only batched generation needs left padding
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.stats = GenStats()
        self.calls = 0                    # number of model.generate calls (tests check cache hits)

    @classmethod
    def smollm2(cls, cache: GenerationCache | None, batch_size: int = 32, device: str = "cpu"):
        model, tok, _ = load_causal_lm(str(smollm2_dir()), device)
        return cls(model, tok, smollm2_model_id(), cache, batch_size=batch_size, device=device)

    @classmethod
    def from_pretrained(cls, path: str, cache: GenerationCache | None, batch_size: int = 32, device: str = "cpu"):
        """Any causal LM with a chat template: a local folder or a hub id (safetensors only, no remote
        code). Its cache id is the path / hub id plus the weights' commit or file size."""
        model, tok, model_id = load_causal_lm(path, device)
        if tok.chat_template is None:
            raise ValueError(f"{path}: the tokenizer has no chat template; the generator needs an instruction "
                             "(chat) model")
        return cls(model, tok, model_id, cache, batch_size=batch_size, device=device)

    def _chat(self, prompt: str) -> str:
        msgs = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        msgs.append({"role": "user", "content": prompt})
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request], desc: str = "generating") -> list[str]:
        """Texts for `requests` (cached ones are not regenerated). Shapes: list[N] -> list[N]."""
        return [t for t, _ in self.generate_with_info(requests, desc)]

    def generate_with_info(self, requests: list[Request], desc: str = "generating") -> list[tuple[str, bool]]:
        """Like `generate`, plus whether each output finished with EOS (False = hit max_new_tokens)."""
        keys = [r.key(self.model_id) for r in requests]
        have = self.cache.get_many(list(set(keys))) if self.cache is not None else {}
        self.stats.requested += len(requests)
        todo: dict[str, Request] = {}
        for k, r in zip(keys, requests):
            if k not in have and k not in todo:
                todo[k] = r
        self.stats.cache_hits += len(requests) - len(todo)
        if todo:
            # Batches are formed over *all* requests (grouped by decoding, bucketed by prompt length,
            # fixed size), and only their missing members are generated. A run killed between two
            # batch commits therefore resumes with exactly the batches, seeds and texts of an
            # uninterrupted run.
            reqs = {k: r for k, r in zip(keys, requests)}
            chats = {k: self._chat(r.prompt) for k, r in reqs.items()}
            lens = {k: len(self.tok(c, add_special_tokens=False).input_ids) for k, c in chats.items()}
            order = sorted(reqs, key=lambda k: (json.dumps(asdict(reqs[k].decoding), sort_keys=True), lens[k], k))
            batches, cur = [], []
            for k in order:
                if cur and (reqs[k].decoding != reqs[cur[0]].decoding or len(cur) == self.batch_size):
                    batches.append(cur)
                    cur = []
                cur.append(k)
            if cur:
                batches.append(cur)
            batches = [[k for k in b if k in todo] for b in batches]
            batches = [b for b in batches if b]
            bar = tqdm(total=len(todo), desc=desc, unit="resp")
            for batch in batches:
                t0 = time.perf_counter()
                dec = todo[batch[0]].decoding
                enc = self.tok([chats[k] for k in batch], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
                seed = int(hashlib.sha256("".join(batch).encode()).hexdigest()[:8], 16)
                outs = decode(self.model, enc.input_ids, enc.attention_mask, max_new_tokens=dec.max_new_tokens,
                              temperature=dec.temperature, top_p=dec.top_p, repetition_penalty_=dec.repetition_penalty,
                              eos_token_id=self.tok.eos_token_id, seed=seed)
                self.calls += 1
                rows = []
                for k, (ids, finished) in zip(batch, outs):
                    text = self.tok.decode(ids, skip_special_tokens=True).strip()
                    rows.append((k, text, len(ids), finished))
                    self.stats.new_tokens += len(ids)
                if self.cache is not None:
                    self.cache.put_many(rows)
                for k, t, n, f in rows:
                    have[k] = (t, n, f)
                self.stats.generated += len(batch)
                self.stats.seconds += time.perf_counter() - t0
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{self.stats.tokens_per_s:.0f}")
            bar.close()
            release_memory()                            # the batches' KV caches and logits (mars_lib.pipeline.memory)
        return [(have[k][0], have[k][2]) for k in keys]
