"""Synthetic preference pairs for selected source pairs.

Operator interface: an operator takes source pairs and returns synthetic pairs, each carrying
`source_id`, `origin` (the operator's name) and the operator's parameters. Synthetic pairs INHERIT
the source's label (the paraphrased chosen stays chosen) — the assumption the authors make and
do not check [S-zh2]; notebook 02 measures it against the gold judge.

Construction as the authors build it [C2] (docs/method.md §2.2 step 4): n paraphrases each of the
prompt, chosen and rejected; the n×n (chosen paraphrase c, rejected paraphrase r) combinations,
each with prompt paraphrase (c + r) mod n. Option `include_originals` gives the
(n⁺+1)(n⁻+1)−1 variant that also pairs originals with paraphrases [S-zh1].

Two modes (`mode`):
- "pool": a pre-generated pool per source (the authors' way); b_i rows are drawn from the source's
  pool, with replacement only when b_i exceeds the pool size;
- "on_demand": exactly b_i distinct synthetic pairs are built for source i when it is selected
  (fewer if its texts admit fewer distinct paraphrases; the shortfall is reported).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mars_lib.synthetic.paraphrase import paraphrases, seq2seq_paraphraser


@dataclass(frozen=True)
class ParaphraseOp:
    n: int = 5                         # paraphrases per text (authors: 5)
    paraphrase_prompt: bool = True     # authors paraphrase the prompt too
    include_originals: bool = False    # (n+1)(n+1)-1 variant
    p_replace: float = 0.15            # WordNet replacement probability per content word
    seed: int = 0
    name: str = "paraphrase"
    model: str | None = None           # None: WordNet (offline); else a seq2seq paraphraser, local folder or hub
                                       # id (paper profile: the authors' T5, paraphrase.Seq2SeqParaphraser)
    device: str = "cpu"

    def __post_init__(self):
        if self.n < 1 or not 0 < self.p_replace <= 1:
            raise ValueError(f"invalid paraphrase operator: {self}")

    def seq2seq_texts(self, sources) -> dict[str, list[str]]:
        """Batched model paraphrases of every text of `sources` (records or a DataFrame); {} for WordNet.
        Authors: up to 128 new tokens for prompts, 192 for responses."""
        if self.model is None:
            return {}
        recs = sources.to_dict("records") if hasattr(sources, "to_dict") else list(sources)
        para = seq2seq_paraphraser(self.model, self.device)
        out = para.paraphrase_many([r["chosen"] for r in recs] + [r["rejected"] for r in recs], self.n, 192)
        if self.paraphrase_prompt:
            out.update(para.paraphrase_many([r["prompt"] for r in recs], self.n, 128))
        return out

    def pool_for(self, pair: dict, texts: dict[str, list[str]] | None = None) -> list[dict]:
        """All synthetic pairs of one source pair (deduplicated, originals excluded). `texts`: the
        model paraphrases from `seq2seq_texts` (a seq2seq operator needs them)."""
        kw = {"p_replace": self.p_replace}
        if self.model is not None:
            if texts is None:
                texts = self.seq2seq_texts([pair])
            pp = texts.get(pair["prompt"], [])[: self.n] if self.paraphrase_prompt else []
            cp, rp = texts[pair["chosen"]][: self.n], texts[pair["rejected"]][: self.n]
        else:
            pp = paraphrases(pair["prompt"], self.n, self.seed, **kw) if self.paraphrase_prompt else []
            cp = paraphrases(pair["chosen"], self.n, self.seed + 1, **kw)
            rp = paraphrases(pair["rejected"], self.n, self.seed + 2, **kw)
        prompts = pp or [pair["prompt"]]
        cs = ([pair["chosen"]] if self.include_originals else []) + cp
        rs = ([pair["rejected"]] if self.include_originals else []) + rp
        out, seen = [], {(pair["prompt"], pair["chosen"], pair["rejected"])}
        for ci, c in enumerate(cs):
            for ri, r in enumerate(rs):
                p = prompts[(ci + ri) % len(prompts)]
                key = (p, c, r)
                if key in seen or c == r:
                    continue
                seen.add(key)
                out.append({"prompt": p, "chosen": c, "rejected": r})
        return out

    def params(self) -> dict:
        return asdict(self)


def build_pool(sources: pd.DataFrame, op: ParaphraseOp, progress: bool = True) -> pd.DataFrame:
    """Synthetic pool for every source pair. Columns: the pair schema + syn_index, op params, and
    the source's gold scores where present (inherited label: gold of the *source* sides)."""
    from tqdm import tqdm  # text bars: no ipywidgets in the stack, so tqdm.auto would warn
    rows = []
    texts = op.seq2seq_texts(sources)                   # one batched pass for a model paraphraser
    for rec in tqdm(sources.to_dict("records"), desc=f"{op.name} pool", disable=not progress, unit="pair"):
        for k, syn in enumerate(op.pool_for(rec, texts)):
            rows.append({**syn, "pair_id": f"{rec['pair_id']}#{op.name}{k}", "source_id": rec["pair_id"],
                         "origin": op.name, "syn_index": k})
    df = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "pair_id", "source_id", "origin", "syn_index"])
    counts = df.groupby("source_id").size().reindex(sources.pair_id, fill_value=0)
    df.attrs["distinct_per_source"] = counts.describe().to_dict()
    df.attrs["op"] = op.params()
    return df


def draw_on_demand(sources: pd.DataFrame, budgets, op: ParaphraseOp, round_seed: int) -> pd.DataFrame:
    """Exactly b_i fresh synthetic pairs per selected source (op seeded per round); shortfalls are
    recorded in `attrs['shortfall']` (sources whose texts admit fewer distinct paraphrase pairs)."""
    import dataclasses
    rows, shortfall = [], 0
    for rec, b in zip(sources.to_dict("records"), budgets):
        if b <= 0:
            continue
        need_n = int(np.ceil(np.sqrt(b))) + (1 if op.include_originals else 0)
        o = dataclasses.replace(op, n=max(op.n, need_n), seed=op.seed + 7919 * round_seed)
        syn = o.pool_for(rec)[: int(b)]
        shortfall += int(b) - len(syn)
        for k, s in enumerate(syn):
            rows.append({**s, "pair_id": f"{rec['pair_id']}#{op.name}r{round_seed}-{k}", "source_id": rec["pair_id"],
                         "origin": op.name, "syn_index": k})
    df = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "pair_id", "source_id", "origin", "syn_index"])
    df.attrs["shortfall"] = shortfall
    return df


def resample_pool(sources: pd.DataFrame, samples: pd.DataFrame, labeler, band: tuple[float, float] = (0.1, 0.5),
                  seed: int = 0) -> pd.DataFrame:
    """Close-quality synthetic pairs from fresh policy samples: MARS's generative, RLAIF form (issue 9).

    For each prompt of `sources`, every pair of its N policy samples (`samples`: prompt_id, prompt,
    response[, n_tokens, gold]) is compared once by `labeler` (mars_lib.judges.labelers). A pair is kept
    when its |labeler gap| lies inside `band`, given as quantiles of |gap| over all compared pairs
    (default (0.1, 0.5): close in quality, yet not tied — the "tight margin of superiority"); the
    absolute band, in labeler units, is in attrs["band_abs"]. Chosen / rejected follow the
    labeler's label (a noisy Bradley-Terry draw for the gold labeler, the sign of the gap for the
    reward-model labeler). Each source pair of a prompt gets that prompt's kept pairs as its pool,
    so MARS's per-source budgets b_i draw close pairs for exactly the prompts it selected.
    attrs: labeler, labeler_calls, generated_tokens, candidates, kept, band_abs. Where the samples
    carry gold scores, gold_chosen / gold_rejected are the *new* responses' own gold scores (for
    measuring label fidelity; the labeler itself reads only what its interface gives it).
    """
    if not 0 <= band[0] < band[1] <= 1:
        raise ValueError(f"band must be quantiles 0 <= lo < hi <= 1, got {band}")
    rng = np.random.default_rng(seed)
    s = samples[samples.prompt_id.isin(set(sources.prompt_id))].reset_index(drop=True)
    cand = []
    for pid, g in s.groupby("prompt_id", sort=True):
        idx = g.index.to_numpy()
        a, b = np.triu_indices(len(idx), 1)
        cand.append(pd.DataFrame({"prompt_id": pid, "i": idx[a], "j": idx[b]}))
    if not cand:
        raise ValueError("resample_pool: no policy samples for the source prompts")
    cand = pd.concat(cand, ignore_index=True)
    cand = cand[s.response.to_numpy()[cand.i] != s.response.to_numpy()[cand.j]].reset_index(drop=True)
    prompts, ra, rb = s.prompt.to_numpy()[cand.i], s.response.to_numpy()[cand.i], s.response.to_numpy()[cand.j]
    calls0 = labeler.calls
    gap = np.asarray(labeler.compare(prompts, ra, rb), dtype=float)
    lo, hi = np.quantile(np.abs(gap), band)
    keep = (np.abs(gap) >= lo) & (np.abs(gap) <= hi) & (gap != 0)
    a_wins = labeler.label_from_gap(gap, rng)    # noisy draw (gold annotator) or the gap's sign
    kept = cand[keep].assign(a_wins=a_wins[keep], gap=np.abs(gap[keep]))
    ci = np.where(kept.a_wins, kept.i, kept.j)
    ri = np.where(kept.a_wins, kept.j, kept.i)
    per_prompt = pd.DataFrame({"prompt_id": kept.prompt_id.to_numpy(), "prompt": s.prompt.to_numpy()[ci],
                               "chosen": s.response.to_numpy()[ci], "rejected": s.response.to_numpy()[ri],
                               "label_gap": kept.gap.to_numpy()})
    if "gold" in s:
        per_prompt["gold_chosen"], per_prompt["gold_rejected"] = s.gold.to_numpy()[ci], s.gold.to_numpy()[ri]
    rows = sources[["pair_id", "prompt_id"]].rename(columns={"pair_id": "source_id"}).merge(per_prompt, on="prompt_id")
    rows["syn_index"] = rows.groupby("source_id").cumcount()
    rows["pair_id"] = rows.source_id + "#resample" + rows.syn_index.astype(str)
    rows["origin"], rows["labeler"] = "resample", getattr(labeler, "name", type(labeler).__name__)
    cols = ["prompt", "chosen", "rejected", "pair_id", "source_id", "origin", "syn_index", "labeler", "label_gap"]
    out = rows[cols + [c for c in ("gold_chosen", "gold_rejected") if c in rows]].reset_index(drop=True)
    out.attrs.update({"labeler": out.labeler.iloc[0] if len(out) else None, "labeler_calls": labeler.calls - calls0,
                      "generated_tokens": int(s.n_tokens.sum()) if "n_tokens" in s else None,
                      "candidates": len(cand), "kept": int(keep.sum()), "band_abs": (float(lo), float(hi))})
    return out
