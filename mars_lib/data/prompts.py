"""Real prompts for the offline task: MT-Bench questions and human chit-chat messages.

- MT-Bench (80 questions, first turns): writing, roleplay, reasoning, math, coding, extraction,
  STEM, humanities requests written for assistant evaluation.
- Chit-Chat Challenge (7,168 human conversations): its 36 conversation-starter prompts, and single
  human utterances that read as a standalone question (rule in `is_standalone_question`).
"""
from __future__ import annotations

import hashlib
import json
import re

import pandas as pd

from mars_lib.pipeline.assets import asset_path

_Q_START = re.compile(r"^(what|how|why|which|who|where|when|do you|did you|have you|can you|could you|"
                      r"would you|should|is it|are there|is there|if you|tell me|what's|whats)\b", re.I)
_SMALL_TALK = re.compile(r"\b(how are you|how about you|and you|what about you|how's it going|"
                         r"what's up|whats up|you there|are you still|sorry|lol|haha|chat)\b", re.I)
_DEICTIC = re.compile(r"\b(that|then|there|here|they|them|he|she|his|her|it|this|those|other|else|too|also|"
                      r"anything|the same)\b", re.I)


def is_standalone_question(text: str) -> bool:
    """A human utterance that reads as a self-contained request or question.

    Rule: 25-160 characters, ends with '?', starts with a question/request word, is not small talk
    (how are you / and you / lol ...), does not point back at the conversation
    (that / it / they / then / other / too ...), and is plain ASCII text.
    """
    t = text.strip()
    return (25 <= len(t) <= 160 and t.endswith("?") and t.count("?") == 1 and t.isascii()
            and bool(_Q_START.match(t)) and not _SMALL_TALK.search(t) and not _DEICTIC.search(t))


def _pid(source: str, text: str) -> str:
    return source[:2] + "-" + hashlib.sha256(text.lower().encode()).hexdigest()[:10]


def load_mtbench() -> pd.DataFrame:
    rows = [json.loads(l) for l in asset_path("mtbench").read_text(encoding="utf-8").splitlines() if l.strip()]
    return pd.DataFrame({"prompt": [r["turns"][0] for r in rows], "source": "mtbench",
                         "category": [r["category"] for r in rows]})


def load_chitchat_prompts() -> pd.DataFrame:
    """Starter prompts + standalone human questions, deduplicated (case-insensitive)."""
    convs = json.loads(asset_path("chitchat").read_text(encoding="utf-8"))
    starters = sorted({c["prompt"].strip() for c in convs.values() if c.get("prompt") and c["prompt"].strip()})
    questions = []
    for key in sorted(convs):
        for msg in convs[key]["messages"]:
            for utt in msg:
                t = " ".join(utt["text"].split())
                if is_standalone_question(t):
                    questions.append(t[0].upper() + t[1:])
    df = pd.concat([pd.DataFrame({"prompt": starters, "source": "chitchat-starter"}),
                    pd.DataFrame({"prompt": questions, "source": "chitchat-message"})])
    df["category"] = "chitchat"
    return df.loc[~df.prompt.str.lower().duplicated()].reset_index(drop=True)


def collect_prompts(n_total: int, seed: int = 0) -> pd.DataFrame:
    """All MT-Bench questions and chit-chat starters, topped up with sampled chit-chat questions.

    Returns columns prompt_id, prompt, source, category; deterministic for a seed.
    """
    mt, cc = load_mtbench(), load_chitchat_prompts()
    fixed = pd.concat([mt, cc[cc.source == "chitchat-starter"]])
    pool = cc[cc.source == "chitchat-message"]
    n_more = max(0, n_total - len(fixed))
    if n_more > len(pool):
        raise ValueError(f"asked for {n_total} prompts; only {len(fixed) + len(pool)} are available")
    df = pd.concat([fixed, pool.sample(n=n_more, random_state=seed)]).head(n_total)
    df = df.loc[~df.prompt.str.lower().duplicated()].copy()
    df.insert(0, "prompt_id", [_pid(s, p) for s, p in zip(df.source, df.prompt)])
    return df.reset_index(drop=True)


def split_prompts(df: pd.DataFrame, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> pd.DataFrame:
    """Assign each prompt to train/val/test (no prompt in two splits), stratified by source."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    out = df.copy()
    out["split"] = ""
    for _, g in out.groupby("source", sort=True):
        idx = g.sample(frac=1.0, random_state=seed).index.to_list()
        n_tr = round(fractions[0] * len(idx))
        n_va = round(fractions[1] * len(idx))
        out.loc[idx[:n_tr], "split"] = "train"
        out.loc[idx[n_tr:n_tr + n_va], "split"] = "val"
        out.loc[idx[n_tr + n_va:], "split"] = "test"
    return out
