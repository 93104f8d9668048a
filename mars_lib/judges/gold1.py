"""The gold judge g(x, y) of the offline task: fixed, documented, deterministic.

It rewards what a person would, from shipped components, and is *not* the reward model's own
feature map (the RM sees one MiniLM embedding of the whole "Human: x / Assistant: y" text; the
judge combines six separately computed facets):

| facet          | definition (each mapped to [0, 1] by fixed constants)                       | weight |
|----------------|------------------------------------------------------------------------------|--------|
| relevance      | MiniLM cosine(prompt, response), (cos - 0.05) / 0.55 clipped                  | 3.0    |
| fluency        | mean token log-prob of the response under SmolLM2 given the chat prompt,     | 2.0    |
|                | (logp + 4) / 3 clipped (logp >= -1 earns no more: loops are not fluency)     |        |
| non_repetition | distinct word-3-gram ratio (1 = no repeated 3-gram)                          | 2.0    |
| length         | exp(-((ln words - ln 50) / 0.8)^2 / 2): a bump around 50 words              | 1.0    |
| complete       | 1 if the response ends a sentence (EOS seen or final . ! ? ) " '), else 0    | 1.0    |
| tone           | (VADER compound + 1) / 2: friendly, polite wording                           | 0.5    |

gold = Σ weight · facet, in [0, 9.5]. An empty response scores 0 on every facet.
The constants were set once by looking at the facet ranges on SmolLM2 responses, then frozen.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from mars_lib.pipeline.io import open_sqlite
from mars_lib.pipeline.assets import asset_path, cache_dir
from mars_lib.reward_models.features import Encoder
from mars_lib.pipeline.memory import release_memory

JUDGE_ID = "gold-judge-1"   # part of every judge-cache key: change it whenever a facet's definition changes
WEIGHTS = {"relevance": 3.0, "fluency": 2.0, "non_repetition": 2.0, "length": 1.0, "complete": 1.0, "tone": 0.5}
FACETS = tuple(WEIGHTS)
_WORD = re.compile(r"[A-Za-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def non_repetition(text: str, n: int = 3) -> float:
    w = words(text)
    if len(w) < n:
        return 1.0 if w else 0.0
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams)


def length_score(text: str, peak_words: float = 50.0, width: float = 0.8) -> float:
    n = len(words(text))
    if n == 0:
        return 0.0
    return math.exp(-0.5 * ((math.log(n) - math.log(peak_words)) / width) ** 2)


def complete_score(text: str, finished: bool) -> float:
    t = text.rstrip()
    if not t:
        return 0.0
    return 1.0 if finished or t[-1] in ".!?)\"'" else 0.0


class JudgeCache:
    """Facets by content: key = sha256(JUDGE_ID, models, prompt, response, finished) -> the six facet
    values; `models` names the encoder and LM the facets were computed with, so a judge built on
    other models never reads another's facets.

    The judge is a fixed, deterministic function, so a response judged once (task build, policy
    samples, notebook 02's fidelity check) is never judged again."""

    def __init__(self, path):
        import threading

        self._db = open_sqlite(path, "CREATE TABLE IF NOT EXISTS facets (key TEXT PRIMARY KEY, vals TEXT NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(prompt: str, response: str, finished: bool, models: str = "") -> str:
        import hashlib
        import json
        return hashlib.sha256(json.dumps([JUDGE_ID, models, prompt, response, bool(finished)]).encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, list[float]]:
        import json
        out = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, vals FROM facets WHERE key IN ({','.join('?' * len(chunk))})"
                out.update({k: json.loads(v) for k, v in self._db.execute(q, chunk)})
        return out

    def put_many(self, items: dict[str, list[float]]) -> None:
        import json
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO facets VALUES (?, ?)",
                                 [(k, json.dumps([float(x) for x in v])) for k, v in items.items()])
            self._db.commit()



def left_padded(seqs: list[list[int]], pad: int):
    """Token-id lists as one left-padded batch, so that every sequence ends at position L−1:
    (input_ids [b, L], attention_mask [b, L], position_ids [b, L] counting from each sequence's start)."""
    import torch
    L = max(map(len, seqs))
    ids = torch.full((len(seqs), L), pad)
    att = torch.zeros((len(seqs), L), dtype=torch.long)
    for j, q in enumerate(seqs):
        ids[j, L - len(q):] = torch.tensor(q)
        att[j, L - len(q):] = 1
    return ids, att, (att.cumsum(1) - 1).clamp(min=0)


MAX_ATTENTION_CELLS = 4_000_000   # rows × length² per forward: bounds the attention matrices of long texts


def budget_split(lengths: list[int], max_cells: int = MAX_ATTENTION_CELLS) -> list[list[int]]:
    """Consecutive groups of positions 0..n-1 with len(group) × max(length)² <= max_cells (at least one
    row each). A batch of the task's short texts stays whole; 16 MT-Bench answers of 1,500 tokens become
    groups of one, so no forward materialises 16 × heads × 1,500² attention weights."""
    groups, cur, top = [], [], 0
    for j, n in enumerate(lengths):
        t = max(top, n)
        if cur and (len(cur) + 1) * t * t > max_cells:
            groups.append(cur)
            cur, t = [], n
        cur.append(j)
        top = t
    return groups + [cur] if cur else groups


LOGIT_CELLS = 1 << 24      # output-layer cells per chunk: [chunk, V] floats = 64 MiB, twice with log-softmax


def response_mean_logprobs(lm, ids, att, pos, r_lens: list[int], softcap: float | None = None,
                           chunk: int | None = None) -> list[float]:
    """Mean log p(token | previous tokens) over each row's last r_lens[j] tokens of a left-padded batch.

    Memory: the output layer is applied to each row's own response positions, `chunk` at a time, so the
    peak is [chunk, V] floats instead of the [b, R, V] logits of the whole batch (16 MT-Bench answers of
    1,500 tokens under a 49k vocabulary: 4.7 GB of logits, twice that with their log-softmax). By default
    chunk = LOGIT_CELLS / V, at most 256: 256 positions for SmolLM2 (49k words), 64 for Gemma-3 (262k
    words, where 256 positions made ~0.8 GB of transient logits per step); the softcap runs in place."""
    import torch
    L = ids.shape[1]
    head = lm.get_output_embeddings()
    chunk = chunk or max(16, min(256, LOGIT_CELLS // head.weight.shape[0]))
    with torch.inference_mode():
        hid = lm.base_model(input_ids=ids, attention_mask=att, position_ids=pos).last_hidden_state
        out = []
        for j, r in enumerate(r_lens):
            total = 0.0
            for a in range(L - r, L, chunk):                 # target positions a .. b-1, predicted from a-1 .. b-2
                b = min(a + chunk, L)
                logits = head(hid[j, a - 1:b - 1]).float()   # [b - a, V]
                if softcap:
                    logits = logits.div_(softcap).tanh_().mul_(softcap)
                total += torch.log_softmax(logits, -1).gather(-1, ids[j, a:b, None]).sum().item()
            out.append(total / r)
    return out


def facet_frame(cos, logprob, responses: list[str], finished: list[bool], vader, relevance: tuple[float, float],
                fluency: tuple[float, float]) -> pd.DataFrame:
    """The six facets in [0, 1] from a judge's model outputs: relevance = (cos − lo) / span and fluency =
    (mean log-prob − lo) / span, clipped, with each judge's (lo, span); the text facets as defined above.
    An empty response scores 0 on every facet. Used by both gold judges."""
    empty = np.array([not r.strip() for r in responses])
    df = pd.DataFrame({
        "relevance": np.clip((np.asarray(cos) - relevance[0]) / relevance[1], 0, 1),
        "fluency": np.clip((np.nan_to_num(np.asarray(logprob, dtype=float), neginf=-99) - fluency[0]) / fluency[1],
                           0, 1),
        "non_repetition": [non_repetition(r) for r in responses],
        "length": [length_score(r) for r in responses],
        "complete": [complete_score(r, f) for r, f in zip(responses, finished)],
        "tone": [(vader.polarity_scores(r)["compound"] + 1) / 2 for r in responses],
    })
    df.loc[empty, list(FACETS)] = 0.0
    return df


def cached_facets(keys: list, cache, cache_key, compute, chunk: int | None = None) -> tuple[pd.DataFrame, int]:
    """Facet rows for `keys` (prompt, response, finished), in their order: each distinct key is computed
    once by `compute(prompts, responses, finished)` (a frame with the FACETS columns), looked up in and
    added to `cache` (None: no cache) under `cache_key(prompt, response, finished)`, `chunk` keys at a
    time (each chunk written when done, so a long job resumes where it stopped; None: all at once).
    Returns (the rows, how many keys were computed). Used by both gold judges."""
    uniq = list(dict.fromkeys(keys))
    ck = {k: cache_key(*k) for k in uniq} if cache is not None else {}
    have = cache.get_many(list(ck.values())) if cache is not None else {}
    todo = [k for k in uniq if ck.get(k) not in have]
    step = chunk or max(len(todo), 1)
    for s in range(0, len(todo), step):
        part = todo[s:s + step]
        f = compute([k[0] for k in part], [k[1] for k in part], [k[2] for k in part])
        new = {ck.get(k, k): list(row) for k, row in zip(part, f[list(FACETS)].itertuples(index=False))}
        if cache is not None:
            cache.put_many(new)
        have.update(new)
    return pd.DataFrame([have[ck.get(k, k)] for k in keys], columns=list(FACETS)), len(todo)

class GoldJudge:
    """g(x, y) for batches. Needs the MiniLM encoder, the SmolLM2 LM (for fluency), and VADER."""

    def __init__(self, encoder, lm_model, lm_tokenizer, batch_size: int = 16, cache: JudgeCache | None = None,
                 lm_id: str | None = None):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        asset_path("vader")                       # checksum-verified before use
        self.encoder, self.lm, self.tok, self.batch_size = encoder, lm_model.eval(), lm_tokenizer, batch_size
        self.vader = SentimentIntensityAnalyzer()
        self.cache, self.judged = cache, 0       # judged: responses actually scored (not from the cache)
        lm_id = lm_id or getattr(lm_model.config, "_name_or_path", type(lm_model).__name__)
        self.models = f"{getattr(encoder, 'encoder_id', type(encoder).__name__)}|{lm_id}"   # part of every cache key

    @classmethod
    def offline(cls, encoder=None, generator=None, cached: bool = True):
        from mars_lib.synthetic.generation import Generator
        encoder = encoder or Encoder.minilm()
        generator = generator or Generator.smollm2(None)
        return cls(encoder, generator.model, generator.tok,
                   cache=JudgeCache(cache_dir() / "judge.sqlite") if cached else None, lm_id=generator.model_id)

    def mean_logprob(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Mean log p(response token | chat prompt, previous tokens) under the LM; [N]. Empty -> -inf."""
        from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn
        out = np.full(len(prompts), -np.inf)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        bar = tqdm(total=len(order), desc="judge: fluency (smollm2)", unit="text",
                   disable=len(order) < 4 * self.batch_size)
        for s in range(0, len(order), self.batch_size):
            idx = [i for i in order[s:s + self.batch_size] if responses[i].strip()]
            if not idx:
                continue
            ctx = [self.tok.apply_chat_template([{"role": "user", "content": prompts[i]}], tokenize=False,
                                                add_generation_prompt=True) for i in idx]
            c_ids = [self.tok(c, add_special_tokens=False).input_ids for c in ctx]
            r_ids = [self.tok(responses[i], add_special_tokens=False).input_ids for i in idx]
            pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
            for g in budget_split([len(c) + len(r) for c, r in zip(c_ids, r_ids)]):
                ids, att, pos = left_padded([c_ids[j] + r_ids[j] for j in g], pad)
                out[[idx[j] for j in g]] = response_mean_logprobs(self.lm, ids, att, pos, [len(r_ids[j]) for j in g])
            bar.update(len(order[s:s + self.batch_size]))
        bar.close()
        release_memory()                                # the LM's activations (mars_lib.pipeline.memory)
        return out

    def facets(self, prompts: list[str], responses: list[str], finished: list[bool]) -> pd.DataFrame:
        """All six facets in [0, 1], one row per (prompt, response). Duplicate rows are judged once."""
        keys = list(zip(prompts, responses, map(bool, finished)))
        df, n = cached_facets(keys, self.cache, lambda p, r, f: JudgeCache.key(p, r, f, models=self.models),
                              self._facets_unique)
        self.judged += n
        return df

    def _facets_unique(self, prompts: list[str], responses: list[str], finished: list[bool]) -> pd.DataFrame:
        e_p = self.encoder.embed(list(prompts), desc="judge: prompts", progress=False)
        e_r = self.encoder.embed([r if r.strip() else " " for r in responses], desc="judge: responses", progress=False)
        cos = (e_p * e_r).sum(1)
        lp = self.mean_logprob(list(prompts), list(responses))
        return facet_frame(cos, lp, responses, finished, self.vader, relevance=(0.05, 0.55), fluency=(-4.0, 3.0))

    @staticmethod
    def combine(facets: pd.DataFrame) -> np.ndarray:
        """gold = Σ_k w_k · facet_k, [N]."""
        return sum(WEIGHTS[k] * facets[k].to_numpy(dtype=float) for k in FACETS)

    def score(self, prompts, responses, finished) -> np.ndarray:
        """g(x, y) per row. `finished`: whether each response ended by itself (EOS) — required, since
        a missing flag would hand every text the completeness point; pass False to judge completeness
        by the text's own ending."""
        if finished is None or len(finished) != len(responses):
            raise ValueError("GoldJudge.score needs one `finished` flag per response")
        return self.combine(self.facets(prompts, responses, finished))


# Hand-picked responses to one prompt, with the order a person would give (best first).
SANITY_PROMPT = "How do I make a simple tomato sauce?"
SANITY_CASES = {
    "helpful recipe": "Heat two tablespoons of olive oil in a pan, add a chopped onion and two cloves of garlic, "
                      "and cook until soft. Stir in a can of crushed tomatoes, a pinch of salt and some basil. "
                      "Simmer for twenty minutes, then taste and adjust the seasoning.",
    "cut off mid-sentence": "Heat two tablespoons of olive oil in a pan, add a chopped onion and two cloves of "
                            "garlic, and cook until soft. Stir in a can of crushed tomatoes and",
    "rude but on topic": "That is a stupid question, figure it out yourself. Just boil some tomatoes, idiot, it is "
                         "not hard and I hate explaining this.",
    "looping": "Tomato sauce is sauce. Tomato sauce is sauce. Tomato sauce is sauce. Tomato sauce is sauce. "
               "Tomato sauce is sauce. Tomato sauce is sauce.",
    "word salad": "Sauce tomato flarb the quintessential wobble pan of nineteen glittering wheels, basil monkeys "
                  "sing over the quiet moon onion.",
    "one word": "Tomatoes.",
    "off topic": "The French Revolution began in 1789 and changed the political landscape of Europe. Many "
                 "historians consider it a turning point in modern history.",
    "empty": "",
}


def sanity_table(judge: "GoldJudge") -> pd.DataFrame:
    """The judge's facets and gold score on SANITY_CASES (in the order a person would rank them)."""
    texts = list(SANITY_CASES.values())
    finished = [name != "cut off mid-sentence" for name in SANITY_CASES]
    f = judge.facets([SANITY_PROMPT] * len(texts), texts, finished)
    f.insert(0, "case", list(SANITY_CASES))
    f.insert(1, "human_rank", range(1, len(texts) + 1))
    f["gold"] = judge.combine(f)
    f["gold_rank"] = f.gold.rank(ascending=False, method="min").astype(int)
    return f
