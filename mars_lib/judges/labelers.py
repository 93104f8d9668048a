"""Labelers: who decides which of two responses is better, for synthetic pairs (RLAIF).

One interface: `compare(prompts, a, b) -> gap` with gap > 0 meaning "a is better", in the
labeler's own units; `label_from_gap(gap, rng) -> bool array` (True = a preferred) turns a gap
into a label, and `label(prompts, a, b, rng)` is the two together. Every
call is counted in `calls` (pairs compared), so strategies can report their label budget.

- `GoldLabeler`: the offline task's simulated annotator — the gold judge's score difference, and
  labels drawn from Bradley-Terry with the task's noise temperature β (exactly how the task's own
  labels were made). It looks scores up by response text (`gold` column of judged responses).
- `RewardModelLabeler`: the reward model itself (self-training, the West-of-N family). It only
  calls the model's `score`; it never sees a gold score. Labels = the sign of its reward gap.
- `LLMJudgeLabeler`: a pairwise LLM judge for the paper profile (any causal LM + tokenizer):
  the probability of answering "A" vs "B" to a comparison prompt, averaged over both A/B orders
  (position bias cancels) or in one randomized order per pair (`both_orders=False`). Offline,
  SmolLM2-135M is far too weak to be a judge; this labeler is a plug-in, not a default.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


class GoldLabeler:
    name = "gold"

    def __init__(self, responses: pd.DataFrame, beta: float):
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if "gold" not in responses:
            raise ValueError("GoldLabeler needs judged responses (a 'gold' column); "
                             "regenerate policy samples without --no-judge")
        self.gold = dict(zip(responses.response, responses.gold))
        self.beta, self.calls = beta, 0

    def compare(self, prompts, a, b) -> np.ndarray:
        try:
            ga, gb = np.array([self.gold[x] for x in a]), np.array([self.gold[x] for x in b])
        except KeyError as e:
            raise KeyError(f"GoldLabeler: response not judged: {str(e)[:80]}") from None
        self.calls += len(ga)
        return ga - gb

    def label_from_gap(self, gap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A noisy Bradley-Terry draw: P(a preferred) = σ(gap / β), as the task's own labels."""
        return rng.random(len(gap)) < 1.0 / (1.0 + np.exp(-np.asarray(gap) / self.beta))

    def label(self, prompts, a, b, rng: np.random.Generator) -> np.ndarray:
        return self.label_from_gap(self.compare(prompts, a, b), rng)


class RewardModelLabeler:
    name = "rm"

    def __init__(self, score_fn):
        """score_fn(prompts, responses) -> rewards [N] (e.g. a head RM on cached features)."""
        self.score_fn, self.calls = score_fn, 0

    def compare(self, prompts, a, b) -> np.ndarray:
        prompts = list(prompts)
        r = np.asarray(self.score_fn(prompts + prompts, list(a) + list(b)), dtype=float)
        self.calls += len(prompts)
        return r[:len(prompts)] - r[len(prompts):]

    def label_from_gap(self, gap: np.ndarray, rng=None) -> np.ndarray:
        return np.asarray(gap) > 0

    def label(self, prompts, a, b, rng=None) -> np.ndarray:
        return self.label_from_gap(self.compare(prompts, a, b))


JUDGE_TEMPLATE = ("You compare two answers to a user's question.\n\nQuestion: {prompt}\n\nAnswer A: {a}\n\n"
                  "Answer B: {b}\n\nWhich answer is more helpful, correct and fluent? Reply with one letter, A or B.")


class LLMJudgeLabeler:
    name = "llm"

    def __init__(self, model, tokenizer, both_orders: bool = True, seed: int = 0, device: str = "cpu",
                 template: str = JUDGE_TEMPLATE, batch_size: int = 8):
        self.model, self.tok, self.device = model.eval(), tokenizer, device
        self.both_orders, self.template, self.batch_size = both_orders, template, batch_size
        self.rng = np.random.default_rng(seed)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.ids = [self.tok(x, add_special_tokens=False).input_ids[-1] for x in ("A", "B")]
        self.calls = 0

    def _logit_a_minus_b(self, prompts, first, second) -> np.ndarray:
        import torch
        texts = []
        for p, x, y in zip(prompts, first, second):
            msg = [{"role": "user", "content": self.template.format(prompt=p, a=x, b=y)}]
            texts.append(self.tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True))
        out = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tok(texts[s:s + self.batch_size], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                last = self.model(**enc).logits[:, -1, :].float()
            out.append((last[:, self.ids[0]] - last[:, self.ids[1]]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def compare(self, prompts, a, b) -> np.ndarray:
        """log-odds that a is better (A/B position bias removed by averaging or randomization)."""
        prompts, a, b = list(prompts), list(a), list(b)
        self.calls += len(prompts)
        if self.both_orders:
            return 0.5 * (self._logit_a_minus_b(prompts, a, b) - self._logit_a_minus_b(prompts, b, a))
        swap = self.rng.random(len(prompts)) < 0.5
        first = [y if s else x for x, y, s in zip(a, b, swap)]
        second = [x if s else y for x, y, s in zip(a, b, swap)]
        d = self._logit_a_minus_b(prompts, first, second)
        return np.where(swap, -d, d)

    def label_from_gap(self, gap: np.ndarray, rng=None) -> np.ndarray:
        return np.asarray(gap) > 0

    def label(self, prompts, a, b, rng=None) -> np.ndarray:
        return self.label_from_gap(self.compare(prompts, a, b))
