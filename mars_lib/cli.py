"""Command line for practitioners: MARS on your own prompt/chosen/rejected data.

    python -m mars_lib train    --pairs train.jsonl --out my_rm/            # linear head on frozen MiniLM features
    python -m mars_lib score    --pairs test.jsonl  --rm my_rm/ --out scored.csv   # reward gaps + metrics
    python -m mars_lib allocate --pairs train.jsonl --rm my_rm/ --budget 2000 --version v1 --out alloc.csv
    python -m mars_lib augment  --pairs train.jsonl --rm my_rm/ --budget 2000 --version v2 --out augmented.jsonl

Input: JSONL / CSV / Parquet with prompt, chosen, rejected (or HH-RLHF dialogues with --hh).
Everything runs offline on the shipped MiniLM encoder; features are cached by content.
`augment` writes TRL-style prompt/chosen/rejected JSONL: the original pairs followed by b_i WordNet
paraphrase pairs per source, b = largest-remainder(B · softmax(−τ g(Δ))) (v1: g = |Δ|, τ = 0.1;
v2: g = Δ, τ = 0.5 unless --tau is given).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

VERSIONS = {"v1": ("abs", 0.1), "v2": ("signed", 0.5)}


def _load(args):
    from .data import load_hh_jsonl, load_pairs
    return load_hh_jsonl(args.pairs, on_error=args.on_error) if args.hh else load_pairs(args.pairs, on_error=args.on_error)


def _encoder(args):
    from .assets import cache_dir, set_offline
    from .features import Encoder, FeatureCache
    set_offline()
    return Encoder.minilm(FeatureCache(cache_dir() / "features.sqlite"), max_length=args.max_length)


def _load_rm(path: Path, dim: int):
    from safetensors.torch import load_file

    from .reward_model import HeadConfig, HeadRewardModel
    meta_p, w_p = path / "head.json", path / "head.safetensors"
    if not meta_p.exists() or not w_p.exists():
        raise SystemExit(f"error: {path} is not a reward model folder (need head.json and head.safetensors; "
                         "make one with `python -m mars_lib train`)")
    try:
        m = HeadRewardModel(dim, HeadConfig(**json.loads(meta_p.read_text())["head"]))
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"error: {meta_p} is not a head.json written by `python -m mars_lib train` "
                         f"({type(e).__name__}: {e}); retrain the reward model") from None
    try:
        m.load_state_dict(load_file(str(w_p)))
    except Exception as e:  # truncated or foreign file: say which and how to fix
        raise SystemExit(f"error: cannot load {w_p} ({type(e).__name__}: {e}); retrain with `python -m mars_lib train`")
    return m


def cmd_train(args) -> int:
    import dataclasses

    from safetensors.torch import save_file

    from .features import featurize
    from .io import atomic_write_json
    from .reward_model import HeadConfig, HeadRewardModel
    df = _load(args)
    pairs = featurize(df, _encoder(args))
    cfg = HeadConfig(hidden=args.hidden, lr=args.lr, epochs=args.epochs, seed=args.seed)
    m = HeadRewardModel(pairs.phi_c.shape[1], cfg)
    losses = m.fit(pairs.phi_c, pairs.phi_r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(out / "head.safetensors"))
    atomic_write_json(out / "head.json", {"head": dataclasses.asdict(cfg), "encoder": "all-MiniLM-L6-v2",
                                          "max_length": args.max_length, "trained_on": str(args.pairs),
                                          "pairs": len(df), "loss_per_epoch": losses})
    print(f"trained on {len(df)} pairs, final loss {losses[-1]:.4f} -> {out}")
    return 0


def _gaps(args):
    from .features import featurize
    df = _load(args)
    pairs = featurize(df, _encoder(args))
    rm = _load_rm(Path(args.rm), pairs.phi_c.shape[1])
    return (df, pairs, *rm.pair_scores(pairs))


def cmd_score(args) -> int:
    from .metrics import rm_metrics
    df, _, rc, rr = _gaps(args)
    out = pd.DataFrame({"pair_id": df.pair_id, "reward_chosen": rc, "reward_rejected": rr, "reward_gap": rc - rr})
    out.to_csv(args.out, index=False)
    print(json.dumps({k: round(v, 4) for k, v in rm_metrics(rc, rr).items()}))
    return 0


def _budgets(args, gaps):
    from .selection import allocation_probs, integer_budgets
    gap_kind, tau = VERSIONS[args.version]
    tau = args.tau if args.tau is not None else tau
    q = allocation_probs(gaps, tau, gap_kind)
    return q, integer_budgets(q, args.budget, seed=args.seed)


def cmd_allocate(args) -> int:
    df, _, rc, rr = _gaps(args)
    q, b = _budgets(args, rc - rr)
    pd.DataFrame({"pair_id": df.pair_id, "reward_gap": rc - rr, "q": q, "budget": b}).to_csv(args.out, index=False)
    print(f"budget {int(b.sum())} over {len(b)} pairs; max {int(b.max())}, pairs with none {int((b == 0).sum())} -> {args.out}")
    return 0


def cmd_augment(args) -> int:
    from .augment import ParaphraseOp, draw_on_demand
    from .data import to_trl_jsonl
    df, _, rc, rr = _gaps(args)
    _, b = _budgets(args, rc - rr)
    syn = draw_on_demand(df, b, ParaphraseOp(n=args.n_paraphrases, seed=args.seed), round_seed=0)
    out = pd.concat([df[["prompt", "chosen", "rejected"]], syn[["prompt", "chosen", "rejected"]]], ignore_index=True)
    to_trl_jsonl(out, args.out)
    print(f"{len(df)} original + {len(syn)} synthetic pairs (shortfall {syn.attrs['shortfall']}) -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m mars_lib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, rm=True):
        p.add_argument("--pairs", required=True, type=Path, help="JSONL/CSV/Parquet with prompt, chosen, rejected")
        p.add_argument("--hh", action="store_true", help="the file holds HH-RLHF dialogues (chosen/rejected)")
        p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                       help="malformed rows: stop with an error naming the row (default) or skip and count them")
        p.add_argument("--max-length", type=int, default=256, help="encoder tokens (left-truncated)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", required=True, type=Path)
        if rm:
            p.add_argument("--rm", required=True, type=Path, help="folder written by `train`")

    t = sub.add_parser("train", help="train a linear (or MLP) head RM on frozen MiniLM features")
    common(t, rm=False)
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--lr", type=float, default=1e-2)
    t.add_argument("--hidden", type=int, default=0, help="0 = linear head")
    s = sub.add_parser("score", help="reward gaps of every pair, plus accuracy / AUC / SNR")
    common(s)
    for name, hlp in (("allocate", "the MARS budget per pair"), ("augment", "MARS-augmented TRL JSONL")):
        p = sub.add_parser(name, help=hlp)
        common(p)
        p.add_argument("--budget", type=int, required=True, help="synthetic pairs B (>= 0)")
        p.add_argument("--version", choices=sorted(VERSIONS), default="v1", help="v1: |gap|, v2: signed gap")
        p.add_argument("--tau", type=float, default=None, help="allocation temperature (> 0; default v1 0.1, v2 0.5)")
        if name == "augment":
            p.add_argument("--n-paraphrases", type=int, default=5)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DataError
    if getattr(args, "budget", 0) is not None and getattr(args, "budget", 0) < 0:
        print(f"error: --budget must be >= 0, got {args.budget}", file=sys.stderr)
        return 2
    if getattr(args, "tau", None) is not None and not args.tau > 0:
        print(f"error: --tau must be > 0, got {args.tau}", file=sys.stderr)
        return 2
    try:
        return {"train": cmd_train, "score": cmd_score, "allocate": cmd_allocate, "augment": cmd_augment}[args.cmd](args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
