"""Any local Hugging Face reward model as a MARS reward model: `mars score / allocate / augment --rm <folder>`.

A reward model here is an `AutoModelForSequenceClassification` with one output (num_labels = 1),
saved with `save_pretrained` — what TRL's RewardTrainer, OpenRLHF's export and our own
`finetune.FinetunedRewardModel.save` write. Only safetensors weights are read and no remote code
runs. Every check happens when the folder is opened, before any pair is read, and each error
names the fix.

Input text: TRL's RewardTrainer scores `prompt + response` for prompt/chosen/rejected data (string
concatenation, or the tokenizer's chat template for conversational data); our own fine-tuned RMs
score `features.rm_text(prompt, response)` ("Human: x\\n\\nAssistant: y"). `template` picks one:
"auto" reads `mars_finetune.json` (ours → "mars") and otherwise uses "concat".
Scoring is batched in length order, on `device` (default: CUDA when available), with a progress bar.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mars_lib.reward_models.features import rm_text

TEMPLATES = ("auto", "concat", "mars")


class HFRewardModelError(ValueError):
    """The folder is not a usable reward model; the message says why and what to do."""


def is_hf_folder(path) -> bool:
    return (Path(path) / "config.json").is_file()


def check_folder(path: Path, max_length: int | None = None) -> dict:
    """Validate a reward-model folder without loading weights; returns its config.json."""
    path = Path(path)
    if not path.is_dir():
        raise HFRewardModelError(f"--rm {path}: no such folder")
    cfg = json.loads((path / "config.json").read_text())
    has_st = any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists()
    if not has_st:
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise HFRewardModelError(f"{path}: weights are pickled (.bin/.pt) only; this tool reads safetensors. Convert "
                                     "once: AutoModelForSequenceClassification.from_pretrained(folder).save_pretrained("
                                     "folder, safe_serialization=True)")
        raise HFRewardModelError(f"{path}: no weights (*.safetensors) in the folder")
    arch = cfg.get("architectures") or []
    n_labels = cfg.get("num_labels", len(cfg.get("id2label") or {}) or None)
    if not any(a.endswith("ForSequenceClassification") for a in arch) or (n_labels not in (None, 1)):
        raise HFRewardModelError(f"{path}: no reward head (architectures {arch}, num_labels {n_labels}). A reward model "
                                 "is an AutoModelForSequenceClassification with num_labels=1 (e.g. saved by TRL's "
                                 "RewardTrainer); a base or causal LM folder has none")
    limit = cfg.get("max_position_embeddings")
    if max_length is not None and limit and max_length > limit:
        raise HFRewardModelError(f"--max-length {max_length} exceeds the model's {limit} positions: pass "
                                 f"--max-length {limit} or less")
    return cfg


class HFRewardModel:
    """r(x, y) = the single logit of a local sequence-classification model."""

    def __init__(self, path, max_length: int = 512, device: str | None = None, template: str = "auto",
                 batch_size: int = 32):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        if template not in TEMPLATES:
            raise HFRewardModelError(f"template {template!r}: choose one of {TEMPLATES}")
        self.path = Path(path)
        check_folder(self.path, max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            raise HFRewardModelError(f"{self.path}: the tokenizer has no pad token, so pairs cannot be scored in batches. "
                                     "Set one and save again: tokenizer.pad_token = tokenizer.eos_token; "
                                     "model.config.pad_token_id = tokenizer.pad_token_id")
        self.tokenizer.truncation_side = "left"          # keep the response's end
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.path, dtype=torch.float32, use_safetensors=True, trust_remote_code=False).to(self.device).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.template = ("mars" if (self.path / "mars_finetune.json").exists() else "concat") if template == "auto" else template
        self.max_length, self.batch_size = max_length, batch_size

    def text(self, prompt: str, response: str) -> str:
        return rm_text(prompt, response) if self.template == "mars" else prompt + response

    def score(self, prompts, responses, phi=None) -> np.ndarray:
        """Rewards [N] (float64), batched in length order."""
        import torch
        from tqdm import tqdm
        ids = self.tokenizer([self.text(p, r) for p, r in zip(prompts, responses)], truncation=True,
                             max_length=self.max_length)["input_ids"]
        order = np.argsort([len(i) for i in ids], kind="stable")
        out = np.empty(len(ids))
        with torch.inference_mode():
            for s in tqdm(range(0, len(order), self.batch_size), desc=f"scoring with {self.path.name}", unit="batch"):
                idx = order[s:s + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
                out[idx] = self.model(**batch).logits[:, 0].float().cpu().double().numpy()
        return out

    def pair_scores(self, df) -> tuple[np.ndarray, np.ndarray]:
        """(r(chosen), r(rejected)) of a prompt/chosen/rejected frame."""
        n = len(df)
        r = self.score(list(df.prompt) * 2, list(df.chosen) + list(df.rejected))
        return r[:n], r[n:]
