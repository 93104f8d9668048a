"""A second gold judge that shares no model with the policy or the reward models ("gold-judge-3").

`mars_lib.judges.gold1` scores fluency with SmolLM2 (the policy that wrote the responses) and relevance with
MiniLM (the reward models' encoder), so a reward model or a policy could partly agree with it for the
wrong reason: they share a feature map. This judge keeps the same six facets and the same weights,
but computes its two model facets with models of its own:

| facet          | model                       | definition, mapped to [0, 1] by fixed constants               | weight |
|----------------|-----------------------------|---------------------------------------------------------------|--------|
| relevance      | all-mpnet-base-v2 (110M)    | cosine(prompt, response), mean pooling + L2 norm,             | 3.0    |
|                |                             | (cos - 0.05) / 0.65 clipped                                   |        |
| fluency        | Gemma-3-270M base (Q4_K_M)  | mean log p(response token | "{prompt}\\n\\n", previous tokens), | 2.0    |
|                |                             | first 256 response tokens, (logp + 4.5) / 3.5 clipped         |        |
|                |                             | (logp >= -1 earns no more: loops are not fluency)             |        |
| non_repetition | none (text)                 | distinct word-3-gram ratio (`judge.non_repetition`)           | 2.0    |
| length         | none (text)                 | bump around 50 words (`judge.length_score`)                   | 1.0    |
| complete       | none (text)                 | EOS seen or final . ! ? ) " ' (`judge.complete_score`)        | 1.0    |
| tone           | VADER lexicon               | (compound + 1) / 2                                            | 0.5    |

gold = Σ weight · facet, in [0, 9.5]; an empty response scores 0 on every facet. The two mapping
constants of the model facets were set once from the facets' ranges on the gold task's SmolLM2
responses (relevance: 5th-95th percentile of the cosine; fluency: so that word salad sits near 0 and
fluent prose near 0.7, as for judge.py), then frozen; they are monotone, so they change no facet's
own pairwise agreement, only how facets add up. `MODELS` declares the models the facets load: none is
the policy (SmolLM2) or the reward models' encoder (MiniLM) — tests/test_judge3.py checks it.
Gemma is a base model (no chat template): the context is the prompt and a blank line.

Cost (one CPU thread, shared machine, 64 gold-task responses, cold): 0.88 responses/s against 1.52 for
judge.py; mpnet 6.9 texts/s (MiniLM 22.9), Gemma 1.21 texts/s (SmolLM2 1.72: Gemma's 262k-word output
layer costs more than its body). First use also reassembles / dequantises the models (~80 s, once).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn

from mars_lib.judges.gold1 import (FACETS, WEIGHTS, JudgeCache, budget_split, cached_facets, facet_frame, left_padded,
                    response_mean_logprobs)
from mars_lib.pipeline.assets import asset_path, cache_dir
from mars_lib.pipeline.split_assets import gemma_dir, mpnet_dir, SPLIT_ASSETS
from mars_lib.reward_models.features import Encoder
from mars_lib.pipeline.memory import release_memory

JUDGE_ID = "gold-judge-3"       # part of every cache key: change it whenever a facet's definition changes
MODELS = {"relevance": "all-mpnet-base-v2", "fluency": "gemma-3-270m"}   # the models the facets load
REL_LO, REL_SPAN = 0.05, 0.65   # relevance = (cos - REL_LO) / REL_SPAN, clipped to [0, 1]
FLU_LO, FLU_SPAN = -4.5, 3.5    # fluency = (logp - FLU_LO) / FLU_SPAN, clipped to [0, 1]
MAX_RESPONSE_TOKENS = 256       # fluency: mean over the first 256 response tokens (long answers cost linearly)
MAX_CONTEXT_TOKENS = 256        # fluency: the prompt's last 256 tokens
__all__ = ["FACETS", "JUDGE_ID", "MODELS", "WEIGHTS", "GoldJudge3", "Judge3Cache"]


class Judge3Cache(JudgeCache):
    """`JudgeCache` keyed by this judge's id: sha256(JUDGE_ID, models, prompt, response, finished)."""

    @staticmethod
    def key(prompt: str, response: str, finished: bool, models: str = "") -> str:
        import hashlib
        import json
        return hashlib.sha256(json.dumps([JUDGE_ID, models, prompt, response, bool(finished)]).encode()).hexdigest()


class GoldJudge3:
    """g3(x, y) for batches: mpnet relevance, Gemma-3-270M fluency, and judge.py's text facets."""

    def __init__(self, encoder, lm_model, lm_tokenizer, batch_size: int = 8, cache: Judge3Cache | None = None,
                 lm_id: str = "gemma-3-270m", progress: bool = True):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        asset_path("vader")                       # checksum-verified before use
        self.encoder, self.lm, self.tok, self.batch_size = encoder, lm_model.eval(), lm_tokenizer, batch_size
        self.vader = SentimentIntensityAnalyzer()
        self.cache, self.judged, self.progress = cache, 0, progress
        self.models = f"{encoder.encoder_id}|{lm_id}"   # part of every cache key

    @classmethod
    def offline(cls, cached: bool = True, **kw) -> GoldJudge3:
        """Both models from the offline assets (reassembled / converted into the cache on first use)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        enc = Encoder(mpnet_dir(), f"all-mpnet-base-v2@{SPLIT_ASSETS['mpnet'].sha256[:12]}", None,
                      max_length=384, batch_size=16)
        enc.tok.truncation_side = "right"          # relevance: the start of a response is what answers
        path = gemma_dir()
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(path)
        return cls(enc, lm, tok, cache=Judge3Cache(cache_dir() / "judge3.sqlite") if cached else None,
                   lm_id=f"gemma-3-270m-q4_k_m@{SPLIT_ASSETS['gemma3_gguf'].sha256[:12]}", **kw)

    def _ids(self, prompt: str, response: str) -> tuple[list[int], list[int]]:
        """Context ids (<bos> + prompt + blank line, last MAX_CONTEXT_TOKENS kept) and response ids (first
        MAX_RESPONSE_TOKENS), tokenised separately as judge.py does."""
        c = self.tok(f"{prompt}\n\n", add_special_tokens=False).input_ids[-MAX_CONTEXT_TOKENS:]
        bos = [self.tok.bos_token_id] if self.tok.bos_token_id is not None else []
        return bos + c, self.tok(response, add_special_tokens=False).input_ids[:MAX_RESPONSE_TOKENS]

    def mean_logprob(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Mean log p(response token | context, previous tokens) under Gemma; [N]. Empty -> -inf.

        The 262k-word output layer is applied only to each row's own response positions (not to padding):
        [r, V] per row instead of [b, L, V]."""
        out = np.full(len(prompts), -np.inf)
        ids_all = {i: self._ids(prompts[i], responses[i]) for i in range(len(prompts)) if responses[i].strip()}
        order = sorted(ids_all, key=lambda i: len(ids_all[i][0]) + len(ids_all[i][1]))
        cap = getattr(self.lm.config, "final_logit_softcapping", None)
        bar = tqdm(total=len(order), desc="judge3: fluency (gemma)", unit="text",
                   disable=not self.progress or len(order) < 2 * self.batch_size)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            seqs = [ids_all[i][0] + ids_all[i][1] for i in idx]
            for g in budget_split([len(q) for q in seqs]):
                ids, att, pos = left_padded([seqs[j] for j in g], 0)      # every response ends at position L-1
                out[[idx[j] for j in g]] = response_mean_logprobs(self.lm, ids, att, pos,
                                                                  [len(ids_all[idx[j]][1]) for j in g], softcap=cap)
            bar.update(len(idx))
        bar.close()
        release_memory()                                # the LM's activations (mars_lib.pipeline.memory)
        return out

    def facets(self, prompts: list[str], responses: list[str], finished: list[bool]) -> pd.DataFrame:
        """All six facets in [0, 1], one row per (prompt, response). Duplicate rows are judged once,
        rows judged before (same judge id and models) come from the cache, 256 new rows at a time."""
        keys = list(zip(prompts, responses, map(bool, finished)))
        df, n = cached_facets(keys, self.cache, lambda p, r, f: Judge3Cache.key(p, r, f, models=self.models),
                              self._facets_unique, chunk=256)
        self.judged += n
        return df

    def _facets_unique(self, prompts: list[str], responses: list[str], finished: list[bool]) -> pd.DataFrame:
        show = self.progress and len(prompts) > 32
        e_p = self.encoder.embed(list(prompts), desc="judge3: prompts (mpnet)", progress=show)
        e_r = self.encoder.embed([r if r.strip() else " " for r in responses], desc="judge3: responses (mpnet)",
                                 progress=show)
        cos = (e_p * e_r).sum(1)
        lp = self.mean_logprob(list(prompts), list(responses))
        return facet_frame(cos, lp, responses, finished, self.vader, relevance=(REL_LO, REL_SPAN),
                           fluency=(FLU_LO, FLU_SPAN))

    @staticmethod
    def combine(facets: pd.DataFrame, weights: dict[str, float] | None = None) -> np.ndarray:
        """gold = Σ_k w_k · facet_k, [N] (judge.py's weights unless `weights` is given)."""
        w = WEIGHTS if weights is None else weights
        return sum(w[k] * facets[k].to_numpy(dtype=float) for k in FACETS)

    def score(self, prompts, responses, finished) -> np.ndarray:
        """g3(x, y) per row; `finished` as in `GoldJudge.score` (False: completeness from the text's ending)."""
        if finished is None or len(finished) != len(responses):
            raise ValueError("GoldJudge3.score needs one `finished` flag per response")
        return self.combine(self.facets(prompts, responses, finished))
