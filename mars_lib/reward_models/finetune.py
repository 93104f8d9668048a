"""The fine-tuned reward model: `AutoModelForSequenceClassification(num_labels=1)`, full or LoRA.

This is the paper's reward model (DeBERTa-v3-base in [C1][C2]) and implements the package's one
reward-model interface (`reward_model.RewardModel`: score, pair_scores, pair_gap, fit_pairs,
linear_theta, save), so the rounds loop of `mars_lib.mars` and every later stage run either kind.

Training follows the authors' Trainer settings (docs/method.md §4.3): AdamW, linear decay with no
warm-up, weight decay 0, per-device batch × gradient accumulation = effective batch, a fresh
optimizer and schedule per `fit` call when `reset_optimizer` (the authors re-create the Trainer
each round). Each micro-batch runs chosen and rejected texts through one forward pass with
dynamic padding (pairs sorted into length buckets, then the buckets shuffled), or — `packing=True`,
BERT-family models — packed padding-free rows (`mars_lib.reward_models.packing`: same batches, same
loss up to float noise, no padding computed).

Memory: on CUDA, `fit` first runs the epoch's longest micro-batch forward and backward
(`fit_batch_probe`); if that runs out of memory, the micro-batch is halved and the accumulation
doubled, so the effective batch and the optimisation are unchanged, and the change is printed.

Data-parallel: under `accelerate launch` / `torchrun` each process trains on its share of every
micro-batch and the gradients are summed before each step, so the optimisation is that of one
process (`mars_lib.reward_models.distributed`).

Precision is explicit: "fp32" (default; the only choice on CPU) or "bf16" autocast on CUDA — the
weights stay fp32, so optimizer state is exact. LoRA (peft) trains the adapters *and* the score
head (`modules_to_save`), and `save` writes both; `FinetunedRewardModel.load` rebuilds the same
scores. Weights are read from safetensors only and no remote code is ever trusted.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mars_lib.reward_models import distributed as ddp
from mars_lib.reward_models.features import rm_text
from mars_lib.reward_models.head import bt_loss
from mars_lib.reward_models.packing import check_packable, packed_scores

PRECISIONS = ("fp32", "bf16")


@dataclass
class FinetuneConfig:
    """Settings of a fine-tuned RM; defaults are the authors' (lr 2e-5, 4 × 16 = 64 pairs per step)."""
    model: str                          # local folder or hub id of the backbone
    lora: bool = False                  # LoRA adapters + trained score head (peft) instead of full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None   # None: peft's default modules for the architecture
    lr: float = 2e-5
    weight_decay: float = 0.0
    batch_size: int = 4                 # pairs per micro-batch (2 × batch_size sequences per forward)
    grad_accum: int = 16                # micro-batches per optimizer step
    max_length: int = 512               # tokens of "Human: x / Assistant: y", truncated from the left
    epochs: int = 1
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    score_batch_size: int = 64          # sequences per scoring forward
    dropout: bool = True                # keep the backbone's dropout while training (authors' Trainer: yes;
                                        # TRL's RewardTrainer turns it off by default, disable_dropout=True)
    packing: bool = False               # training forwards on packed padding-free rows (BERT-family; same
                                        # batches and loss to float noise, no padding computed: packing.py)
    auto_batch: bool = True             # CUDA: before training, try the longest micro-batch; on out-of-memory
                                        # halve batch_size and double grad_accum (same effective batch)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {PRECISIONS}")
        if self.precision == "bf16" and not self.device.startswith("cuda"):
            raise ValueError("precision 'bf16' is for CUDA devices; use 'fp32' on CPU")
        for name in ("batch_size", "grad_accum", "max_length", "epochs", "score_batch_size", "lora_r"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"FinetuneConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"FinetuneConfig: need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


@dataclass
class Throughput:
    pairs: int = 0
    train_seconds: float = 0.0
    sequences_scored: int = 0
    score_seconds: float = 0.0

    @property
    def train_pairs_per_s(self) -> float:
        return self.pairs / self.train_seconds if self.train_seconds else float("nan")

    @property
    def score_seqs_per_s(self) -> float:
        return self.sequences_scored / self.score_seconds if self.score_seconds else float("nan")


class FinetunedRewardModel:
    """r(x, y) = the scalar logit of a sequence-classification transformer on rm_text(x, y)."""

    def __init__(self, cfg: FinetuneConfig, model=None, tokenizer=None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        self.cfg = cfg
        ddp.ensure_group(cfg.device)                    # under accelerate launch / torchrun (mars_lib.reward_models.distributed)
        cfg.device = ddp.local_device(cfg.device)
        torch.manual_seed(cfg.seed)                     # the fresh score head's init
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(cfg.model)
        self.tokenizer.truncation_side = "left"         # keep the response end and the turn marker
        if model is None:
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.model, num_labels=1, dtype=torch.float32, use_safetensors=True, trust_remote_code=False)
        if self.tokenizer.pad_token is None:            # decoder models (Llama) ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model.config.pad_token_id = self.tokenizer.pad_token_id
        if not cfg.dropout:
            for mod in model.modules():
                if isinstance(mod, torch.nn.Dropout):
                    mod.p = 0.0
        if cfg.lora and not _is_peft(model):
            model = _add_lora(model, cfg)
        if cfg.packing:
            check_packable(model)
        self.model = model.to(cfg.device)
        ddp.broadcast_parameters(self.model)
        self.optimizer = self.scheduler = None
        self.steps = 0
        self.stats = Throughput()

    # --- scoring -------------------------------------------------------------------------
    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, truncation=True, max_length=self.cfg.max_length)["input_ids"]

    def _collate(self, ids: list[list[int]]) -> dict:
        b = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {k: v.to(self.cfg.device) for k, v in b.items()}

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    @torch.no_grad()
    def score_texts(self, texts: list[str]) -> np.ndarray:
        """Rewards for already-templated texts, [N] float64, batched in length order."""
        self.model.eval()
        t0 = time.perf_counter()
        ids = self._encode(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")
        out = np.empty(len(texts))
        bs = self.cfg.score_batch_size
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            with self._autocast():
                logits = self.model(**self._collate([ids[i] for i in idx])).logits
            out[idx] = logits[:, 0].float().cpu().double().numpy()
        self.stats.sequences_scored += len(texts)
        self.stats.score_seconds += time.perf_counter() - t0
        return out

    def score(self, prompts, responses, phi: np.ndarray | None = None) -> np.ndarray:
        """r(x, y) of rows given by texts (and features, which a fine-tuned model does not read)."""
        return self.score_texts([rm_text(p, r) for p, r in zip(prompts, responses)])

    def linear_theta(self) -> None:
        return None

    def score_pairs(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        n = len(df)
        r = self.score(list(df.prompt) * 2, list(df.chosen) + list(df.rejected))
        return r[:n], r[n:]

    def reward_gap(self, df: pd.DataFrame) -> np.ndarray:
        """Δ = r(x, y+) − r(x, y−) per pair, [N]."""
        rc, rr = self.score_pairs(df)
        return rc - rr

    # the RewardModel interface of mars_lib.reward_models.head (features.Pairs: the text columns are read)
    def pair_scores(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        return self.score_pairs(pairs.df)

    def pair_gap(self, pairs) -> np.ndarray:
        return self.reward_gap(pairs.df)

    def fit_pairs(self, pairs, epochs: int | None = None, reset_optimizer: bool = True, seed: int | None = None) -> list[float]:
        return self.fit(pairs.df, epochs=epochs, reset_optimizer=reset_optimizer, seed=seed)

    # --- training ------------------------------------------------------------------------
    def _new_optimizer(self, total_steps: int) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(   # HF "linear", warm-up 0
            self.optimizer, lambda s: max(0.0, 1.0 - s / max(1, total_steps)))

    def _micro_batches(self, ids_c, ids_r, rng) -> list[np.ndarray]:
        """Shuffle, then sort within windows of 50 micro-batches by length (dynamic padding), shuffle batches."""
        bs = self.cfg.batch_size
        perm = rng.permutation(len(ids_c))
        win = bs * 50
        batches = []
        for s in range(0, len(perm), win):
            w = perm[s:s + win]
            w = w[np.argsort([max(len(ids_c[i]), len(ids_r[i])) for i in w], kind="stable")]
            batches += [w[k:k + bs] for k in range(0, len(w), bs)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _train_scores(self, seqs: list[list[int]]) -> torch.Tensor:
        """r of each token-id sequence, [N] float, with gradients: packed rows or one padded batch."""
        if self.cfg.packing:
            return packed_scores(self.model, seqs, max(map(len, seqs)), self.tokenizer.pad_token_id, self.cfg.device)
        return self.model(**self._collate(seqs)).logits[:, 0].float()

    def fit_batch_probe(self, ids_c, ids_r) -> int:
        """Run the longest micro-batch of `batch_size` pairs forward and backward (gradients then
        dropped). On out-of-memory halve `batch_size` and double `grad_accum` until it fits (the
        effective batch stays batch_size × grad_accum); at one pair per micro-batch, raise. Returns
        the batch size that fits."""
        lengths = np.array([max(len(c), len(r)) for c, r in zip(ids_c, ids_r)])
        self.model.train()
        while True:
            idx = np.argsort(-lengths, kind="stable")[:self.cfg.batch_size]
            try:
                with self._autocast():
                    r = self._train_scores([ids_c[i] for i in idx] + [ids_r[i] for i in idx])
                bt_loss(r[:len(idx)], r[len(idx):]).backward()
                self.model.zero_grad(set_to_none=True)
                return self.cfg.batch_size
            except torch.cuda.OutOfMemoryError:
                self.model.zero_grad(set_to_none=True)
                if str(self.cfg.device).startswith("cuda"):
                    torch.cuda.empty_cache()
                if self.cfg.batch_size == 1:
                    raise RuntimeError(f"fine-tuning {self.cfg.model}: one pair of {int(lengths.max())} tokens does "
                                       f"not fit on {self.cfg.device}; lower max_length ({self.cfg.max_length}) or use "
                                       "rm='lora' / precision='bf16'") from None
                before = (self.cfg.batch_size, self.cfg.grad_accum)
                self.cfg.batch_size //= 2
                self.cfg.grad_accum = before[0] * before[1] // self.cfg.batch_size
                print(f"[finetune] out of memory at {before[0]} pairs per micro-batch: now {self.cfg.batch_size} x "
                      f"{self.cfg.grad_accum} accumulation (effective batch {before[0] * before[1]} unchanged, "
                      f"up to {before[0] * before[1] - self.cfg.batch_size * self.cfg.grad_accum} pairs lost to rounding)")

    def fit(self, df: pd.DataFrame, epochs: int | None = None, reset_optimizer: bool = True, seed: int | None = None,
            label_margin: np.ndarray | None = None, progress: bool = True) -> list[float]:
        """BT training on a pair table; returns the mean loss per epoch."""
        from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn
        if len(df) == 0:
            raise ValueError("fit: empty pair table")
        epochs = epochs or self.cfg.epochs
        rng = np.random.default_rng(self.cfg.seed if seed is None else seed)
        torch.manual_seed(int(rng.integers(2**31)) + ddp.rank())   # dropout masks (per rank when data-parallel)
        ids_c = self._encode([rm_text(p, c) for p, c in zip(df.prompt, df.chosen)])
        ids_r = self._encode([rm_text(p, r) for p, r in zip(df.prompt, df.rejected)])
        m = None if label_margin is None else torch.as_tensor(np.asarray(label_margin, np.float32))
        if self.cfg.auto_batch and str(self.cfg.device).startswith("cuda"):
            self.fit_batch_probe(ids_c, ids_r)
        per_epoch = math.ceil(math.ceil(len(df) / self.cfg.batch_size) / self.cfg.grad_accum)
        if reset_optimizer or self.optimizer is None:
            self._new_optimizer(per_epoch * epochs)
        self.model.train()
        losses = []
        t0 = time.perf_counter()
        bar = tqdm(total=len(df) * epochs, desc="fine-tune RM", unit="pair", disable=not (progress and ddp.is_main()),
                   leave=False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        for _ in range(epochs):
            batches = self._micro_batches(ids_c, ids_r, rng)
            tot = 0.0
            for k, batch in enumerate(batches):
                idx = ddp.shard(batch)                  # all of it in one process; this rank's share otherwise
                if len(idx):
                    with self._autocast():
                        r = self._train_scores([ids_c[i] for i in idx] + [ids_r[i] for i in idx])
                    mk = 0.0 if m is None else m[idx].to(r.device)
                    loss = bt_loss(r[:len(idx)], r[len(idx):], mk)
                    (loss * len(idx) / (self.cfg.batch_size * self.cfg.grad_accum)).backward()
                    tot += loss.item() * len(idx)
                if (k + 1) % self.cfg.grad_accum == 0 or k + 1 == len(batches):
                    ddp.all_reduce_gradients(trainable)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.steps += 1
                bar.update(len(batch))
            losses.append(ddp.all_reduce_sum([tot], self.cfg.device)[0] / len(df))
        bar.close()
        self.model.eval()
        self.stats.pairs += len(df) * epochs
        self.stats.train_seconds += time.perf_counter() - t0
        return losses

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Weights (safetensors; adapter + score head for LoRA), tokenizer and the config."""
        path = Path(path)
        if ddp.is_main():                               # data-parallel: every rank holds the same weights
            path.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)
            (path / "mars_finetune.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        ddp.barrier()
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "FinetunedRewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        path = Path(path)
        meta = path / "mars_finetune.json"
        if not meta.exists():
            raise FileNotFoundError(f"{path}: not a saved fine-tuned reward model (no mars_finetune.json)")
        d = json.loads(meta.read_text())
        d["lora_targets"] = tuple(d["lora_targets"]) if d.get("lora_targets") else None
        if device:
            d["device"] = device
        cfg = FinetuneConfig(**d)
        tok = AutoTokenizer.from_pretrained(path)
        if cfg.lora:
            from peft import PeftModel
            base = AutoModelForSequenceClassification.from_pretrained(
                cfg.model, num_labels=1, dtype=torch.float32, use_safetensors=True, trust_remote_code=False)
            base.config.pad_token_id = tok.pad_token_id
            model = PeftModel.from_pretrained(base, path)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=torch.float32, use_safetensors=True, trust_remote_code=False)
        return cls(cfg, model=model, tokenizer=tok)


def _is_peft(model) -> bool:
    return type(model).__module__.startswith("peft")


def _add_lora(model, cfg: FinetuneConfig):
    from peft import LoraConfig, TaskType, get_peft_model
    lc = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    bias="none", target_modules=list(cfg.lora_targets) if cfg.lora_targets else None)
    return get_peft_model(model, lc)                    # SEQ_CLS: the classifier / score head is trained and saved
