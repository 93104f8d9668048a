"""Both reward-model regimes at full scale on a GPU: every strategy × ≥ 10 seeds × every offline
track, with a fine-tuned transformer RM (`rm="full"`), several runs at once on one card.

    # here (CPU): every track's pairs, paraphrase pool, self-training pool and policy samples as plain files
    .venv/bin/python bench/gpu_regimes.py prepare --bundle .gpu_bundle
    # on the GPU machine (needs only torch, transformers, pandas, pyarrow): 4 workers share the card
    python3 bench/gpu_regimes.py run --bundle .gpu_bundle --model .gpu_bundle/minilm --jobs 4 \\
        --seeds 0 1 2 3 4 5 6 7 8 9 --out results/gpu_regimes/minilm
    # all-mpnet-base-v2 (110M parameters, the closest offline stand-in for DeBERTa-v3-base): --model <its folder>

The schedule is the cpu profile's (the authors' v1: 5 rounds × 1 epoch, B = 2 × N, paraphrase pool
of 5 × 5 per source; `--rounds` etc. change it), the RM is `finetune.FinetunedRewardModel` through
the same rounds loop as the notebooks, and on the gold task each seed redraws the train labels
(`gold_task.redraw_labels`), as notebook 03 does. Every (track, strategy, seed) writes its per-pair
test outcomes and history under `--out/<track>/` and is skipped when present: an interrupted or
sharded run resumes (`--shard i/n` splits the jobs over several machines). `claims.write_claims`
reads `results/gpu_regimes/*/` into `results/claims.csv` as the `full` regime.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TRACKS = ("gold", "chitchat", "hh-rlhf")


def prepare(a) -> None:
    """Texts only (no features): the fine-tuned RM reads text. Uses the cpu profile's settings; builds the
    tracks of --tracks, and the self-training and policy pools only when --strategies needs them."""
    import shutil

    from mars_lib.pipeline import arms, context
    from mars_lib.synthetic import pools
    from mars_lib.pipeline.assets import minilm_dir
    from mars_lib.pipeline.config import RunConfig
    cfg = RunConfig.resolve("cpu", seeds=[0])
    ctx = context.setup(cfg)
    out = Path(a.bundle)
    sets = {"gold": (ctx.pairs("train"), {"test": ctx.pairs("test")})} if "gold" in a.tracks else {}
    sets.update({t: arms.human_track(ctx, t) for t in cfg.human_track if t in a.tracks})
    for track, (base, evals) in sets.items():
        d = out / track
        d.mkdir(parents=True, exist_ok=True)
        base.df.to_parquet(d / "base.parquet")
        evals["test"].df.to_parquet(d / "test.parquet")
        pools.labelled_pool_frame(cfg, base).to_parquet(d / "pool.parquet")       # texts: the RM reads text
        if track == "gold" and "self_train" in a.strategies:
            pools.resample_with(ctx, base, "rm")[0].df.to_parquet(d / "self_pool.parquet")
        if track == "gold" and "won_pace" in a.strategies:
            pools.policy_candidates(ctx, base).df.to_parquet(d / "policy.parquet")
    shutil.copytree(minilm_dir(), out / "minilm", dirs_exist_ok=True)
    (out / "bundle.json").write_text(json.dumps({"config": cfg.to_dict(), "tracks": list(sets)}, default=str, indent=1))
    print(f"bundle in {out}: {', '.join(sets)} + the MiniLM backbone")


def _text_pairs(df: pd.DataFrame):
    from mars_lib.reward_models.features import Pairs
    z = np.zeros((len(df), 0), np.float32)
    return Pairs(df.reset_index(drop=True), z, z)


def _jobs(a) -> list[tuple[str, str, int]]:
    # seed-major: a run stopped early leaves whole seeds of every track and arm (a paired design), not one track
    jobs = [(t, s, seed) for seed in a.seeds for t in a.tracks for s in a.strategies
            if not (t != "gold" and s in ("won_pace", "self_train"))]
    i, n = (int(x) for x in a.shard.split("/"))
    return [j for k, j in enumerate(jobs) if k % n == i]


def run_jobs(a, jobs) -> None:
    """One worker: its jobs in order, each written when done (per-pair parquet + history csv)."""
    import dataclasses

    import torch

    from mars_lib.evaluation.claims import per_pair_outcomes
    from mars_lib.pipeline.config import RunConfig
    from mars_lib.pipeline.context import model_factory
    from mars_lib.data.gold_task import redraw_labels
    from mars_lib.baselines import Candidates
    from mars_lib.mars import Sources
    from mars_lib.pipeline.arms import run_strategy
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, a.jobs)))
    cfg = RunConfig.resolve("cpu", device=a.device, rm="full", rm_model=str(a.model), batch_size=a.batch,
                            grad_accum=a.accum, ft_lr=a.lr, rounds=a.rounds, max_length=a.max_length,
                            precision=a.precision, track_curvature=False, human_track="off",
                            eval_every_round=not a.eval_last_only,
                            **{k: v for k, v in (("tau_v1", a.tau_v1), ("tau_v2", a.tau_v2)) if v is not None})
    make = model_factory(cfg)
    for track, s, seed in jobs:
        d = Path(a.bundle) / track
        out = Path(a.out) / track
        done = out / f"per_pair_{s}_seed{seed}.parquet"
        if done.exists():
            continue
        base, pool, test = (_text_pairs(pd.read_parquet(d / f)) for f in ("base.parquet", "pool.parquet", "test.parquet"))
        if a.n_base:          # a smaller run (CPU): a seeded subset of the base pairs and their pools
            base = base.take(np.sort(np.random.default_rng(0).permutation(len(base.df))[:a.n_base]))
            pool = pool.take(np.flatnonzero(pool.df.source_id.isin(set(base.df.pair_id))))
        if a.n_test:          # a seeded subset of the test pairs
            test = test.take(np.sort(np.random.default_rng(1).permutation(len(test.df))[:a.n_test]))
        if track == "gold" and cfg.seed_labels:
            base, pool, _ = redraw_labels(base, pool, cfg.beta, (cfg.label_seed, seed))
        policy = self_pool = None
        if s == "won_pace":
            ps = pd.read_parquet(d / "policy.parquet")
            ps = ps[ps.prompt_id.isin(set(base.df.prompt_id))].reset_index(drop=True)
            policy = Candidates(ps, np.zeros((len(ps), 0), np.float32))
        if s == "self_train":
            self_pool = _text_pairs(pd.read_parquet(d / "self_pool.parquet"))
        t0 = time.perf_counter()
        r = run_strategy(s, base, Sources(pool, policy=policy, self_pool=self_pool), {"test": test},
                         dataclasses.replace(cfg, seeds=(seed,)), seed, make_model=make)
        out.mkdir(parents=True, exist_ok=True)
        r.history.assign(track=track, rm="full", seconds=time.perf_counter() - t0,
                         train_pairs_per_s=r.model.stats.train_pairs_per_s).to_csv(out / f"history_{s}_seed{seed}.csv",
                                                                                   index=False)
        per_pair_outcomes({(s, seed): r}, test, track, "full").to_parquet(done)      # written last: marks the job done
        acc = r.history.query("split == 'test' and metric == 'accuracy'").value.iloc[-1]
        print(f"{track:8s} {s:12s} seed {seed}: accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)


def run(a, argv: list[str]) -> None:
    import platform
    import subprocess

    import torch
    jobs = _jobs(a)
    a.out.mkdir(parents=True, exist_ok=True)
    hw = torch.cuda.get_device_name(0) if a.device.startswith("cuda") and torch.cuda.is_available() else \
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k not in ("cmd", "worker")}
    from mars_lib.pipeline.tables import git_state
    (a.out / "run.json").write_text(json.dumps({"settings": settings, "hardware": hw, "torch": torch.__version__,
                                                "git": git_state(),
                                                "command": "bench/gpu_regimes.py " + " ".join(argv)}, indent=1))
    print(f"{len(jobs)} jobs ({', '.join(a.tracks)} × {len(a.strategies)} strategies × seeds {a.seeds}), {a.jobs} workers",
          flush=True)
    if a.jobs == 1:
        return run_jobs(a, jobs)
    procs = []
    for w in range(a.jobs):       # worker w takes every jobs-th job of this shard
        cmd = [sys.executable, __file__, "worker", *argv[1:], "--worker", f"{w}/{a.jobs}"]
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"worker exit codes {codes}")


# The fine-tuned regime at the scale 2 CPU cores afford in under an hour (`bench/gpu_regimes.py cpu`):
# MiniLM fine-tuned on 32 base pairs of gold and hh-rlhf, 5 seeds, the compute-matched arms and MARS at the
# authors' τ and at a realised ESS/N of 0.5 (τ chosen each round from the RM's own gaps).
CPU_PRESET = {"device": "cpu", "n_base": 32, "n_test": 200, "rounds": 2, "max_length": 128, "batch": 8, "accum": 1,
              "lr": 5e-5, "eval_last_only": True, "seeds": [0, 1, 2, 3, 4], "tracks": ["gold", "hh-rlhf"],
              "strategies": ["none_matched", "uniform_stratified", "mars_v1", "mars_v1@ess0.5", "mars_v2@ess0.5"],
              "out": ROOT / "results" / "cpu_regimes" / "minilm"}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line; with `cpu`, CPU_PRESET's values are the defaults (a flag still overrides one)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("prepare", "run", "worker", "cpu"),
                    help="cpu: prepare (when the bundle is missing) and run with CPU_PRESET; flags still override")
    ap.add_argument("--bundle", default=".gpu_bundle")
    ap.add_argument("--model", type=Path, help="backbone folder (safetensors; run)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_regimes" / "minilm")
    ap.add_argument("--tracks", nargs="+", default=list(TRACKS))
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="default: every strategy of the package; NAME@TAU fixes an arm's τ (mars_v1@2 beside "
                         "mars_v1), NAME@essX chooses τ each round for a realised ESS/N of X (mars_v1@ess0.5)")
    ap.add_argument("--tau-v1", type=float, default=None, help="τ of mars_v1 (default: the cpu profile's, 0.1)")
    ap.add_argument("--tau-v2", type=float, default=None, help="τ of mars_v2 (default: the cpu profile's, 0.5)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes sharing the device")
    ap.add_argument("--shard", default="0/1", help="i/n: this machine's share of the jobs")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-base", type=int, default=None, help="a seeded subset of N base pairs per track (CPU runs)")
    ap.add_argument("--n-test", type=int, default=None, help="a seeded subset of N test pairs per track (CPU runs)")
    ap.add_argument("--eval-last-only", action="store_true", help="score the test set after the last round only")
    a = ap.parse_args(argv)
    if a.cmd == "cpu":                        # the named CPU profile: its settings are the defaults
        ap.set_defaults(**CPU_PRESET)
        a = ap.parse_args(argv)
        a.model = a.model or Path(a.bundle) / "minilm"
    from mars_lib import strategies
    a.strategies = [strategies.get(s).name for s in (a.strategies or strategies.DEFAULT)]   # clear error if unknown
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse(argv)
    if a.cmd == "prepare":
        return prepare(a)
    if a.cmd == "cpu":
        if not (Path(a.bundle) / "bundle.json").exists():
            prepare(a)
        return run(a, argv)
    if a.cmd == "run":
        return run(a, argv)
    w, n = (int(x) for x in a.worker.split("/"))
    run_jobs(a, _jobs(a)[w::n])


if __name__ == "__main__":
    main()
