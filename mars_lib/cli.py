"""Command line for practitioners: MARS on your own prompt/chosen/rejected data.

    mars train    --pairs train.jsonl --out my_rm/            # or: python -m mars_lib train ...
    mars score    --pairs test.jsonl  --rm my_rm/ --out scored.csv   # reward gaps + metrics
    mars allocate --pairs train.jsonl --rm my_rm/ --budget 2000 --version v1 --out alloc.csv
    mars augment  --pairs train.jsonl --rm my_rm/ --budget 2000 --version v2 --out augmented.jsonl
    mars compare  --pairs train.jsonl --test test.jsonl --out cmp/ [--dry-run]   # does MARS help here?

Every command is a thin layer over `mars_lib.api` (the same functions on DataFrames / Datasets).
`compare` trains none_matched, uniform, MARS v1 and MARS v2 (or --arms) for --rounds rounds and
--seeds seeds, and prints the paired differences on the held-out pairs with their 95 % intervals,
MDE and verdicts (held / not held / equivalent / inconclusive), the realised ESS/N per arm, and the
time taken; it resumes a killed run from --out.

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
import gzip
import json
import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd
from datasets import Dataset

from mars_lib import api, strategies
from mars_lib.data.pairs import DataError, load_hh_jsonl, load_pairs, to_trl_jsonl
from mars_lib.evaluation.metrics import rm_metrics
from mars_lib.pipeline.compare import DEFAULT_ARMS, REGIMES, summary as compare_summary
from mars_lib.pipeline.config import ConfigError
from mars_lib.pipeline.io import atomic_write_text


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
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            first = json.loads(f.readline())
        return all("Assistant:" in str(first.get(k, "")) for k in ("chosen", "rejected"))
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def cmd_train(args) -> int:
    api.train(_load(args), args.out, regime=args.regime, model=args.model, epochs=args.epochs, lr=args.lr,
              hidden=args.hidden, batch_size=args.batch_size, max_length=args.max_length, device=args.device,
              precision=args.precision, seed=args.seed, padding_free=args.padding_free)
    return 0


def _write_csv(df: pd.DataFrame, path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def dataset_dir(out: Path) -> Path:
    """Where `augment` saves the `datasets` copy of its JSONL: augmented.jsonl -> augmented_dataset/."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + "_dataset")


def save_dataset(df: pd.DataFrame, path: Path) -> Path:
    """`datasets.Dataset.save_to_disk`, built beside the target and renamed into place when complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _rm_args(args) -> dict:
    return {"rm": args.rm, "max_length": args.max_length, "template": args.template}


def _alloc_args(args) -> dict:
    return {"budget": args.budget, "version": args.version, "tau": args.tau, "target_ess": args.target_ess,
            "max_per_source": args.max_per_source, "seed": args.seed}


def cmd_score(args) -> int:
    args.rm = api.load_rm(args.rm, args.max_length, args.template)   # a wrong folder fails before any pair is read
    df = _load(args)
    out = api.score(df, **_rm_args(args))
    _write_csv(out, args.out)
    rc, rr = out.reward_chosen.to_numpy(), out.reward_rejected.to_numpy()
    print(json.dumps({k: round(float(v), 4) for k, v in {**rm_metrics(rc, rr), **api.not_a_coin(df, rc, rr)}.items()}))
    return 0


def cmd_allocate(args) -> int:
    args.rm = api.load_rm(args.rm, args.max_length, args.template)   # a wrong folder fails before any pair is read
    out = api.allocate(_load(args), **_rm_args(args), **_alloc_args(args))
    _write_csv(out, args.out)
    b = out.budget
    print(f"budget {int(b.sum())} over {len(b)} pairs; max {int(b.max())}, pairs with none {int((b == 0).sum())} -> {args.out}")
    return 0


def cmd_augment(args) -> int:
    args.rm = api.load_rm(args.rm, args.max_length, args.template)   # a wrong folder fails before any pair is read
    out = api.augment(_load(args), **_rm_args(args), **_alloc_args(args), n_paraphrases=args.n_paraphrases,
                      paraphrase_prompt=args.paraphrase_prompt)
    ds = args.dataset_out or dataset_dir(args.out)
    to_trl_jsonl(out, args.out, extra=list(out.columns[3:]))
    save_dataset(out, ds)
    n_syn = int((out.origin == "synthetic").sum())
    print(f"{len(out) - n_syn} original + {n_syn} synthetic pairs -> {args.out} (JSONL; origin, source_pair_id and the "
          f"input's other columns kept) and {ds} (datasets.load_from_disk)")
    return 0


def cmd_compare(args) -> int:
    train = _load(args)
    test = _load(argparse.Namespace(**{**vars(args), "pairs": args.test}))
    settings = {k: v for k, v in (("tau_v1", args.tau_v1), ("tau_v2", args.tau_v2), ("epochs_per_round", args.epochs),
                                  ("lr", args.lr), ("ft_lr", args.ft_lr), ("batch_size", args.batch_size),
                                  ("n_boot", args.n_boot)) if v is not None}
    res = api.compare(train, test, arms=tuple(args.arms), seeds=tuple(args.seeds), rounds=args.rounds,
                      budget=args.budget, regime=args.regime, model=args.model, out=args.out,
                      dry_run=args.dry_run, max_length=args.max_length, device=args.device, precision=args.precision,
                      **settings)
    if args.dry_run:
        print(json.dumps(res, indent=1))
        left = res["jobs"] - res["jobs_done"]
        print(f"dry run: {left} of {res['jobs']} (arm, seed) jobs to train, {res['rounds']} rounds each, "
              f"{res['optimizer_steps']} optimizer steps in all; nothing was trained", file=sys.stderr)
        return 0
    print("\n".join(compare_summary(res)))
    print(f"tables -> {args.out}/claims.csv, accuracy.csv, concentration.csv, timing.csv")
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

    t = sub.add_parser("train", help="train a reward model: a head on frozen MiniLM features, or fine-tune one",
                       formatter_class=_Formatter)
    common(t, rm=False)
    t.add_argument("--regime", choices=REGIMES, default="head",
                   help="head: linear / MLP head on frozen MiniLM features; full / lora: fine-tune --model and write a "
                        "Hugging Face folder (LoRA merged) that TRL and `mars score` read")
    t.add_argument("--model", default=None, help="full / lora: a local AutoModelForSequenceClassification folder or "
                                                 "encoder checkpoint; %(default)s = the shipped MiniLM")
    t.add_argument("--epochs", type=int, default=None, help="passes over the pairs; %(default)s = head 5, full / lora 1")
    t.add_argument("--lr", type=float, default=None, help="AdamW learning rate; %(default)s = head 1e-2, full / lora 2e-5")
    t.add_argument("--hidden", type=int, default=0, help="head: 0 = linear head, else an MLP of this width")
    t.add_argument("--batch-size", type=int, default=16, help="full / lora: pairs per optimizer step")
    t.add_argument("--device", default="cpu", help="full / lora: cpu, cuda, cuda:1, ...")
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="full / lora: bf16 needs CUDA")
    t.add_argument("--padding-free", action="store_true", help="full / lora, BERT-family models: pack each micro-batch "
                                                               "into padding-free rows (same loss, no padding computed)")
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
    _compare_parser(sub)
    return ap


def _compare_parser(sub) -> None:
    c = sub.add_parser("compare", formatter_class=_Formatter,
                       help="does MARS help on my data? every arm x seed x round, paired intervals and verdicts")
    c.add_argument("--train", "--pairs", dest="pairs", required=True, type=Path,
                   help="training pairs (JSONL/CSV/Parquet: prompt, chosen, rejected)")
    c.add_argument("--test", required=True, type=Path, help="held-out pairs the arms are scored on (never trained on)")
    c.add_argument("--out", required=True, type=Path, help="folder: finished jobs (resumable) and the CSV tables")
    c.add_argument("--hh", action="store_true", help="both files hold HH-RLHF dialogues (chosen/rejected)")
    c.add_argument("--on-error", choices=["raise", "skip"], default="raise", help="malformed rows: stop, or skip and count")
    c.add_argument("--strategies", "--arms", dest="arms", nargs="+", default=list(DEFAULT_ARMS),
                   help="the arms (space- or comma-separated; any registered name, e.g. mars_v1@ess0.5: v1 with τ chosen "
                        f"each round for ESS/N 0.5); registered: {', '.join(strategies.names())}")
    c.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="training seeds (>= 2 for intervals)")
    c.add_argument("--rounds", type=int, default=2, help="T: score -> allocate -> augment -> retrain rounds")
    c.add_argument("--budget", type=int, default=None, help="synthetic pairs B per round; %(default)s = 2 x the training pairs")
    c.add_argument("--regime", choices=REGIMES, default="head",
                   help="head: linear head on frozen MiniLM features; full / lora: fine-tune --model")
    c.add_argument("--model", default=None, help="full / lora: a local AutoModelForSequenceClassification folder or "
                                                 "encoder checkpoint; %(default)s = the shipped MiniLM")
    c.add_argument("--epochs", type=int, default=None, help="epochs per round; %(default)s = the config's 1 (the authors')")
    c.add_argument("--lr", type=float, default=None, help="head learning rate; %(default)s = the config's 1e-2")
    c.add_argument("--ft-lr", type=float, default=None, help="full / lora learning rate; %(default)s = the config's 2e-5")
    c.add_argument("--batch-size", type=int, default=None, help="pairs per optimizer step; %(default)s = the config's 64")
    c.add_argument("--tau-v1", type=float, default=None, help="MARS v1's τ; %(default)s = the config's 0.1 (the authors')")
    c.add_argument("--tau-v2", type=float, default=None, help="MARS v2's τ; %(default)s = the config's 0.5")
    c.add_argument("--max-length", type=int, default=256, help="tokens per text (left-truncated)")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    c.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="fine-tuning precision (bf16: CUDA)")
    c.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples of the intervals; %(default)s = the config's 1000")
    c.add_argument("--dry-run", action="store_true", help="state the cost (jobs, rounds, steps, texts) and train nothing")


def _bad_args(args) -> str | None:
    """The first argument error found before any data is read, or None."""
    if getattr(args, "budget", None) is not None and args.budget < 0:
        return f"--budget must be >= 0, got {args.budget}"
    if getattr(args, "tau", None) is not None and not args.tau > 0:
        return f"--tau must be > 0, got {args.tau}"
    for opt in ("tau", "target_ess"):
        if getattr(args, opt, None) is not None and strategies.allocators()[args.version].tau_field is None:
            return f"--{opt.replace('_', '-')} has no meaning with --version {args.version}"
    if getattr(args, "target_ess", None) is not None and (args.tau is not None or not 0 < args.target_ess < 1):
        return "--target-ess takes a value in (0, 1) and replaces --tau (give one of them)"
    if getattr(args, "max_per_source", None) is not None and args.max_per_source < 1:
        return f"--max-per-source must be >= 1, got {args.max_per_source}"
    if args.cmd == "compare":
        args.arms = [a for x in args.arms for a in str(x).split(",") if a]
        try:
            args.seeds = [int(a) for x in args.seeds for a in str(x).split(",") if a]
        except ValueError:
            return f"--seeds takes integers (space- or comma-separated), got {' '.join(map(str, args.seeds))!r}"
        if args.rounds < 1:
            return f"--rounds must be >= 1, got {args.rounds}"
    return None


def _show(message, category, *_args, **_kw) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    bad = _bad_args(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    run = {"train": cmd_train, "score": cmd_score, "allocate": cmd_allocate, "augment": cmd_augment,
           "compare": cmd_compare}[args.cmd]
    with warnings.catch_warnings():
        warnings.simplefilter("always", api.MarsWarning)
        warnings.showwarning = _show                   # "WARNING: ..." on stderr, as it happens
        try:
            return run(args)
        except (DataError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
