"""Command line for practitioners: MARS on your own prompt/chosen/rejected data.

    mars train    --pairs train.jsonl --out my_rm/            # or: python -m mars_lib train ...
    mars score    --pairs test.jsonl  --rm my_rm/ --out scored.csv   # reward gaps + metrics
    mars allocate --pairs train.jsonl --rm my_rm/ --budget 2000 --version v1 --out alloc.csv
    mars augment  --pairs train.jsonl --rm my_rm/ --budget 2000 --version v2 --out augmented.jsonl

Input: JSONL / CSV / Parquet with prompt, chosen, rejected (or HH-RLHF dialogues with --hh).
Everything runs offline on the shipped MiniLM encoder; features are cached by content.
`augment` writes TRL-style prompt/chosen/rejected JSONL (and the same rows as a `datasets` dataset,
`save_to_disk`, for `load_from_disk`): the original pairs followed by b_i WordNet
paraphrase pairs per source, b = largest-remainder(B · softmax(−τ g(Δ))) (v1: g = |Δ|, τ = 0.1;
v2: g = Δ, τ = 0.5 unless --tau is given; `--version uniform`: the same B spread evenly, the
baseline MARS is compared with). Only chosen and rejected are paraphrased unless
--paraphrase-prompt is given (as in the notebooks' cpu profile; the authors paraphrase the prompt
too); role markers ("Human:", "Assistant:") are never rewritten. `allocate` and `augment` print the
allocation's concentration and warn when it is concentrated on few pairs (ESS/N < 0.5);
--max-per-source caps b_i. Every output is written whole or not at all (temp file + rename).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mars_lib import strategies
from mars_lib.pipeline.config import MarsConfig
from mars_lib.mars import capped_budgets, concentration, integer_budgets, tau_for_ess
from mars_lib.data.pairs import DataError, load_hh_jsonl, load_pairs, to_trl_jsonl
from mars_lib.pipeline.assets import cache_dir, set_offline
from mars_lib.reward_models.features import Encoder, FeatureCache, featurize
from mars_lib.pipeline.io import atomic_write_json, atomic_write_text
from mars_lib.reward_models.hf_folder import HFRewardModel, HFRewardModelError, is_hf_folder
from mars_lib.evaluation.metrics import rm_metrics
from mars_lib.evaluation.stats import cluster_mean
from mars_lib.synthetic.builders import draw_on_demand, ParaphraseOp
from mars_lib.reward_models.head import HeadConfig, HeadRewardModel

CONCENTRATED = 0.5      # warn when the allocation's effective sample size over N falls below this


MINILM_DIM = 384        # feature size of the shipped encoder (all-MiniLM-L6-v2)
MINILM_POSITIONS = 512  # its position embeddings: the longest input it can read


class CliError(DataError):
    """A bad argument or folder: printed as "error: ..." with exit code 2, like every other input error."""


def _load(args):
    if not Path(args.pairs).is_file():
        raise DataError(f"--pairs {args.pairs}: no such file")
    if args.hh:
        return load_hh_jsonl(args.pairs, on_error=args.on_error)
    try:
        return load_pairs(args.pairs, on_error=args.on_error)
    except DataError as e:
        if "missing column" in str(e) and "'prompt'" in str(e) and _looks_like_hh(args.pairs):
            raise DataError(f"{e}. The file holds chosen/rejected dialogues without a prompt column, as HH-RLHF does: "
                            "add --hh to split each dialogue into prompt and final response") from None
        raise


def _looks_like_hh(path) -> bool:
    """Does the file's first record have HH-RLHF's shape (chosen/rejected dialogues with role markers)?"""
    import gzip
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            first = json.loads(f.readline())
        return all("Assistant:" in str(first.get(k, "")) for k in ("chosen", "rejected"))
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def _encoder(args):
    if args.max_length > MINILM_POSITIONS:
        raise CliError(f"--max-length {args.max_length} exceeds the shipped encoder's {MINILM_POSITIONS} positions "
                       f"(all-MiniLM-L6-v2): pass --max-length {MINILM_POSITIONS} or less")
    set_offline()
    return Encoder.minilm(FeatureCache(cache_dir() / "features.sqlite"), max_length=args.max_length)


def _load_rm(path: Path, dim: int):
    from safetensors.torch import load_file

    meta_p, w_p = path / "head.json", path / "head.safetensors"
    if not path.exists():
        raise CliError(f"--rm {path}: no such folder")
    if not meta_p.exists() or not w_p.exists():
        raise CliError(f"{path} is not a reward model folder: need head.json and head.safetensors (make one "
                       "with `mars train`) or a Hugging Face AutoModelForSequenceClassification folder (config.json "
                       "and *.safetensors, e.g. saved by TRL's RewardTrainer)")
    try:
        m = HeadRewardModel(dim, HeadConfig(**json.loads(meta_p.read_text())["head"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CliError(f"{meta_p} is not a head.json written by `python -m mars_lib train` "
                       f"({type(e).__name__}: {e}); retrain the reward model") from None
    try:
        m.load_state_dict(load_file(str(w_p)))
    except Exception as e:  # truncated or foreign file: say which and how to fix
        raise CliError(f"cannot load {w_p} ({type(e).__name__}: {e}); retrain with `python -m mars_lib train`")
    return m


def cmd_train(args) -> int:
    import dataclasses

    from safetensors.torch import save_file

    df = _load(args)
    pairs = featurize(df, _encoder(args))
    cfg = HeadConfig(hidden=args.hidden, lr=args.lr, epochs=args.epochs, seed=args.seed)
    m = HeadRewardModel(pairs.phi_c.shape[1], cfg)
    losses = m.fit(pairs.phi_c, pairs.phi_r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".head.safetensors.tmp"             # weights first, then head.json: the folder is usable only whole
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp))
    tmp.replace(out / "head.safetensors")
    atomic_write_json(out / "head.json", {"head": dataclasses.asdict(cfg), "encoder": "all-MiniLM-L6-v2",
                                          "max_length": args.max_length, "trained_on": str(args.pairs),
                                          "pairs": len(df), "loss_per_epoch": losses})
    print(f"trained on {len(df)} pairs, final loss {losses[-1]:.4f} -> {out}")
    return 0


def _gaps(args):
    if is_hf_folder(args.rm):                        # any local AutoModelForSequenceClassification reward model
        try:
            rm = HFRewardModel(args.rm, max_length=args.max_length, template=args.template)
        except HFRewardModelError as e:
            raise CliError(str(e)) from None
        df = _load(args)
        return (df, None, *rm.pair_scores(df))
    rm = _load_rm(Path(args.rm), MINILM_DIM)          # a wrong folder fails now, not after every pair is encoded
    trained_at = json.loads((Path(args.rm) / "head.json").read_text()).get("max_length")
    if trained_at and trained_at != args.max_length:
        print(f"WARNING: this head was trained on texts cut at {trained_at} tokens and is now scored at --max-length "
              f"{args.max_length}; pass --max-length {trained_at} to score it as it was trained", file=sys.stderr)
    df = _load(args)
    pairs = featurize(df, _encoder(args))
    return (df, pairs, *rm.pair_scores(pairs))


def _write_csv(df: pd.DataFrame, path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def dataset_dir(out: Path) -> Path:
    """Where `augment` saves the `datasets` copy of its JSONL: augmented.jsonl -> augmented_dataset/."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + "_dataset")


def save_dataset(df: pd.DataFrame, path: Path) -> Path:
    """`datasets.Dataset.save_to_disk`, built beside the target and renamed into place when complete."""
    import shutil

    from datasets import Dataset
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _won(a, b) -> np.ndarray:
    """1 where a > b, 0.5 on a tie, 0 where a < b (per pair)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def not_a_coin(df: pd.DataFrame, rc, rr) -> dict:
    """The RM's accuracy, the "longer response wins" baseline's, and RM − length, each with a t interval
    over prompts (`stats.cluster_mean`); warnings when the RM cannot be told from chance or does not
    beat the length baseline."""
    rm_ok = _won(rc, rr)
    len_ok = _won(df.chosen.str.len(), df.rejected.str.len())
    acc, length, diff = (cluster_mean(x, df.prompt) for x in (rm_ok, len_ok, rm_ok - len_ok))
    fmt = lambda d: f"{d['mean']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"     # noqa: E731
    print(f"accuracy {fmt(acc)}; length baseline (longer response wins) {fmt(length)}; RM − length "
          f"{diff['mean']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}] (95 % t intervals over {acc['n_clusters']} "
          f"prompts)", file=sys.stderr)
    if not acc["lo"] > 0.5:
        print("WARNING: this reward model cannot be told from a coin on these pairs (its accuracy interval "
              "reaches 0.5): its reward gaps carry little signal, and MARS's allocation from them is close to "
              "random", file=sys.stderr)
    if not diff["lo"] > 0:
        print("WARNING: this reward model does not beat the length baseline on these pairs (RM − length interval "
              "reaches 0): much of what it ranks may be length", file=sys.stderr)
    return {"accuracy_lo": acc["lo"], "accuracy_hi": acc["hi"], "length_baseline": length["mean"],
            "rm_minus_length": diff["mean"], "rm_minus_length_lo": diff["lo"], "rm_minus_length_hi": diff["hi"]}


def cmd_score(args) -> int:
    df, _, rc, rr = _gaps(args)
    out = pd.DataFrame({"pair_id": df.pair_id, "reward_chosen": rc, "reward_rejected": rr, "reward_gap": rc - rr})
    _write_csv(out, args.out)
    print(json.dumps({k: round(float(v), 4) for k, v in {**rm_metrics(rc, rr), **not_a_coin(df, rc, rr)}.items()}))
    return 0


UNIFORM_OVERLAP = 0.95     # share of B placed where uniform places it, above which MARS is uniform in effect


def _tau(args, arm, gaps) -> float | None:
    """--tau, or the τ that reaches --target-ess on these gaps (`mars.tau_for_ess`), or the config default."""
    if arm.tau_field is None:
        return None
    if args.target_ess is not None:
        tau = tau_for_ess(gaps, args.target_ess, arm.q, budget=args.budget, seed=args.seed)
        print(f"--target-ess {args.target_ess:g}: τ = {tau:.4g}", file=sys.stderr)
        return tau
    return args.tau if args.tau is not None else getattr(MarsConfig(), arm.tau_field)


def _budgets(args, gaps):
    arm = strategies.allocators()[args.version]
    q = arm.q(gaps, _tau(args, arm, gaps))
    try:
        b = (capped_budgets(q, args.budget, args.max_per_source, seed=args.seed) if args.max_per_source
             else integer_budgets(q, args.budget, seed=args.seed))
    except ValueError as e:
        raise DataError(f"{e}: raise --max-per-source or lower --budget") from None
    if args.budget == 0:
        print("WARNING: --budget 0: no synthetic pairs (the output is the input)", file=sys.stderr)
        return q, b
    c = concentration(b)
    print(f"allocation ({args.version}): {int(b.sum())} synthetic pairs over {int((b > 0).sum())} of {len(b)} pairs, "
          f"max {int(b.max())} on one pair, top 10 % of pairs get {c['top10_share']:.0%}, Gini {c['gini']:.2f}, "
          f"ESS/N {c['ess_over_n']:.2f}", file=sys.stderr)
    if c["ess_over_n"] < CONCENTRATED:
        print(f"WARNING: the allocation is concentrated (ESS/N {c['ess_over_n']:.2f} < {CONCENTRATED}): few pairs get most "
              f"of the budget, and near-copies of them dominate the augmented set. Lower --tau, or cap b_i with "
              f"--max-per-source.", file=sys.stderr)
    uniform = integer_budgets(np.full(len(b), 1 / len(b)), args.budget, seed=args.seed)
    overlap = float(np.minimum(b, uniform).sum() / args.budget)
    if arm.tau_field is not None and overlap >= UNIFORM_OVERLAP:
        print(f"WARNING: this allocation cannot be told from uniform: {overlap:.0%} of the budget goes where "
              f"--version uniform puts it (the reward gaps are too flat for this τ). A comparison with uniform "
              f"will be null by construction; raise --tau or choose a concentration with --target-ess (e.g. 0.5).",
              file=sys.stderr)
    return q, b


def cmd_allocate(args) -> int:
    df, _, rc, rr = _gaps(args)
    q, b = _budgets(args, rc - rr)
    _write_csv(pd.DataFrame({"pair_id": df.pair_id, "reward_gap": rc - rr, "q": q, "budget": b}), args.out)
    print(f"budget {int(b.sum())} over {len(b)} pairs; max {int(b.max())}, pairs with none {int((b == 0).sum())} -> {args.out}")
    return 0


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


def cmd_augment(args) -> int:
    df, _, rc, rr = _gaps(args)
    q, b = _budgets(args, rc - rr)
    op = ParaphraseOp(n=args.n_paraphrases, seed=args.seed, paraphrase_prompt=args.paraphrase_prompt)
    syn, made = draw_exact(df, q, b, op, args.seed)
    extra = [c for c in df.columns if c not in ("prompt", "chosen", "rejected", "pair_id", "source_id", "origin")]
    orig = df.assign(origin="original", source_pair_id=df.pair_id)
    src = df.set_index("pair_id")[extra]
    syn = syn.assign(origin="synthetic", source_pair_id=syn.source_id)[["prompt", "chosen", "rejected", "pair_id", "origin",
                                                                         "source_pair_id"]].join(src, on="source_pair_id")
    cols = ["prompt", "chosen", "rejected", "pair_id", "origin", "source_pair_id", *extra]
    out = pd.concat([orig[cols], syn[cols]], ignore_index=True)
    ds = args.dataset_out or dataset_dir(args.out)
    to_trl_jsonl(out, args.out, extra=cols[3:])
    save_dataset(out, ds)
    print(f"{len(df)} original + {len(syn)} synthetic pairs -> {args.out} (JSONL; origin, source_pair_id and the "
          f"input's other columns kept) and {ds} (datasets.load_from_disk)")
    short = int(b.sum()) - len(syn)
    if short:
        none = int(((made == 0) & (b > 0)).sum())
        print(f"WARNING: {short} of the {int(b.sum())} synthetic pairs asked for ({short / int(b.sum()):.0%}) could not "
              f"be made, after re-spending what {none} pair(s) with no paraphrasable text could not use on the pairs "
              f"that could: too few texts admit distinct paraphrases (WordNet: English words with synonyms). "
              f"Lower --budget, or paraphrase the prompt too (--paraphrase-prompt).", file=sys.stderr)
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the description's layout and shows every option's default."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mars", description=__doc__, formatter_class=_Formatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, rm=True):
        p.add_argument("--pairs", required=True, type=Path, help="JSONL/CSV/Parquet with prompt, chosen, rejected")
        p.add_argument("--hh", action="store_true", help="the file holds HH-RLHF dialogues (chosen/rejected)")
        p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                       help="malformed rows: stop with an error naming the row (default) or skip and count them")
        p.add_argument("--max-length", type=int, default=256, help="encoder tokens (left-truncated)")
        p.add_argument("--seed", type=int, default=0, help="random seed (training, allocation rounding, the draw)")
        p.add_argument("--out", required=True, type=Path, help="output file (train: the reward-model folder)")
        if rm:
            p.add_argument("--rm", required=True, type=Path,
                           help="reward model: a folder written by `mars train`, or any local Hugging Face "
                                "AutoModelForSequenceClassification folder with one output (TRL's RewardTrainer saves one)")
            p.add_argument("--template", choices=["auto", "concat", "mars"], default="auto",
                           help="Hugging Face RMs: text scored — concat: prompt + response (TRL's convention); mars: "
                                "'Human: x / Assistant: y'; auto: mars for folders our fine-tuning wrote, else concat")

    t = sub.add_parser("train", help="train a linear (or MLP) head RM on frozen MiniLM features", formatter_class=_Formatter)
    common(t, rm=False)
    t.add_argument("--epochs", type=int, default=5, help="passes over the pairs")
    t.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate of the head")
    t.add_argument("--hidden", type=int, default=0, help="0 = linear head")
    s = sub.add_parser("score", help="reward gaps of every pair, plus accuracy / AUC / SNR", formatter_class=_Formatter)
    common(s)
    for name, hlp in (("allocate", "the MARS budget per pair"), ("augment", "MARS-augmented TRL JSONL")):
        p = sub.add_parser(name, help=hlp, formatter_class=_Formatter)
        common(p)
        p.add_argument("--budget", type=int, required=True, help="synthetic pairs B (>= 0)")
        p.add_argument("--version", choices=sorted(strategies.allocators()), default="v1",
                       help="v1 (= mars_v1): q ∝ exp(−τ|gap|); v2 (= mars_v2): q ∝ exp(−τ·gap); uniform: the same B "
                            "spread evenly (the baseline); any registered strategy with an allocation rule")
        p.add_argument("--tau", type=float, default=None,
                       help="allocation temperature (> 0); None: the strategy's config default (v1 0.1, v2 0.5)")
        p.add_argument("--target-ess", type=float, default=None,
                       help="choose τ so that the budgets' ESS/N is this (0-1; 1 = uniform, 0.5 = half the pairs' "
                            "worth); instead of --tau")
        p.add_argument("--max-per-source", type=int, default=None,
                       help="cap on synthetic pairs per original pair (the excess goes to the others by q)")
        if name == "augment":
            p.add_argument("--n-paraphrases", type=int, default=5, help="WordNet paraphrases per text")
            p.add_argument("--dataset-out", type=Path, default=None,
                           help="folder for the datasets copy (save_to_disk); default: OUT's name + _dataset")
            p.add_argument("--paraphrase-prompt", action="store_true",
                           help="paraphrase the prompt too (authors); off: only chosen and rejected, as the notebooks")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "budget", 0) is not None and getattr(args, "budget", 0) < 0:
        print(f"error: --budget must be >= 0, got {args.budget}", file=sys.stderr)
        return 2
    if getattr(args, "tau", None) is not None and not args.tau > 0:
        print(f"error: --tau must be > 0, got {args.tau}", file=sys.stderr)
        return 2
    for opt in ("tau", "target_ess"):
        if getattr(args, opt, None) is not None and strategies.allocators()[args.version].tau_field is None:
            print(f"error: --{opt.replace('_', '-')} has no meaning with --version {args.version}", file=sys.stderr)
            return 2
    if getattr(args, "target_ess", None) is not None and (args.tau is not None or not 0 < args.target_ess < 1):
        print("error: --target-ess takes a value in (0, 1) and replaces --tau (give one of them)", file=sys.stderr)
        return 2
    if getattr(args, "max_per_source", None) is not None and args.max_per_source < 1:
        print(f"error: --max-per-source must be >= 1, got {args.max_per_source}", file=sys.stderr)
        return 2
    try:
        return {"train": cmd_train, "score": cmd_score, "allocate": cmd_allocate, "augment": cmd_augment}[args.cmd](args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
