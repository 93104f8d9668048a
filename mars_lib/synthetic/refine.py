"""Semantic refinement (MARS v2): sharpen the contrast of pairs whose responses are too similar.

The authors' procedure, step by step (docs/method.md §2.2 step 3, [C2]):

1. distance d = 1 − cos between the embeddings of the chosen and the rejected *response* (the prompt
   is not used), text cleaned first (control characters stripped, whitespace collapsed);
2. a pair is "low distance" when d < threshold; threshold = the mean d over the set (option);
3. every low-distance pair is rewritten, once, before any reward model exists:
   stage 1 rewrites the *rejected* response (temperature 0.9), up to `attempts` tries, keeping the
   first candidate with d(chosen, new rejected) > d; if all fail, stage 2 rewrites the *chosen*
   response (temperature 0.8) the same way; if both fail the pair stays as it was;
4. a safety filter recomputes every final distance and reverts a kept rewrite whose distance did
   not grow. Nothing checks that the preference survives the rewrite — notebook 02 measures it.

Deviations, said plainly: the authors embed with all-mpnet-base-v2 and rewrite with GPT-4.1; offline
we embed with MiniLM and rewrite with SmolLM2-135M-Instruct (the only instruction model in a
registry package). A 135M model follows "make it more different, keep it worse" loosely: its
rewrites grow the distance easily (that is all the acceptance rule asks), and notebook 02 reports
how often the gold order survives. Any generator with the `Generator` interface plugs in
(the paper profile's GPT-4.1 is the user's own plug-in).

Quality filters (on top of the authors' rule), counted per reason: empty output, truncated output
(no end-of-sequence within max_new_tokens: cut at its last sentence end — counted as `trimmed` —
and dropped as `too_short` when fewer than 3 words remain), looping output (distinct word-3-gram ratio below
`min_distinct_3grams`) and verbatim copies (of either response). A filtered candidate counts as a
failed attempt.

Every attempt over all pending pairs is one batched, cached generation call (mars_lib.synthetic.generation),
so a rerun generates nothing and an interrupted refinement resumes where it stopped.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

REJECTED_INSTRUCTION = (
    "Here is a question and two answers to it. Answer A is the better answer, answer B the worse one.\n\n"
    "Question: {prompt}\n\nAnswer A: {chosen}\n\nAnswer B: {rejected}\n\n"
    "Rewrite answer B so that it says something clearly different from answer A. It must stay a plausible "
    "but weaker answer to the same question: do not make it better than answer A, add nothing harmful, "
    "and do not mention that it is a rewrite. Reply with the rewritten answer B only.")
CHOSEN_INSTRUCTION = (
    "Here is a question and two answers to it. Answer A is the better answer, answer B the worse one.\n\n"
    "Question: {prompt}\n\nAnswer A: {chosen}\n\nAnswer B: {rejected}\n\n"
    "Rewrite answer A so that it differs more clearly from answer B. It must stay the better, helpful and "
    "safe answer to the same question, must not be needlessly long, must add nothing harmful, and must "
    "not mention that it is a rewrite. Reply with the rewritten answer A only.")


def clean(text: str) -> str:
    """The authors' cleaning before embedding: control characters out, whitespace collapsed."""
    return " ".join(_CTRL.sub(" ", text).split())


def semantic_distance(encoder, a: list[str], b: list[str]) -> np.ndarray:
    """d = 1 − cos(e(a_i), e(b_i)) with L2-normalised embeddings; shape [N]. Embeddings are cached."""
    if len(a) != len(b):
        raise ValueError(f"semantic_distance: {len(a)} vs {len(b)} texts")
    n = len(a)
    e = encoder.embed([clean(t) for t in list(a) + list(b)], desc="embedding: distance", progress=n > 200)
    return 1.0 - (e[:n] * e[n:]).sum(1)


def distinct_3gram_ratio(text: str) -> float:
    w = re.findall(r"[a-z0-9']+", text.lower())
    if len(w) < 3:
        return 1.0
    grams = list(zip(w, w[1:], w[2:]))
    return len(set(grams)) / len(grams)


@dataclass(frozen=True)
class RefineConfig:
    threshold: float | None = None       # None = the mean distance of the set (authors)
    attempts: int = 5                    # tries per stage (authors: 5)
    temperature_rejected: float = 0.9    # stage 1 (authors: 0.9)
    temperature_chosen: float = 0.8      # stage 2 (authors: 0.8)
    top_p: float = 0.9
    repetition_penalty: float = 1.2      # keeps the small model out of loops
    max_new_tokens: int = 96             # authors (GPT-4.1): 512; an unfinished output is cut at its last sentence end
    max_chars: int = 800                 # each text shown to the rewriter is clipped (head + tail)
    min_distinct_3grams: float = 0.5     # looping filter
    seed: int = 0

    def __post_init__(self):
        if self.attempts < 1 or self.max_new_tokens < 1:
            raise ValueError(f"invalid refinement config: {self}")
        if self.threshold is not None and not 0 <= self.threshold <= 2:
            raise ValueError(f"threshold is a distance 1 - cos in [0, 2], got {self.threshold}")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n // 2] + " … " + text[-n // 2:]


_SENT_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def trim_unfinished(text: str) -> str:
    """An output cut off by max_new_tokens, up to its last complete sentence ('' if it has none)."""
    ends = [m.end() for m in _SENT_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def _reason(cand: str, chosen: str, rejected: str, cfg: RefineConfig) -> str | None:
    """Why a candidate is filtered out (None: it passes)."""
    if not cand.strip():
        return "empty"
    if len(cand.split()) < 3:
        return "too_short"
    if distinct_3gram_ratio(cand) < cfg.min_distinct_3grams:
        return "looping"
    if clean(cand) in (clean(chosen), clean(rejected)):
        return "verbatim_copy"
    return None


def _stage(df: pd.DataFrame, idx: np.ndarray, side: str, d0: np.ndarray, encoder, generator, cfg: RefineConfig,
           counts: dict) -> tuple[dict[int, str], dict[int, int]]:
    """Rewrite `side` of rows `idx` (attempt by attempt, batched); returns {row: accepted text} and
    {row: attempts used}."""
    from mars_lib.synthetic.generation import Decoding, Request
    temp = cfg.temperature_rejected if side == "rejected" else cfg.temperature_chosen
    dec = Decoding(temperature=temp, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                   max_new_tokens=cfg.max_new_tokens)
    template = REJECTED_INSTRUCTION if side == "rejected" else CHOSEN_INSTRUCTION
    accepted, used, pending = {}, {}, list(idx)
    for attempt in range(cfg.attempts):
        if not pending:
            break
        rows = df.loc[pending]
        reqs = [Request(template.format(prompt=_clip(p, cfg.max_chars), chosen=_clip(c, cfg.max_chars),
                                        rejected=_clip(r, cfg.max_chars)), dec, sample=attempt, seed=cfg.seed)
                for p, c, r in zip(rows.prompt, rows.chosen, rows.rejected)]
        outs = generator.generate_with_info(reqs, desc=f"refine {side}: attempt {attempt + 1}/{cfg.attempts}")
        ok_rows, ok_text = [], []
        for i, (text, finished) in zip(pending, outs):
            used[i] = attempt + 1
            if not finished and text.strip():
                text = trim_unfinished(text)
                counts["trimmed"] = counts.get("trimmed", 0) + 1
            why = _reason(text, df.at[i, "chosen"], df.at[i, "rejected"], cfg)
            counts[why or "generated_ok"] = counts.get(why or "generated_ok", 0) + 1
            if why is None:
                ok_rows.append(i)
                ok_text.append(text)
        if ok_rows:
            other = df.loc[ok_rows, "chosen" if side == "rejected" else "rejected"].tolist()
            d_new = semantic_distance(encoder, other, ok_text)
            for i, t, d in zip(ok_rows, ok_text, d_new):
                if d > d0[i]:
                    accepted[i] = t
        pending = [i for i in pending if i not in accepted]
    return accepted, used


def semantic_refine(pairs: pd.DataFrame, encoder, generator, cfg: RefineConfig = RefineConfig(),
                    rows: np.ndarray | None = None) -> pd.DataFrame:
    """Refine the low-distance pairs of `pairs` (prompt, chosen, rejected, ...).

    Returns a copy with chosen / rejected replaced where a rewrite was kept, the originals in
    `chosen_original` / `rejected_original`, and per row: distance_original, low_distance,
    refinement_kept, rewrite_type_kept ∈ {rejected, chosen, none}, attempts_rejected,
    attempts_chosen, distance_final, distance_gain. `rows` (positions) restricts which low-distance
    pairs are rewritten (default: all, as the authors do); the threshold is always the whole set's.
    attrs: threshold, counts of filtered candidates per reason, generation stats.
    """
    need = {"prompt", "chosen", "rejected"} - set(pairs)
    if need:
        raise ValueError(f"semantic_refine: missing columns {sorted(need)}")
    if pairs.empty:
        raise ValueError("semantic_refine: no pairs")
    df = pairs.reset_index(drop=True).copy()
    d0 = semantic_distance(encoder, df.chosen.tolist(), df.rejected.tolist())
    thr = float(d0.mean()) if cfg.threshold is None else cfg.threshold
    low = d0 < thr
    cand = np.flatnonzero(low)
    if rows is not None:
        cand = np.intersect1d(cand, np.asarray(rows, dtype=np.int64))
    counts: dict = {}
    tokens0 = generator.stats.new_tokens
    acc_r, used_r = _stage(df, cand, "rejected", d0, encoder, generator, cfg, counts)
    rest = np.array([i for i in cand if i not in acc_r], dtype=np.int64)
    acc_c, used_c = _stage(df, rest, "chosen", d0, encoder, generator, cfg, counts)
    df["chosen_original"], df["rejected_original"] = df.chosen, df.rejected
    for i, t in acc_r.items():
        df.at[i, "rejected"] = t
    for i, t in acc_c.items():
        df.at[i, "chosen"] = t
    kind = np.array(["none"] * len(df), dtype=object)
    kind[list(acc_r)] = "rejected"
    kind[list(acc_c)] = "chosen"
    # safety filter (authors): recompute every final distance, revert a rewrite that did not grow it
    d1 = semantic_distance(encoder, df.chosen.tolist(), df.rejected.tolist())
    revert = (kind != "none") & ~(d1 > d0)
    df.loc[revert, "chosen"] = df.loc[revert, "chosen_original"]
    df.loc[revert, "rejected"] = df.loc[revert, "rejected_original"]
    kind[revert] = "none"
    d1 = np.where(revert, d0, d1)
    df["distance_original"], df["low_distance"] = d0, low
    df["refinement_attempted"] = np.isin(np.arange(len(df)), cand)
    df["refinement_kept"] = kind != "none"
    df["rewrite_type_kept"] = kind
    df["attempts_rejected"] = [used_r.get(i, 0) for i in range(len(df))]
    df["attempts_chosen"] = [used_c.get(i, 0) for i in range(len(df))]
    df["distance_final"], df["distance_gain"] = d1, d1 - d0
    df.attrs.update({"threshold": thr, "filtered": counts, "reverted": int(revert.sum()),
                     "generated_tokens": int(generator.stats.new_tokens - tokens0), "config": asdict(cfg)})
    return df


def refinement_summary(ref: pd.DataFrame) -> pd.DataFrame:
    """One row of the authors' logged statistics (distance min/max/mean/median/std; attempted, kept,
    failed; mean gain) plus the filter counts."""
    d, att = ref.distance_original, ref[ref.refinement_attempted]
    row = {"pairs": len(ref), "threshold": ref.attrs.get("threshold"), "d_min": d.min(), "d_max": d.max(),
           "d_mean": d.mean(), "d_median": d.median(), "d_std": d.std(), "low_distance": int(ref.low_distance.sum()),
           "attempted": len(att), "kept": int(att.refinement_kept.sum()),
           "kept_rejected": int((att.rewrite_type_kept == "rejected").sum()),
           "kept_chosen": int((att.rewrite_type_kept == "chosen").sum()),
           "failed": int((~att.refinement_kept).sum()),
           "mean_gain_kept": float(att.distance_gain[att.refinement_kept].mean()) if att.refinement_kept.any() else 0.0,
           "reverted": ref.attrs.get("reverted", 0), "generated_tokens": ref.attrs.get("generated_tokens")}
    row.update({f"filtered_{k}": v for k, v in ref.attrs.get("filtered", {}).items()})
    return pd.DataFrame([row])
