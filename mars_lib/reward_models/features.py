"""Frozen-encoder features of texts, cached by content (MiniLM offline; any HF encoder on GPU).

φ(x, y) = mean-pooled, L2-normalised last hidden state of the encoder on the RM input text. The RM
input follows the authors' format [C1][C2]: the response as is when it already contains
"Human:"/"Assistant:" near its start, else "Human: {prompt}\\n\\nAssistant: {response}".
Long inputs are truncated from the left so that the response (at the end) is kept.

The cache is a SQLite table keyed by sha256(encoder id, max_length, text) holding float32 vectors,
so re-embedding a text costs a lookup. Shapes: `embed(texts)` -> np.ndarray [N, D] float32.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn

from mars_lib.pipeline.io import open_sqlite
from mars_lib.pipeline.memory import release_memory
from mars_lib.pipeline.assets import ASSETS, minilm_dir, weights_id


def rm_text(prompt: str, response: str) -> str:
    """The text a reward model scores for (prompt, response) — the authors' template."""
    head = response[:40]
    if "Human:" in head or "Assistant:" in head:
        return response
    if prompt.rstrip().endswith("Assistant:"):          # HH dialogue prefix already has the turn
        return f"{prompt.rstrip()} {response}"
    return f"Human: {prompt}\n\nAssistant: {response}"


class FeatureCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = open_sqlite(path, "CREATE TABLE IF NOT EXISTS feat (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        out = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, vec FROM feat WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO feat VALUES (?, ?)",
                                 [(k, v.astype(np.float32).tobytes()) for k, v in items.items()])
            self._db.commit()


class Encoder:
    """A frozen sentence encoder with batched, dynamically padded, cached embedding."""

    def __init__(self, path: str | Path, encoder_id: str, cache: FeatureCache | None = None,
                 max_length: int = 256, batch_size: int = 64, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.truncation_side = "left"
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                               trust_remote_code=False).to(device).eval()
        self.encoder_id, self.cache = encoder_id, cache
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.dim = self.model.config.hidden_size
        self.seconds = 0.0
        self.encoded = 0

    @classmethod
    def minilm(cls, cache: FeatureCache | None = None, **kw) -> "Encoder":
        return cls(minilm_dir(), f"all-MiniLM-L6-v2@{ASSETS['minilm'].sha256[:12]}", cache, **kw)

    @classmethod
    def from_pretrained(cls, path: str, cache: FeatureCache | None = None, **kw) -> "Encoder":
        """A local folder or hub id (e.g. sentence-transformers/all-mpnet-base-v2; safetensors only).
        The cache id names the path and the weights' commit (or parameter count for a local folder)."""
        try:
            enc = cls(path, path, cache, **kw)
        except OSError as e:
            raise OSError(f"encoder {path!r} could not be loaded ({str(e).splitlines()[0][:160]}). Hub models need "
                          "network access (the paper profile); offline, give a local folder or encoder='minilm'.") from None
        enc.encoder_id = weights_id(path, enc.model)
        return enc

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.encoder_id}|{self.max_length}|{text}".encode("utf-8")).hexdigest()

    def embed(self, texts: list[str], desc: str = "embedding", progress: bool = True) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, [N, D] float32, in input order."""
        import torch
        keys = [self._key(t) for t in texts]
        have = self.cache.get_many(list(set(keys))) if self.cache is not None else {}
        todo = list({k: t for k, t in zip(keys, texts) if k not in have}.items())
        if todo:
            todo.sort(key=lambda kt: len(kt[1]))        # length bucketing: little padding per batch
            bar = tqdm(total=len(todo), desc=desc, unit="text", disable=not progress)
            for i in range(0, len(todo), self.batch_size):
                t0 = time.perf_counter()
                chunk = todo[i:i + self.batch_size]
                enc = self.tok([t for _, t in chunk], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
                with torch.inference_mode():
                    hidden = self.model(**enc).last_hidden_state          # [b, L, D]
                mask = enc.attention_mask.unsqueeze(-1).to(hidden.dtype)  # [b, L, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
                new = {k: v for (k, _), v in zip(chunk, pooled)}
                if self.cache is not None:
                    self.cache.put_many(new)
                have.update(new)
                self.seconds += time.perf_counter() - t0
                self.encoded += len(chunk)
                bar.update(len(chunk))
            bar.close()
            release_memory()                            # the batches' activations (mars_lib.pipeline.memory)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([have[k] for k in keys]).astype(np.float32)

    def embed_pairs(self, prompts, responses, **kw) -> np.ndarray:
        """φ(x, y) for each (prompt, response): [N, D]."""
        return self.embed([rm_text(p, r) for p, r in zip(prompts, responses)], **kw)


@dataclass
class Pairs:
    """A pair table with its features: df [N rows], phi_c / phi_r [N, D] float32."""
    df: pd.DataFrame
    phi_c: np.ndarray
    phi_r: np.ndarray

    def __post_init__(self):
        if not (len(self.df) == len(self.phi_c) == len(self.phi_r)):
            raise ValueError("pair table and features differ in length")

    def source_codes(self):
        """`pd.factorize(df.source_id)`, computed once per Pairs (a synthetic pool is drawn from every round)."""
        if getattr(self, "_codes", None) is None:
            self._codes = pd.factorize(self.df.source_id.to_numpy())
        return self._codes

    def take(self, pos) -> "Pairs":
        pos = np.asarray(pos, dtype=np.int64)
        return Pairs(self.df.iloc[pos].reset_index(drop=True), self.phi_c[pos], self.phi_r[pos])

    def swapped(self, mask) -> "Pairs":
        """The same pairs with chosen and rejected exchanged where `mask` [N] is True (texts, features
        and every *_chosen / *_rejected column); `label_correct` is recomputed from gold when present."""
        mask = np.asarray(mask, bool)
        df = self.df.copy()
        for c in [c for c in df.columns if c.endswith("_chosen")] + ["chosen"]:
            r = "rejected" if c == "chosen" else c[:-len("_chosen")] + "_rejected"
            if r in df:
                a, b = df[c].to_numpy().copy(), df[r].to_numpy().copy()
                df[c], df[r] = np.where(mask, b, a), np.where(mask, a, b)
        if {"gold_chosen", "gold_rejected", "label_correct"} <= set(df):
            df["label_correct"] = df.gold_chosen >= df.gold_rejected
        m = mask[:, None]
        return Pairs(df, np.where(m, self.phi_r, self.phi_c), np.where(m, self.phi_c, self.phi_r))

    @staticmethod
    def concat(parts: list["Pairs"]) -> "Pairs":
        parts = [p for p in parts if len(p.df)]
        return Pairs(pd.concat([p.df for p in parts], ignore_index=True),
                     np.concatenate([p.phi_c for p in parts]), np.concatenate([p.phi_r for p in parts]))


def featurize(df: pd.DataFrame, encoder: Encoder, desc: str = "features") -> Pairs:
    """Pairs with φ(x, y+) and φ(x, y−) for every row of a pair table (cached by content)."""
    n = len(df)
    texts = [rm_text(p, c) for p, c in zip(df.prompt, df.chosen)] + [rm_text(p, r) for p, r in zip(df.prompt, df.rejected)]
    phi = encoder.embed(texts, desc=desc)
    return Pairs(df.reset_index(drop=True), phi[:n], phi[n:])
