"""Direct Preference Optimization (Rafailov et al. 2023) of a causal-LM policy on RM-labelled pairs.

RLAIF downstream (notebook 05): each reward model labels (prompt, chosen, rejected) pairs and DPO
aligns the same base policy on them. Rules, each with its source:

* Loss (Rafailov et al. 2023, eq. 7): L = mean −log σ(m), m = β[(log π(y+|x) − log π_ref(y+|x)) −
  (log π(y−|x) − log π_ref(y−|x))]; reward accuracy = share of m > 0, margin = m (as TRL logs them).
* log π(y|x) sums log p(token | prompt, previous tokens) over response tokens only; x is rendered
  with the chat template as `Generator._chat` does, so the policy learns on the text it is sampled
  from. EOS (where `Generator` stops) is appended to each response: the policy learns to stop, and
  an empty response has one token. Prompts are cut from the left to max_prompt_tokens (the
  assistant marker stays), response + EOS from the right to max_response_tokens (TRL's rule).
  Batching as `GoldJudge.mean_logprob`: left padding, position_ids from the attention mask,
  `logits_to_keep` = response positions only.
* Policy = base + LoRA (peft, CAUSAL_LM); reference = the same model in `model.disable_adapter()`,
  so no second copy is held. LoRA's B starts at zero, so π = π_ref and L = log 2 before the first
  step. Reference log-probs never change: computed once per pair (eval mode, no grad) in the
  micro-batch where it first appears, and cached by the pair's texts.
* Optimisation as `mars_lib.reward_models.finetune`: AdamW, weight decay 0, linear decay without warm-up, a fresh
  optimizer per `fit`, chosen + rejected in one forward, grad_accum micro-batches per step;
  "fp32" (the only choice on CPU) or "bf16" autocast on CUDA over fp32 weights.
* Determinism: cfg.seed seeds the LoRA init, `fit(seed)` seeds torch (LoRA dropout) and the batch
  order (a fresh numpy permutation per pass): the same base, pairs, steps and seed for every
  reward model make the policies differ only through the labels.
* Data-parallel under `accelerate launch` / `torchrun`: each process takes its share of every
  micro-batch and the gradients are summed before each step, so the optimisation is that of one
  process (`mars_lib.reward_models.distributed`).

Generation: `Generator(policy.model, policy.tokenizer, f"smollm2-dpo@{policy.digest()}", cache)`
samples with the adapters on; `policy.merged()` is a plain transformers copy with them merged in
(faster; the policy stays trainable). The model id must name the policy (`digest()` hashes the
adapters), or the generation cache returns the base model's texts.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mars_lib.reward_models import distributed as ddp
from mars_lib.reward_models.finetune import PRECISIONS, Throughput, _is_peft


@dataclass
class DPOConfig:
    """DPO settings; β = 0.1 as in Rafailov et al. (2023), lr 5e-5 is a usual LoRA rate."""
    beta: float = 0.1                   # DPO temperature
    lr: float = 5e-5
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None   # None: peft's default for the arch (q_proj, v_proj on Llama)
    batch_size: int = 4                 # pairs per micro-batch (2 × batch_size sequences per forward)
    grad_accum: int = 1                 # micro-batches per optimizer step
    steps: int | None = None            # optimizer steps per `fit`, or
    epochs: int | None = None           # passes: ⌈epochs·⌈N/batch_size⌉/grad_accum⌉ steps; neither: 1 epoch
    max_prompt_tokens: int = 256
    max_response_tokens: int = 96       # including the appended EOS
    system_prompt: str | None = None    # must be the Generator's
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {PRECISIONS}")
        if self.precision == "bf16" and not str(self.device).startswith("cuda"):
            raise ValueError("precision 'bf16' is for CUDA devices; use 'fp32' on CPU")
        for name in ("lora_r", "batch_size", "grad_accum", "max_prompt_tokens", "max_response_tokens", "steps",
                     "epochs"):
            v = getattr(self, name)
            if not (v is None and name in ("steps", "epochs")) and (type(v) is not int or v < 1):
                raise ValueError(f"DPOConfig.{name} must be a positive integer, got {v!r}")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("DPOConfig: give steps or epochs, not both")
        if not (self.beta > 0 and self.lr > 0 and self.lora_alpha > 0 and 0 <= self.lora_dropout < 1):
            raise ValueError(f"DPOConfig: need beta, lr, lora_alpha > 0 and 0 <= lora_dropout < 1, got {self}")


def encode(tokenizer, prompts, responses, max_prompt_tokens=256, max_response_tokens=96, system_prompt=None):
    """(chat-prompt ids cut from the left, response ids + EOS cut from the right) per row."""
    sys_msg = [{"role": "system", "content": system_prompt}] if system_prompt else []   # as Generator._chat
    chat = {p: tokenizer.apply_chat_template(sys_msg + [{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in set(prompts)}
    ctx = {p: tokenizer(t, add_special_tokens=False).input_ids[-max_prompt_tokens:] for p, t in chat.items()}
    resp = [(tokenizer(r, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])[:max_response_tokens]
            for r in responses]
    return [ctx[p] for p in prompts], resp


def _logprobs(model, ctx: list[list[int]], resp: list[list[int]], device) -> torch.Tensor:
    """Σ log p(response tokens | prompt) per row, [B] float32; gradients flow unless under no_grad."""
    seqs = [c + r for c, r in zip(ctx, resp)]
    L, R = max(map(len, seqs)), max(map(len, resp))      # L > R: every prompt has >= 1 token
    ids = torch.zeros((len(seqs), L), dtype=torch.long)  # the pad id is irrelevant: masked out
    att = torch.zeros_like(ids)
    keep = torch.zeros((len(seqs), R), dtype=torch.bool)
    for j, (q, r) in enumerate(zip(seqs, resp)):         # left padding: every response ends at L-1
        ids[j, L - len(q):] = torch.tensor(q)
        att[j, L - len(q):] = 1
        keep[j, R - len(r):] = True
    ids, att, keep = ids.to(device), att.to(device), keep.to(device)
    pos = (att.cumsum(1) - 1).clamp(min=0)
    # logits of the last R+1 positions only; position L-R-1+k predicts token L-R+k
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=R + 1).logits[:, :-1].float()
    tok_lp = torch.log_softmax(logits, -1).gather(-1, ids[:, L - R:, None])[..., 0]      # [B, R]
    return tok_lp.masked_fill(~keep, 0.0).sum(1)


def sequence_logprobs(model, tokenizer, prompts: list[str], responses: list[str], max_prompt_tokens: int = 256,
                      max_response_tokens: int = 96, system_prompt: str | None = None,
                      batch_size: int = 16) -> torch.Tensor:
    """log π(y|x) = Σ log p(response tokens + EOS | chat-rendered user prompt), [B] float32.

    `prompts` are user messages (the chat template is applied here, as by `Generator`)."""
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many prompts as responses (>= 1), got {len(prompts)} and {len(responses)}")
    ctx, resp = encode(tokenizer, prompts, responses, max_prompt_tokens, max_response_tokens, system_prompt)
    dev = next(model.parameters()).device
    return torch.cat([_logprobs(model, ctx[s:s + batch_size], resp[s:s + batch_size], dev)
                      for s in range(0, len(ctx), batch_size)])


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float):
    """(mean −log σ(m), reward accuracy = mean[m > 0], margins m [B]), m = β[(π_c − ref_c) − (π_r − ref_r)].

    All four must be [B] with the same B: unlike `bt_loss` nothing is squeezed (sequence_logprobs
    returns [B]), so a [B] vs [B, 1] mix is an error instead of a silent [B, B] broadcast."""
    shapes = [tuple(t.shape) for t in (pi_c, pi_r, ref_c, ref_r)]
    if len(shapes[0]) != 1 or len(set(shapes)) != 1:
        raise ValueError(f"pi_c, pi_r, ref_c, ref_r must all have shape [B], got {shapes}")
    margins = beta * ((pi_c - ref_c) - (pi_r - ref_r))
    return -F.logsigmoid(margins).mean(), (margins > 0).float().mean(), margins


def _micro_batches(n: int, batch_size: int, rng: np.random.Generator):
    """Endless micro-batches (lists of row indices) of successive passes, each a fresh permutation."""
    while True:
        perm = rng.permutation(n)
        for s in range(0, n, batch_size):
            yield perm[s:s + batch_size].tolist()


class DPOPolicy:
    """A causal LM + LoRA adapters trained by DPO; the adapters-off model is the reference.

    peft injects the adapters into `model` in place: give each policy its own copy of the base."""

    def __init__(self, model, tokenizer, cfg: DPOConfig | None = None):
        self.cfg = cfg or DPOConfig()
        ddp.ensure_group(self.cfg.device)               # under accelerate launch / torchrun
        if ddp.local_device(self.cfg.device) != self.cfg.device:
            self.cfg = replace(self.cfg, device=ddp.local_device(self.cfg.device))
        self.tokenizer = tokenizer
        if not _is_peft(model):
            from peft import LoraConfig, TaskType, get_peft_model
            torch.manual_seed(self.cfg.seed)             # LoRA A's init (B is zero)
            c = self.cfg
            model = get_peft_model(model, LoraConfig(
                task_type=TaskType.CAUSAL_LM, r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                bias="none", target_modules=list(c.lora_targets) if c.lora_targets else None))
        self.model = model.to(self.cfg.device)
        ddp.broadcast_parameters(self.model)
        self.ref_cache: dict[tuple[str, str, str], tuple[float, float]] = {}   # (x, y+, y−) -> ref log-probs
        self.steps = 0
        self.stats = Throughput()

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def _prepare(self, df: pd.DataFrame):
        if len(df) == 0 or not {"prompt", "chosen", "rejected"} <= set(df.columns):
            raise ValueError("need a non-empty pair table with columns prompt, chosen, rejected")
        c, n = self.cfg, len(df)
        ctx, resp = encode(self.tokenizer, list(df.prompt) * 2, list(df.chosen) + list(df.rejected),
                           c.max_prompt_tokens, c.max_response_tokens, c.system_prompt)
        return (ctx[:n], resp[:n], resp[n:]), list(zip(df.prompt, df.chosen, df.rejected))

    def _pair_logprobs(self, enc, idx: list[int]):
        ctx, c, r = enc
        with self._autocast():
            lp = _logprobs(self.model, [ctx[i] for i in idx] * 2, [c[i] for i in idx] + [r[i] for i in idx],
                           self.cfg.device)
        return lp[:len(idx)], lp[len(idx):]

    def _reference(self, enc, keys, idx: list[int]):
        todo = [i for i in idx if keys[i] not in self.ref_cache]
        if todo:
            self.model.eval()
            with torch.no_grad(), self.model.disable_adapter():
                rc, rr = self._pair_logprobs(enc, todo)
            self.ref_cache.update({keys[i]: (a, b) for i, a, b in zip(todo, rc.tolist(), rr.tolist())})
        ref = torch.tensor([self.ref_cache[keys[i]] for i in idx], device=self.cfg.device)
        return ref[:, 0], ref[:, 1]

    @torch.no_grad()
    def evaluate(self, df: pd.DataFrame) -> dict:
        """DPO loss, reward accuracy and mean margin of the current policy on a pair table (eval mode)."""
        enc, keys = self._prepare(df)
        parts = []
        for s in range(0, len(df), self.cfg.batch_size):
            idx = list(range(s, min(s + self.cfg.batch_size, len(df))))
            rc, rr = self._reference(enc, keys, idx)
            parts.append((*self._pair_logprobs(enc, idx), rc, rr))
        loss, acc, m = dpo_loss(*(torch.cat(t) for t in zip(*parts)), self.cfg.beta)
        return {"loss": loss.item(), "reward_accuracy": acc.item(), "mean_margin": m.mean().item()}

    def fit(self, df: pd.DataFrame, steps: int | None = None, epochs: int | None = None, seed: int | None = None,
            progress: bool = True) -> list[dict]:
        """DPO on a pair table (prompt / chosen / rejected); one dict per optimizer step:
        step, loss, reward_accuracy, mean_margin (over that step's pairs, before its update)."""
        from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn
        given = steps is not None or epochs is not None
        run = replace(self.cfg, steps=steps, epochs=epochs) if given else self.cfg   # replace() validates
        enc, keys = self._prepare(df)
        bs, accum = run.batch_size, run.grad_accum
        total = run.steps or math.ceil((run.epochs or 1) * math.ceil(len(df) / bs) / accum)
        seed = run.seed if seed is None else seed
        rng = np.random.default_rng(seed)                # the batch order
        torch.manual_seed(seed + ddp.rank())             # LoRA dropout masks (per rank when data-parallel)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=run.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))   # HF "linear", warm-up 0
        stream = _micro_batches(len(df), bs, rng)
        history, t0 = [], time.perf_counter()
        bar = tqdm(total=total, desc="DPO", unit="step", disable=not (progress and ddp.is_main()), leave=False)
        for _ in range(total):
            sums = np.zeros(4)                           # loss, accuracy and margin sums, pairs
            for _ in range(accum):
                idx = ddp.shard(next(stream))            # all of it in one process; this rank's share otherwise
                if not idx:
                    continue
                rc, rr = self._reference(enc, keys, idx)
                self.model.train()
                pc, pr = self._pair_logprobs(enc, idx)
                loss, acc, m = dpo_loss(pc, pr, rc, rr, run.beta)
                (loss * len(idx) / (bs * accum)).backward()
                sums += [loss.item() * len(idx), acc.item() * len(idx), m.sum().item(), len(idx)]
            ddp.all_reduce_gradients(trainable)
            sums = np.array(ddp.all_reduce_sum(sums.tolist(), self.cfg.device))
            n = int(sums[3])
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            self.steps += 1
            self.stats.pairs += n
            history.append({"step": self.steps, "loss": float(sums[0] / n), "reward_accuracy": float(sums[1] / n),
                            "mean_margin": float(sums[2] / n)})
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0] / n:.4f}", pairs_s=f"{self.stats.pairs / (time.perf_counter() - t0):.1f}")
        bar.close()
        self.model.eval()
        self.stats.train_seconds += time.perf_counter() - t0
        return history

    # --- generation and persistence ------------------------------------------------------
    def merged(self):
        """A plain transformers model: a copy with the adapters merged in (for `Generator`)."""
        import copy
        return copy.deepcopy(self.model).merge_and_unload().eval()

    def digest(self) -> str:
        """12 hex digits of sha256 over the adapter weights: names the policy in generation-cache keys."""
        h = hashlib.sha256()
        for name, p in sorted(self.model.named_parameters(), key=lambda t: t[0]):
            if p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        """Adapter (adapter_model.safetensors + adapter_config.json), tokenizer, and mars_dpo.json."""
        path = Path(path)
        if ddp.is_main():                               # data-parallel: every rank holds the same adapters
            path.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)
            (path / "mars_dpo.json").write_text(json.dumps({"config": asdict(self.cfg), "steps": self.steps},
                                                           indent=2))
        ddp.barrier()
        return path

    @classmethod
    def load(cls, path: str | Path, base_model, tokenizer=None, device: str | None = None) -> "DPOPolicy":
        """Rebuild a saved policy on `base_model`: a fresh copy of the base it was trained from
        (peft injects the adapters into it in place; the base weights are not saved)."""
        from peft import PeftModel
        from transformers import AutoTokenizer
        if not (Path(path) / "mars_dpo.json").exists():
            raise FileNotFoundError(f"{path}: not a saved DPO policy (no mars_dpo.json)")
        meta = json.loads((Path(path) / "mars_dpo.json").read_text())
        d = {**meta["config"], "device": device or meta["config"]["device"]}
        d["lora_targets"] = tuple(d["lora_targets"]) if d["lora_targets"] else None
        model = PeftModel.from_pretrained(base_model, path, is_trainable=True)
        policy = cls(model, tokenizer or AutoTokenizer.from_pretrained(path), DPOConfig(**d))
        policy.steps = meta["steps"]
        policy.model.eval()          # is_trainable=True leaves peft in train mode: LoRA dropout would make scores random
        return policy
