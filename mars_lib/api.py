"""The Python API, equal to the command line (`mars_lib.cli` is a thin layer over it).

Every function takes pairs as a pandas DataFrame, a `datasets.Dataset`, a list of dicts or a file path
(prompt, chosen, rejected; extra columns kept), validates them as `mars_lib.data.pairs` does, and
returns pandas frames. Warnings (a coin-like RM, an allocation that cannot be told from uniform, a
budget that could not be made) are `MarsWarning`s; progress lines go to stderr when `verbose`.

    >>> from mars_lib import api
    >>> scored = api.score("train.jsonl", rm="my_rm/")                 # pair_id, reward_chosen, _rejected, _gap
    >>> alloc = api.allocate("train.jsonl", rm="my_rm/", budget=2000, version="v1", target_ess=0.5)
    >>> aug = api.augment("train.jsonl", rm="my_rm/", budget=2000)    # originals + synthetic rows
    >>> result = api.compare("train.jsonl", "test.jsonl", seeds=(0, 1, 2), rounds=2, out="cmp/")
    >>> result.claims[["claim", "effect", "lo", "hi", "verdict"]]
"""
from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.torch import load_file, save_file

from mars_lib import strategies
from mars_lib.data.pairs import DataError, as_pairs
from mars_lib.evaluation.stats import cluster_mean
from mars_lib.mars import capped_budgets, concentration, integer_budgets, tau_for_ess
from mars_lib.pipeline import compare as comparison
from mars_lib.pipeline.assets import cache_dir, minilm_dir, set_offline
from mars_lib.pipeline.config import MarsConfig
from mars_lib.pipeline.io import atomic_write_json
from mars_lib.reward_models.features import Encoder, FeatureCache, featurize, rm_text
from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
from mars_lib.reward_models.head import HeadConfig, HeadRewardModel
from mars_lib.reward_models.hf_folder import HFRewardModel, HFRewardModelError, is_hf_folder
from mars_lib.reward_models.packing import PackingError
from mars_lib.synthetic.builders import ParaphraseOp, draw_on_demand

MINILM_DIM = 384        # feature size of the shipped encoder (all-MiniLM-L6-v2)
MINILM_POSITIONS = 512  # its position embeddings: the longest input it can read
CONCENTRATED = 0.5      # warn when the allocation's effective sample size over N falls below this
UNIFORM_OVERLAP = 0.95  # share of B placed where uniform places it, above which MARS is uniform in effect


class MarsWarning(UserWarning):
    """Something a result's reader must know (the CLI prints it as "WARNING: ...")."""


def _warn(msg: str) -> None:
    warnings.warn(msg, MarsWarning, stacklevel=3)


def _say(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg, file=sys.stderr)


# ----------------------------------------------------------------------------- reward models
def _check_minilm_length(max_length: int) -> None:
    if max_length > MINILM_POSITIONS:
        raise DataError(f"--max-length {max_length} exceeds the shipped encoder's {MINILM_POSITIONS} positions "
                        f"(all-MiniLM-L6-v2): pass --max-length {MINILM_POSITIONS} or less")


def encoder(max_length: int = 256) -> Encoder:
    """The shipped MiniLM encoder with the feature cache (features cached by content, offline)."""
    _check_minilm_length(max_length)
    set_offline()
    return Encoder.minilm(FeatureCache(cache_dir() / "features.sqlite"), max_length=max_length)


def load_head(path: Path, dim: int = MINILM_DIM) -> HeadRewardModel:
    """A head RM folder written by `mars train` (head.json + head.safetensors), with a clear error otherwise."""
    path = Path(path)
    meta_p, w_p = path / "head.json", path / "head.safetensors"
    if not path.exists():
        raise DataError(f"--rm {path}: no such folder")
    if not meta_p.exists() or not w_p.exists():
        raise DataError(f"{path} is not a reward model folder: need head.json and head.safetensors (make one "
                        "with `mars train`) or a Hugging Face AutoModelForSequenceClassification folder (config.json "
                        "and *.safetensors, e.g. saved by TRL's RewardTrainer)")
    try:
        m = HeadRewardModel(dim, HeadConfig(**json.loads(meta_p.read_text())["head"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{meta_p} is not a head.json written by `python -m mars_lib train` "
                        f"({type(e).__name__}: {e}); retrain the reward model") from None
    try:
        m.load_state_dict(load_file(str(w_p)))
    except Exception as e:  # truncated or foreign file: say which and how to fix
        raise DataError(f"cannot load {w_p} ({type(e).__name__}: {e}); retrain with `python -m mars_lib train`")
    return m


def _rm_texts(df: pd.DataFrame, text=rm_text) -> list[str]:
    """The texts an RM reads for every pair: chosen and rejected, each with its prompt (`text(prompt, response)`)."""
    return [text(p, y) for p, c, r in zip(df.prompt, df.chosen, df.rejected) for y in (c, r)]


def truncated(tokenizer, texts: list[str], max_length: int, verbose: bool = True) -> int:
    """How many of `texts` are longer than `max_length` tokens (they are cut from the left, keeping the
    response's end); said on stderr when any are, never dropped silently."""
    n = sum(len(ids) > max_length for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])
    if n:
        _say(f"{n} of {len(texts)} texts are longer than --max-length {max_length} tokens and are cut from the left "
             "(the response's end is kept); raise --max-length, up to the model's positions, to keep more", verbose)
    return n


def train(pairs, out, regime: str = "head", model: str | None = None, epochs: int | None = None,
          lr: float | None = None, hidden: int = 0, batch_size: int = 16, max_length: int = 256, device: str = "cpu",
          precision: str = "fp32", seed: int = 0, on_error: str = "raise", verbose: bool = True,
          padding_free: bool = False) -> Path:
    """Train a reward model on validated pairs and write its folder: regime "head" (a linear or MLP head
    on frozen MiniLM features: head.json + head.safetensors; epochs 5, lr 1e-2 by default) or "full" /
    "lora" (fine-tune `model`, default the shipped MiniLM; epochs 1, lr 2e-5): a Hugging Face
    AutoModelForSequenceClassification folder (LoRA merged into the weights) that TRL and `score` read."""
    df = as_pairs(pairs, on_error)
    out = Path(out)
    if regime == "head":
        if model is not None:
            raise DataError("--model names a backbone to fine-tune: use it with --regime full or lora")
        enc = encoder(max_length)
        truncated(enc.tok, _rm_texts(df), max_length, verbose)
        feats = featurize(df, enc)
        cfg = HeadConfig(hidden=hidden, lr=1e-2 if lr is None else lr, epochs=epochs or 5, seed=seed)
        m = HeadRewardModel(feats.phi_c.shape[1], cfg)
        losses = m.fit(feats.phi_c, feats.phi_r)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".head.safetensors.tmp"         # weights first, then head.json: the folder is usable only whole
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp))
        tmp.replace(out / "head.safetensors")
        atomic_write_json(out / "head.json", {"head": dataclasses.asdict(cfg), "encoder": "all-MiniLM-L6-v2",
                                              "max_length": max_length, "trained_on": df.attrs.get("path"),
                                              "pairs": len(df), "loss_per_epoch": losses})
    elif regime in ("full", "lora"):
        if max_length > MINILM_POSITIONS and model is None:
            raise DataError(f"--max-length {max_length} exceeds the shipped MiniLM's {MINILM_POSITIONS} positions")
        cfg = FinetuneConfig(model=model or str(minilm_dir()), lora=regime == "lora", lr=2e-5 if lr is None else lr,
                             batch_size=batch_size, grad_accum=1, max_length=max_length, epochs=epochs or 1,
                             precision=precision, device=device, seed=seed, packing=padding_free)
        try:
            rm = FinetunedRewardModel(cfg)
        except PackingError as e:
            raise DataError(str(e)) from None
        except (OSError, ValueError) as e:
            raise DataError(f"--model {cfg.model}: cannot be loaded as a sequence-classification model "
                            f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        truncated(rm.tokenizer, _rm_texts(df), max_length, verbose)
        losses = rm.fit(df, progress=verbose)
        if regime == "lora":                        # one plain folder that any reader loads, adapters merged in
            rm.model, rm.cfg = rm.model.merge_and_unload(), dataclasses.replace(cfg, lora=False)
        rm.save(out)
    else:
        raise DataError(f"--regime {regime!r}: choose head, full or lora")
    _say(f"trained ({regime}) on {len(df)} pairs, final loss {losses[-1]:.4f} -> {out}", verbose)
    return out


class HeadScorer:
    """A `mars train` head with the encoder it reads: `pair_scores(df)` like a Hugging Face RM's."""

    def __init__(self, head: HeadRewardModel, max_length: int = 256):
        self.head, self.encoder = head, encoder(max_length)

    def pair_scores(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.head.pair_scores(featurize(df, self.encoder))


def load_rm(rm, max_length: int = 256, template: str = "auto"):
    """A reward model ready to score, before any pair is read (a wrong folder fails at once): a `mars
    train` head folder (`HeadScorer`) or any local Hugging Face AutoModelForSequenceClassification
    folder with one output (`HFRewardModel`). An object with `pair_scores(df)` is returned as it is."""
    if hasattr(rm, "pair_scores"):
        return rm
    if is_hf_folder(rm):
        try:
            return HFRewardModel(rm, max_length=max_length, template=template)
        except HFRewardModelError as e:
            raise DataError(str(e)) from None
    head = load_head(Path(rm))
    trained_at = json.loads((Path(rm) / "head.json").read_text()).get("max_length")
    if trained_at and trained_at != max_length:
        _warn(f"this head was trained on texts cut at {trained_at} tokens and is now scored at --max-length "
              f"{max_length}; pass --max-length {trained_at} to score it as it was trained")
    return HeadScorer(head, max_length)


def reward_scores(df: pd.DataFrame, rm, max_length: int = 256, template: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(r(chosen), r(rejected)) of validated pairs under `rm` (a folder or a `load_rm` model)."""
    try:
        return load_rm(rm, max_length, template).pair_scores(df)
    except HFRewardModelError as e:
        raise DataError(str(e)) from None


def _truncated_by(model, df: pd.DataFrame, max_length: int, verbose: bool = True) -> int | None:
    """`truncated` for the texts `model` (a `load_rm` model) reads; None for an object it cannot tokenize for."""
    if isinstance(model, HFRewardModel):
        return truncated(model.tokenizer, _rm_texts(df, model.text), max_length, verbose)
    if isinstance(model, HeadScorer):
        return truncated(model.encoder.tok, _rm_texts(df), max_length, verbose)
    return None


def score(pairs, rm, max_length: int = 256, template: str = "auto", on_error: str = "raise") -> pd.DataFrame:
    """Reward of both responses of every pair: columns pair_id, reward_chosen, reward_rejected,
    reward_gap (= chosen − rejected), one row per input pair, in input order. Texts longer than
    `max_length` tokens are counted and said (stderr) before scoring."""
    df = as_pairs(pairs, on_error)
    model = load_rm(rm, max_length, template)
    _truncated_by(model, df, max_length)
    rc, rr = reward_scores(df, model, max_length, template)
    return pd.DataFrame({"pair_id": df.pair_id, "reward_chosen": rc, "reward_rejected": rr, "reward_gap": rc - rr})


def _won(a, b) -> np.ndarray:
    """1 where a > b, 0.5 on a tie, 0 where a < b (per pair)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def not_a_coin(df: pd.DataFrame, rc, rr, verbose: bool = True) -> dict:
    """The RM's accuracy, the "longer response wins" baseline's, and RM − length, each with a t interval
    over prompts (`stats.cluster_mean`); a MarsWarning when the RM cannot be told from chance or does
    not beat the length baseline."""
    return coin_check(df, _won(rc, rr), verbose)


def coin_check(df: pd.DataFrame, rm_ok, verbose: bool = True) -> dict:
    """`not_a_coin` from per-pair correctness in [0, 1] (1 right, 0.5 tie; or a mean over seeds)."""
    rm_ok = np.asarray(rm_ok, float)
    len_ok = _won(df.chosen.str.len(), df.rejected.str.len())
    acc, length, diff = (cluster_mean(x, df.prompt) for x in (rm_ok, len_ok, rm_ok - len_ok))
    fmt = lambda d: f"{d['mean']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"     # noqa: E731
    _say(f"accuracy {fmt(acc)}; length baseline (longer response wins) {fmt(length)}; RM − length "
         f"{diff['mean']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}] (95 % t intervals over {acc['n_clusters']} "
         f"prompts)", verbose)
    if not acc["lo"] > 0.5:
        _warn("this reward model cannot be told from a coin on these pairs (its accuracy interval reaches 0.5): "
              "its reward gaps carry little signal, and MARS's allocation from them is close to random")
    if not diff["lo"] > 0:
        _warn("this reward model does not beat the length baseline on these pairs (RM − length interval "
              "reaches 0): much of what it ranks may be length")
    return {"accuracy_lo": acc["lo"], "accuracy_hi": acc["hi"], "length_baseline": length["mean"],
            "rm_minus_length": diff["mean"], "rm_minus_length_lo": diff["lo"], "rm_minus_length_hi": diff["hi"]}


# ----------------------------------------------------------------------------- allocation
def _tau(arm, gaps, budget: int, tau, target_ess, seed: int, verbose: bool) -> float | None:
    """`tau`, or the τ whose realised budgets reach `target_ess` (`mars.tau_for_ess`), or the config default."""
    if arm.tau_field is None:
        if tau is not None or target_ess is not None:
            raise DataError(f"--{'tau' if tau is not None else 'target-ess'} has no meaning with --version {arm.name}")
        return None
    if target_ess is not None:
        if tau is not None or not 0 < target_ess < 1:
            raise DataError("--target-ess takes a value in (0, 1) and replaces --tau (give one of them)")
        t = tau_for_ess(gaps, target_ess, arm.q, budget=budget, seed=seed)
        _say(f"--target-ess {target_ess:g}: τ = {t:.4g}", verbose)
        return t
    if tau is not None and not tau > 0:
        raise DataError(f"--tau must be > 0, got {tau}")
    return tau if tau is not None else getattr(MarsConfig(), arm.tau_field)


def budgets(gaps, budget: int, version: str = "v1", tau: float | None = None, target_ess: float | None = None,
            max_per_source: int | None = None, seed: int = 0, verbose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(q [N], integer budgets b [N] summing to `budget`) from reward gaps [N] with the allocation rule of
    `version` (v1, v2, uniform or any registered strategy with one); MarsWarnings when b is concentrated
    on few pairs or cannot be told from uniform."""
    if budget < 0:
        raise DataError(f"--budget must be >= 0, got {budget}")
    if version not in strategies.allocators():
        raise DataError(f"--version {version!r}: choose one of {sorted(strategies.allocators())}")
    arm = strategies.allocators()[version]
    gaps = np.asarray(gaps, float)
    q = arm.q(gaps, _tau(arm, gaps, budget, tau, target_ess, seed, verbose))
    try:
        b = capped_budgets(q, budget, max_per_source, seed=seed) if max_per_source else integer_budgets(q, budget, seed=seed)
    except ValueError as e:
        raise DataError(f"{e}: raise --max-per-source or lower --budget") from None
    if budget == 0:
        _warn("--budget 0: no synthetic pairs (the output is the input)")
        return q, b
    c = concentration(b)
    _say(f"allocation ({version}): {int(b.sum())} synthetic pairs over {int((b > 0).sum())} of {len(b)} pairs, "
         f"max {int(b.max())} on one pair, top 10 % of pairs get {c['top10_share']:.0%}, Gini {c['gini']:.2f}, "
         f"ESS/N {c['ess_over_n']:.2f}", verbose)
    if target_ess is not None:                      # the user chose the concentration: say only a miss
        if abs(c["ess_over_n"] - target_ess) > 0.05:
            _warn(f"--target-ess {target_ess:g} was not reached: the integer budgets give ESS/N "
                  f"{c['ess_over_n']:.2f} (B = {budget} over {len(b)} pairs is too coarse for it); raise --budget")
    elif c["ess_over_n"] < CONCENTRATED:
        _warn(f"the allocation is concentrated (ESS/N {c['ess_over_n']:.2f} < {CONCENTRATED}): few pairs get most "
              f"of the budget, and near-copies of them dominate the augmented set. Lower --tau, or cap b_i with "
              f"--max-per-source.")
    uniform = integer_budgets(np.full(len(b), 1 / len(b)), budget, seed=seed)
    overlap = float(np.minimum(b, uniform).sum() / budget)
    if arm.tau_field is not None and overlap >= UNIFORM_OVERLAP:
        _warn(f"this allocation cannot be told from uniform: {overlap:.0%} of the budget goes where "
              f"--version uniform puts it (the reward gaps are too flat for this τ). A comparison with uniform "
              f"will be null by construction; raise --tau or choose a concentration with --target-ess (e.g. 0.5).")
    return q, b


def allocate(pairs, rm, budget: int, version: str = "v1", tau: float | None = None, target_ess: float | None = None,
             max_per_source: int | None = None, seed: int = 0, max_length: int = 256, template: str = "auto",
             on_error: str = "raise", verbose: bool = True) -> pd.DataFrame:
    """MARS's budget per pair under `rm`: columns pair_id, reward_gap, q, budget (Σ budget = `budget`)."""
    df = as_pairs(pairs, on_error)
    rc, rr = reward_scores(df, rm, max_length, template)
    q, b = budgets(rc - rr, budget, version, tau, target_ess, max_per_source, seed, verbose)
    return pd.DataFrame({"pair_id": df.pair_id, "reward_gap": rc - rr, "q": q, "budget": b})


# ----------------------------------------------------------------------------- augmentation
def draw_exact(df: pd.DataFrame, q: np.ndarray, b: np.ndarray, op: ParaphraseOp, seed: int,
               attempts: int = 4) -> tuple[pd.DataFrame, np.ndarray]:
    """`draw_on_demand`, with what a source could not make re-spent on the sources that made all they were
    asked, in proportion to q (up to `attempts` times), so the budget is exactly Σb where the texts allow.
    Returns the synthetic pairs and the per-source counts made [N]."""
    want = int(b.sum())
    for _ in range(attempts):
        syn = draw_on_demand(df, b, op, round_seed=0)
        made = syn.groupby("source_id").size().reindex(df.pair_id, fill_value=0).to_numpy()
        short = want - int(made.sum())
        able = (made == b) & (q > 0)
        if short == 0 or not able.any():
            break
        b = made + integer_budgets(np.where(able, q, 0.0) / q[able].sum(), short, seed=seed)
    return syn, made


def augment(pairs, rm, budget: int, version: str = "v1", tau: float | None = None, target_ess: float | None = None,
            max_per_source: int | None = None, seed: int = 0, n_paraphrases: int = 5, paraphrase_prompt: bool = False,
            max_length: int = 256, template: str = "auto", on_error: str = "raise", verbose: bool = True) -> pd.DataFrame:
    """The original pairs followed by b_i WordNet paraphrase pairs per source (label inherited), b from
    `budgets`. Columns: prompt, chosen, rejected, pair_id, origin ("original" / "synthetic"),
    source_pair_id, and the input's other columns (a synthetic row gets its source's values)."""
    df = as_pairs(pairs, on_error)
    rc, rr = reward_scores(df, rm, max_length, template)
    q, b = budgets(rc - rr, budget, version, tau, target_ess, max_per_source, seed, verbose)
    op = ParaphraseOp(n=n_paraphrases, seed=seed, paraphrase_prompt=paraphrase_prompt)
    syn, made = draw_exact(df, q, b, op, seed)
    extra = [c for c in df.columns if c not in ("prompt", "chosen", "rejected", "pair_id", "source_id", "origin")]
    orig = df.assign(origin="original", source_pair_id=df.pair_id)
    syn = syn.assign(origin="synthetic", source_pair_id=syn.source_id)[["prompt", "chosen", "rejected", "pair_id", "origin",
                                                                         "source_pair_id"]].join(df.set_index("pair_id")[extra],
                                                                                                 on="source_pair_id")
    cols = ["prompt", "chosen", "rejected", "pair_id", "origin", "source_pair_id", *extra]
    short = int(b.sum()) - len(syn)
    if short:
        none = int(((made == 0) & (b > 0)).sum())
        _warn(f"{short} of the {int(b.sum())} synthetic pairs asked for ({short / int(b.sum()):.0%}) could not be made, "
              f"after re-spending what {none} pair(s) with no paraphrasable text could not use on the pairs that "
              f"could: too few texts admit distinct paraphrases (WordNet: English words with synonyms). Lower "
              f"--budget, or paraphrase the prompt too (--paraphrase-prompt).")
    return pd.concat([orig[cols], syn[cols]], ignore_index=True)


# ----------------------------------------------------------------------------- comparison
def compare(train, test, arms=comparison.DEFAULT_ARMS, seeds=(0, 1, 2), rounds: int = 2, budget: int | None = None,
            regime: str = "head", model: str | None = None, out=None, dry_run: bool = False, progress: bool = True,
            on_error: str = "raise", **settings):
    """Does MARS help on this data? Each arm × seed trained for `rounds` rounds (score → allocate →
    augment → retrain; B = `budget` synthetic pairs per round, default 2 N) on `train`, scored on `test`:
    a `pipeline.compare.Comparison` (claims: paired differences with interval, p_adj, MDE, verdict;
    accuracy; concentration per round; timing). `regime` "head" (linear head on frozen MiniLM), "full"
    or "lora" (fine-tune `model`, default the shipped MiniLM); `settings`: other `RunConfig` fields
    (tau_v1, tau_v2, epochs_per_round, max_length, lr, ft_lr, batch_size, device, precision, n_boot).
    `out`: a folder that makes the run resumable and receives the CSVs. `dry_run`: return
    `pipeline.compare.plan` (the cost) and train nothing."""
    tr, te = as_pairs(train, on_error, "train"), as_pairs(test, on_error, "test")
    cfg = comparison.comparison_config(len(tr), arms, seeds, rounds, budget, regime, model, **settings)
    if regime == "head":
        _check_minilm_length(cfg.max_length)
    from transformers import AutoTokenizer         # heavy: imported only when a comparison runs; the tokenizer
    tok = AutoTokenizer.from_pretrained(cfg.rm_model or minilm_dir())   # alone (the encoder loads once, in compare)
    truncated(tok, _rm_texts(tr) + _rm_texts(te), cfg.max_length, progress)
    if dry_run:
        return comparison.plan(cfg, tr, te, out)
    result = comparison.compare(cfg, tr, te, out, progress)
    best = result.accuracy.sort_values("mean").strategy.iloc[-1]           # the strongest arm, mean over seeds
    pp = result.per_pair[result.per_pair.strategy == best]
    _say(f"the most accurate arm, {best}, against chance and the length baseline:", progress)
    result.baseline = {"arm": best, **coin_check(te, pp.groupby("pair_id").correct.mean().reindex(te.pair_id), progress)}
    return result
