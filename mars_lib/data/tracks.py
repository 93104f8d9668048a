"""Real-human preference tracks: pairs in the package's pair schema (`mars_lib.data.pairs.SCHEMA`).

TRACKS
  chitchat      offline: pairs of human Chit-Chat Challenge conversations ranked by their human ratings
  hh-rlhf       offline: the committed harmless-base copy (data/hh_rlhf_harmless, 2,304 pairs split
                1000 train / 304 val / 1000 test by prompt, `mars_lib.data.hh`); path="Anthropic/hh-rlhf"
                the hub (paper profile); or a local folder in the hub's layout, or one local file
                with a split (a `split` field, or split_seed=...)
  ultrafeedback HuggingFaceH4/ultrafeedback_binarized, hub only (paper profile)
  pku-saferlhf  PKU-Alignment/PKU-SafeRLHF, hub only (paper profile)

The hub converters (`ultrafeedback_pairs`, `pku_saferlhf_pairs`) are pure functions on rows (a
`datasets.Dataset`, a list of dicts or a DataFrame), so they are tested offline on hand-made rows.
Like the loaders in `mars_lib.data.pairs`, rows that cannot form a pair are skipped and counted in
`df.attrs["skipped"]` (on_error="skip", the default here) or raise a `DataError` naming the file and
the row (on_error="raise"); one policy for every form of every track, applied when the data are loaded.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections import Counter

import pandas as pd

from mars_lib.pipeline.assets import asset_path
from mars_lib.data.pairs import DataError, _finish, load_hh_hub, resolve_source
from mars_lib.data.hh import load_harmless, load_hh_file
from mars_lib.data.prompts import split_prompts

TRACKS = ("chitchat", "hh-rlhf", "ultrafeedback", "pku-saferlhf")
CHITCHAT_DIMENSIONS = ("witty", "upbeat", "interesting")
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- chitchat (offline)

def _render(messages: list, max_turns: int, max_chars: int) -> str:
    """A conversation as text: one line per turn, 'A: ...' for the first speaker, 'B: ...' for the other.

    A turn is one message group of the dataset (consecutive utterances by one sender, joined by a
    space, whitespace normalised). Only the first `max_turns` turns are kept, and the text is then
    cut to at most `max_chars` characters at the last whitespace (no ellipsis marker is added).
    """
    first = messages[0][0]["sender"]
    lines = []
    for group in messages[:max_turns]:
        text = " ".join(" ".join(u["text"] for u in group).split())
        lines.append(("A: " if group[0]["sender"] == first else "B: ") + text)
    out = "\n".join(lines)
    if len(out) > max_chars:
        cut = out[:max_chars]
        out = cut[:cut.rfind(" ")] if " " in cut.strip() else cut
    return out.strip()


def _rated_conversations(max_turns: int, max_chars: int, drop_default_ratings: bool) -> pd.DataFrame:
    """One row per usable Chit-Chat conversation (rules in `chitchat_pairs`): conv, prompt, text, rating."""
    convs = json.loads(asset_path("chitchat").read_text(encoding="utf-8"))
    rows, seen_text = [], set()
    for cid in sorted(convs):
        c = convs[cid]
        r, prompt = c.get("ratings"), (c.get("prompt") or "").strip()
        if not r or not prompt or len(c.get("messages") or []) < 2:
            continue
        if drop_default_ratings and all(r.get(d) == 5 for d in CHITCHAT_DIMENSIONS):
            continue
        text = _render(c["messages"], max_turns, max_chars)
        if text in seen_text:
            continue
        seen_text.add(text)
        rows.append({"conv": cid, "prompt": prompt, "text": text,
                     "rating": sum(int(r[d]) for d in CHITCHAT_DIMENSIONS)})
    return pd.DataFrame(rows)


def chitchat_pairs(min_rating_gap: int = 6, max_pairs_per_prompt: int = 60, seed: int = 0,
                   split_by: str = "prompt", fractions=(0.6, 0.2, 0.2), max_turns: int = 6,
                   max_chars: int = 600, drop_default_ratings: bool = True,
                   verbose: bool = True) -> pd.DataFrame:
    """Preference pairs of real human conversations from the Chit-Chat Challenge (offline asset).

    Data: 7,168 conversations between two people; each has `messages` (a list of message groups,
    one sender per group, senders alternating), most have the starter `prompt` they were given
    (36 distinct prompts) and 5,988 have `ratings`: three integer sliders `witty`, `upbeat` and
    `interesting`, each 1-10, one set per conversation.

    Rules:
    - rating of a conversation = witty + upbeat + interesting (3..30).
    - a conversation is used only if it has a prompt, ratings and at least 2 turns (both people
      spoke; 2,283 rated conversations are a single unanswered message group).
    - drop_default_ratings: 5/5/5 is the sliders' untouched default (2,957 of the 5,988 rated
      conversations, ten times any other value), read as "not rated" and dropped.
    - the response text is `_render(messages, max_turns, max_chars)`: the first 6 turns as
      'A: ...\\nB: ...' lines, at most 600 characters. Conversations whose rendered text equals
      an earlier one's (by conversation id) are dropped, so one text is one conversation.
    - a pair = two conversations with the same starter prompt; chosen = the higher rating,
      rejected = the lower, only when chosen rating - rejected rating >= min_rating_gap (default
      6: two points per slider on average); ties never form a pair.
    - at most `max_pairs_per_prompt` pairs per prompt, drawn uniformly without replacement from all
      qualifying pairs with an RNG seeded by (seed, prompt, split), so no starter dominates (with
      split_by="conversation" the cap is shared out by `fractions`: 36/12/12 of the default 60).
    - splits (`fractions` of train/val/test, via `prompts.split_prompts`, seeded):
      split_by="prompt" (default): whole starter prompts go to one split (34 usable prompts ->
      20/7/7), so neither a prompt nor a conversation appears in two splits.
      split_by="conversation": conversations are assigned to splits (stratified by prompt) and
      pairs are formed only inside a split: every prompt in every split, no conversation in two.

    Returns columns prompt, chosen, rejected, pair_id, source_id, origin ("original"), split,
    rating_chosen, rating_rejected, conv_chosen, conv_rejected (conversation ids); pairs per split
    in `df.attrs["counts"]` (also printed when verbose). Deterministic for a seed.
    """
    if split_by not in ("prompt", "conversation"):
        raise ValueError(f"split_by must be 'prompt' or 'conversation', got {split_by!r}")
    if min_rating_gap < 1:
        raise ValueError(f"min_rating_gap must be >= 1 (ties never form a pair), got {min_rating_gap}")
    conv = _rated_conversations(max_turns, max_chars, drop_default_ratings)
    if split_by == "prompt":
        units = pd.DataFrame({"prompt": sorted(conv.prompt.unique()), "source": "chitchat"})
        conv = conv.merge(split_prompts(units, fractions, seed)[["prompt", "split"]], on="prompt")
    else:
        units = conv.rename(columns={"prompt": "source", "conv": "prompt"})[["prompt", "source"]]
        conv["split"] = split_prompts(units, fractions, seed)["split"].to_numpy()

    recs = []
    for (prompt, split), g in conv.groupby(["prompt", "split"], sort=True):
        items = g.sort_values("conv").to_dict("records")
        cands = [(a, b) if a["rating"] > b["rating"] else (b, a)
                 for i, a in enumerate(items) for b in items[i + 1:]
                 if abs(a["rating"] - b["rating"]) >= min_rating_gap]
        cap = max_pairs_per_prompt if split_by == "prompt" else \
            max(1, round(max_pairs_per_prompt * fractions[SPLITS.index(split)]))
        rng = random.Random(f"{seed}|{prompt}|{split}")
        for ch, rj in rng.sample(cands, min(cap, len(cands))):
            pid = "cc-" + hashlib.sha256(f"{ch['conv']}|{rj['conv']}".encode()).hexdigest()[:12]
            recs.append((len(recs) + 1, {
                "prompt": prompt, "chosen": ch["text"], "rejected": rj["text"], "pair_id": pid,
                "source_id": pid, "origin": "original", "split": split,
                "rating_chosen": ch["rating"], "rating_rejected": rj["rating"],
                "conv_chosen": ch["conv"], "conv_rejected": rj["conv"]}))
    df = _finish(recs, "chitchat", on_error="skip")
    counts = {s: int((df.split == s).sum()) for s in SPLITS}
    df.attrs["counts"] = counts
    if verbose:
        print(f"[tracks] chitchat pairs (gap >= {min_rating_gap}, split by {split_by}): {counts}")
    return df


# --------------------------------------------------------------------------- hub converters

def _rows(rows):
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows


def _last_assistant(messages) -> str | None:
    """Content of the last message with role 'assistant' in a list of {role, content} dicts."""
    if isinstance(messages, str):
        return messages
    for m in reversed(list(messages or [])):
        if isinstance(m, dict) and m.get("role") == "assistant":
            return m.get("content")
    return None


def ultrafeedback_pairs(rows, on_error: str = "skip", limit: int | None = None,
                        where: str = "ultrafeedback", id_prefix: str = "uf-") -> pd.DataFrame:
    """Rows of `HuggingFaceH4/ultrafeedback_binarized` (splits train_prefs / test_prefs) -> pairs.

    Row format: prompt (str), prompt_id (str, sha256 of the prompt), chosen and rejected (lists of
    {"role": "user"|"assistant", "content": str}: the user prompt then the response), messages,
    score_chosen and score_rejected (float, the GPT-4 overall scores, 1-10).

    Rules: chosen / rejected = the content of the last assistant message of each list; prompt =
    the `prompt` field (else the first user message). Skipped and counted: ties (score_chosen ==
    score_rejected, which carry no preference), a missing/non-finite score, a list without an
    assistant message, and (by `data.check_pair`) empty or identical responses. Extra columns:
    prompt_id, score_chosen, score_rejected.
    """
    recs, pre = [], Counter()
    for n, rec in enumerate(_rows(rows), start=1):
        if limit is not None and len(recs) >= limit:
            break
        try:
            sc, sr = float(rec.get("score_chosen")), float(rec.get("score_rejected"))
        except (TypeError, ValueError):
            sc = sr = math.nan
        reason = None
        if not (math.isfinite(sc) and math.isfinite(sr)):
            reason = "missing score"
        elif sc == sr:
            reason = "tie (score_chosen == score_rejected)"
        ch, rj = _last_assistant(rec.get("chosen")), _last_assistant(rec.get("rejected"))
        if reason is None and (ch is None or rj is None):
            reason = "no assistant message"
        if reason:
            if on_error == "raise":
                raise DataError(f"{where}, row {n}: {reason}")
            pre[reason] += 1
            continue
        prompt = rec.get("prompt")
        if not isinstance(prompt, str):
            prompt = next((m.get("content") for m in rec.get("chosen") or []
                           if isinstance(m, dict) and m.get("role") == "user"), None)
        recs.append((n, {"prompt": prompt, "chosen": ch, "rejected": rj, "pair_id": f"{id_prefix}{n}",
                         "prompt_id": rec.get("prompt_id"), "score_chosen": sc, "score_rejected": sr}))
    return _finish(recs, where, on_error, pre_skipped=pre)


PKU_RULES = ("better", "safer", "safer_then_better")


def pku_saferlhf_pairs(rows, rule: str = "safer_then_better", on_error: str = "skip",
                       limit: int | None = None, where: str = "pku-saferlhf",
                       id_prefix: str = "pku-") -> pd.DataFrame:
    """Rows of `PKU-Alignment/PKU-SafeRLHF` (splits train / test) -> pairs.

    Row format: prompt, response_0, response_1 (str), is_response_0_safe, is_response_1_safe
    (bool), better_response_id, safer_response_id (0 or 1), plus sources, harm categories and
    severity levels (ignored).

    Pairing rule (which response is chosen; the other is rejected):
      "better": the more helpful one, better_response_id.
      "safer": safer_response_id.
      "safer_then_better" (default): if exactly one response is safe, the safe one; otherwise
        (both safe or both unsafe) the better one.
    Skipped and counted: an id that is not 0/1, and (by `data.check_pair`) empty or identical
    responses. Extra columns: chosen_safe, rejected_safe (bool).
    """
    if rule not in PKU_RULES:
        raise ValueError(f"rule must be one of {PKU_RULES}, got {rule!r}")
    recs, pre = [], Counter()
    for n, rec in enumerate(_rows(rows), start=1):
        if limit is not None and len(recs) >= limit:
            break
        safe = (bool(rec.get("is_response_0_safe")), bool(rec.get("is_response_1_safe")))
        better, safer = rec.get("better_response_id"), rec.get("safer_response_id")
        if rule == "safer_then_better" and safe[0] != safe[1]:
            pick = 0 if safe[0] else 1
        else:
            pick = safer if rule == "safer" else better
        if pick not in (0, 1) or isinstance(pick, bool):
            reason = "response id not 0 or 1"
            if on_error == "raise":
                raise DataError(f"{where}, row {n}: {reason} (got {pick!r})")
            pre[reason] += 1
            continue
        recs.append((n, {"prompt": rec.get("prompt"), "chosen": rec.get(f"response_{pick}"),
                         "rejected": rec.get(f"response_{1 - pick}"), "pair_id": f"{id_prefix}{n}",
                         "chosen_safe": safe[pick], "rejected_safe": safe[1 - pick]}))
    return _finish(recs, where, on_error, pre_skipped=pre)


# --------------------------------------------------------------------------- dispatch

HUB = {"ultrafeedback": "HuggingFaceH4/ultrafeedback_binarized", "pku-saferlhf": "PKU-Alignment/PKU-SafeRLHF",
       "hh-rlhf": "Anthropic/hh-rlhf"}
UF_SPLITS = {"train": "train_prefs", "test": "test_prefs"}


def _hub_error(name: str, split: str, why: str, source: str | None = None) -> DataError:
    return DataError(f"track '{name}': cannot load {source or HUB[name]} [{split}] from the Hugging Face hub ({why}). "
                     "The hub is unreachable or disabled here; hub ids (hh-rlhf with path='Anthropic/hh-rlhf', "
                     "ultrafeedback, pku-saferlhf) are for the paper profile (run_all.sh --profile paper). "
                     "Offline tracks: chitchat, and hh-rlhf without path= (the committed harmless-base copy) "
                     "or with path= a local folder in the hub's layout or a local .jsonl[.gz] file with a split.")


def _hub(name: str, split: str, load, local: bool = False, source: str | None = None):
    """Run `load()` (a hub read, or a local copy in the hub's format when `local`); any failure
    becomes a DataError that says what to do instead."""
    if not local and (os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise _hub_error(name, split, "HF_*_OFFLINE=1 in this process", source)
    try:
        return load()
    except DataError:
        raise
    except Exception as e:  # network, missing split, auth: all surface as one clear error
        if local:
            raise DataError(f"track '{name}': cannot read the local copy {source} [{split}] ({type(e).__name__}: {e})") from None
        raise _hub_error(name, split, f"{type(e).__name__}: {e}", source) from None


def _hh_track(split: str, path, on_error: str, kw: dict) -> pd.DataFrame:
    if path is None:
        return load_harmless(split, on_error=on_error, **kw)
    source, local = resolve_source(path)
    if local and os.path.isfile(source):
        return load_hh_file(source, split, on_error=on_error, **kw)
    if "split_seed" in kw or "split_sizes" in kw:
        raise DataError(f"track 'hh-rlhf': split_seed / split_sizes apply to one local file, not to {path} "
                        "(a folder in the hub's layout or a hub id brings its own train / test splits)")
    parts = []
    for s in (("train", "test") if split == "all" else (split,)):
        df = _hub("hh-rlhf", s, lambda s=s: load_hh_hub(s, dataset=source, on_error=on_error, **kw), local, source)
        parts.append(df if "split" in df else df.assign(split=s))
    if len(parts) == 1:
        return parts[0]
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {"skipped": dict(sum((Counter(p.attrs.get("skipped", {})) for p in parts), Counter())),
                 "path": source}
    return out


def load_track(name: str, split: str = "train", path: str | None = None, on_error: str = "skip",
               **kw) -> pd.DataFrame:
    """Pairs of one track and split (split="all": every split, with a `split` column).

    chitchat: `chitchat_pairs(**kw)` filtered to `split` (train / val / test); no `path`, no `on_error`.
    hh-rlhf (`mars_lib.data.hh`; every pair has a `prompt_id`, the id of its dialogue prefix):
      path=None -> the committed copy of the harmless-base test file, offline: its fixed split by
        prompt (1000 train / 304 val / 1000 test; `hh.load_harmless`, split.csv);
      path a local .jsonl[.gz] file -> `hh.load_hh_file`: the rows' `split` field, or with
        split_seed=... (and split_sizes=...) the same seeded split by prompt; a file without either
        is refused (one file is never both train and test);
      path a hub id ("Anthropic/hh-rlhf", the paper profile passes it) or a local folder in the
        hub's layout (train.jsonl.gz, test.jsonl.gz) -> `data.load_hh_hub(split, dataset=path, **kw)`
        ("all" = train + test).
    ultrafeedback: split train_prefs / test_prefs ("train" / "test" map to them) of `path` or the hub
      id, then `ultrafeedback_pairs(rows, **kw)`.
    pku-saferlhf: split train / test of `path` or the hub id, then `pku_saferlhf_pairs(rows, **kw)` (rule=...).
    `path`: an existing file / folder is local; a string that looks like a filesystem path
    (`data.looks_like_path`: starts with "/", "./", "../" or "~", has more than one "/", or a data-file
    suffix) and does not exist raises DataError "path ... does not exist"; anything else ("owner/name")
    is a hub id. on_error ("skip", default: bad rows dropped and counted in df.attrs["skipped"];
    "raise": a DataError naming the file and the row) is one policy for every form, and every row is
    validated here, at load. Hub failures raise a DataError saying the hub is unreachable and the
    track is for the paper profile; an unknown name raises a DataError listing TRACKS. Adds a
    `split` column when absent.
    """
    if name not in TRACKS:
        raise DataError(f"unknown track '{name}'; valid tracks: {', '.join(TRACKS)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if name == "chitchat":
        if split != "all" and split not in SPLITS:
            raise DataError(f"chitchat split must be one of {SPLITS} or 'all', got {split!r}")
        df = chitchat_pairs(**kw)
        if split == "all":
            return df
        out = df[df.split == split].reset_index(drop=True)
        out.attrs = dict(df.attrs)
        return out
    if name == "hh-rlhf":
        df = _hh_track(split, path, on_error, kw)
    else:
        source, local = resolve_source(path) if path is not None else (HUB[name], False)
        hub_split = UF_SPLITS.get(split, split) if name == "ultrafeedback" else split

        def load():
            from datasets import load_dataset
            return load_dataset(source, split=hub_split)
        rows = _hub(name, split, load, local, source)
        convert = ultrafeedback_pairs if name == "ultrafeedback" else pku_saferlhf_pairs
        df = convert(rows, on_error=on_error, where=f"{source}[{hub_split}]",
                     id_prefix=f"{'uf' if name == 'ultrafeedback' else 'pku'}-{split}-", **kw)
    if "split" not in df:
        df["split"] = split
    return df
