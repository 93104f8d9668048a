"""The offline gold-judge task (docs/design.md §5.3): real prompts, sampled responses, a fixed
gold judge, and preference labels drawn from Bradley-Terry on the gold scores with noise.

This is the simulated-annotator set-up of Gao et al. 2022 and of the DPO paper's controlled
sentiment task: because the gold score of every response is known, every later stage (reward
model accuracy, synthetic-label fidelity, Best-of-N) can be measured against the truth.

Build once (regenerates from the generation cache, else generates; ~1 response/s on 2 cores):
    python -m mars_lib.data.gold_task build --judge gold3 --out data/gold_task_v3
The committed copy `data/gold_task_v3/` is what `load_task()` reads (seconds). Its manifest records
the exact command, the judge (`mars_lib.judges.task_judge`: gold3 shares no model with the policy or the
reward models), the time each stage took and the checksum of the responses file. Task v3 is task
v2's prompts and texts re-labelled by gold3 (`python -m mars_lib.data.relabel`, see the manifest).
"""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mars_lib.synthetic.generation import Decoding, GenerationCache, Generator, Request
from mars_lib.pipeline.io import atomic_write_json, repo_relative, write_parquet
from mars_lib.data.prompts import collect_prompts, split_prompts
from mars_lib.pipeline.tables import environment_info
from mars_lib.judges.task_judge import JUDGES, make_judge, MODULES
from mars_lib.pipeline.assets import cache_dir, set_offline
from mars_lib.pipeline.io import REPO_ROOT

# Decoding "arms": the same policy at several temperatures and repetition penalties, so response
# quality really varies (careful / default / wild / greedy-may-loop).
ARMS: dict[str, Decoding] = {
    "careful": Decoding(temperature=0.7, top_p=0.9, repetition_penalty=1.2, max_new_tokens=80),
    "default": Decoding(temperature=1.0, top_p=0.95, repetition_penalty=1.1, max_new_tokens=80),
    "wild": Decoding(temperature=1.3, top_p=1.0, repetition_penalty=1.0, max_new_tokens=80),
    "greedy": Decoding(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=80),
}

DEFAULT_TASK_DIR = REPO_ROOT / "data" / "gold_task_v3"


@dataclass
class TaskSpec:
    n_prompts: int = 800
    arms: tuple[str, ...] = ("careful", "default", "wild", "greedy")
    samples_per_arm: int = 1
    # 240 train / 80 val / 480 test prompts: ~1.4k train pairs (the paper's ~1k base-set regime) and
    # ~2.9k test pairs, so test-set sampling noise is small next to seed-to-seed variation.
    split_fractions: tuple[float, float, float] = (0.3, 0.1, 0.6)
    seed: int = 0


def response_requests(prompts: pd.DataFrame, spec: TaskSpec) -> list[tuple[str, str, Request]]:
    """(prompt_id, arm, request) for every response of the task."""
    out = []
    for pid, text in zip(prompts.prompt_id, prompts.prompt):
        for arm in spec.arms:
            for s in range(spec.samples_per_arm):
                out.append((pid, arm, Request(text, ARMS[arm], sample=s, seed=spec.seed)))
    return out


def generate_responses(spec: TaskSpec, gen: Generator) -> pd.DataFrame:
    """One row per response: prompt_id, prompt, source, category, split, arm, sample, response, finished, n_tokens."""
    prompts = split_prompts(collect_prompts(spec.n_prompts, spec.seed), spec.split_fractions, spec.seed)
    reqs = response_requests(prompts, spec)
    outs = gen.generate_with_info([r for _, _, r in reqs], desc="task responses")
    meta = prompts.set_index("prompt_id")
    rows = []
    for (pid, arm, req), (text, finished) in zip(reqs, outs):
        m = meta.loc[pid]
        rows.append({"prompt_id": pid, "prompt": m.prompt, "source": m.source, "category": m.category,
                     "split": m.split, "arm": arm, "sample": req.sample, "response": text,
                     "finished": finished})
    df = pd.DataFrame(rows)
    df.insert(0, "response_id", [f"{p}-{a}-{s}" for p, a, s in zip(df.prompt_id, df.arm, df["sample"])])
    return df


POLICY_SAMPLE_OFFSET = 1000     # sample index of policy samples: never collides with the task's own responses


def generate_policy_samples(spec: TaskSpec, gen: Generator, n: int, split: str = "train",
                            arm: str = "default") -> pd.DataFrame:
    """n fresh policy samples per prompt of `split` (the `arm` decoding), for Pace et al.'s West-of-N
    and the resample operator: prompt_id, prompt, split, sample, response, finished. Cached like
    every generation, so the command resumes where it stopped."""
    prompts = split_prompts(collect_prompts(spec.n_prompts, spec.seed), spec.split_fractions, spec.seed)
    prompts = prompts[prompts.split == split]
    reqs = [(pid, text, Request(text, ARMS[arm], sample=POLICY_SAMPLE_OFFSET + s, seed=spec.seed))
            for pid, text in zip(prompts.prompt_id, prompts.prompt) for s in range(n)]
    outs = gen.generate_with_info([r for *_, r in reqs], desc=f"policy samples ({split})")
    return pd.DataFrame([{"prompt_id": pid, "prompt": text, "split": split, "arm": arm, "sample": r.sample,
                          "response": t, "finished": f, "n_tokens": len(gen.tok(t, add_special_tokens=False).input_ids)}
                         for (pid, text, r), (t, f) in zip(reqs, outs)])


def write_policy_samples(df: pd.DataFrame, task_dir: Path, command: str, seconds: float,
                         judge_name: str | None = None) -> Path:
    sha = write_parquet(df, task_dir / "policy_samples.parquet")
    atomic_write_json(task_dir / "policy_samples.json", {
        "sha256": sha, "n_rows": len(df), "n_prompts": int(df.prompt_id.nunique()),
        "judged": "gold" in df, "judge": judge_name if "gold" in df else None, "regenerate": command,
        "seconds": round(seconds, 1)})
    return task_dir / "policy_samples.parquet"


def load_policy_samples(task_dir: str | Path = DEFAULT_TASK_DIR) -> pd.DataFrame:
    """The committed policy samples of a task folder, checksum-verified."""
    import hashlib
    task_dir = Path(task_dir)
    p, meta = task_dir / "policy_samples.parquet", task_dir / "policy_samples.json"
    if not p.exists() or not meta.exists():
        raise TaskError(f"{task_dir}: no policy samples. Generate them with: python -m mars_lib.data.gold_task samples "
                        f"--out {task_dir}")
    data = p.read_bytes()
    if hashlib.sha256(data).hexdigest() != json.loads(meta.read_text())["sha256"]:
        raise TaskError(f"{p}: checksum does not match policy_samples.json; restore it from git or regenerate it")
    return pd.read_parquet(p)


def judge_responses(responses: pd.DataFrame, judge) -> pd.DataFrame:
    """Adds the six facet columns and `gold` (see mars_lib.judges.gold1)."""
    fac = judge.facets(responses.prompt.tolist(), responses.response.tolist(), responses.finished.tolist())
    out = pd.concat([responses.reset_index(drop=True), fac.add_prefix("facet_")], axis=1)
    out["gold"] = judge.combine(fac)
    return out


def build_task_folder(spec: TaskSpec, responses: pd.DataFrame, out: Path, judge_name: str = "gold3", judge=None,
                      generation: dict | None = None, relabelled_from: dict | None = None) -> Path:
    """Judge the responses with `judge_name` (`task_judges`; `judge` = that judge already loaded) and
    write `responses.parquet` + `manifest.json` (with sha256) atomically."""
    import time

    t0 = time.perf_counter()
    judged = judge_responses(responses, judge or make_judge(judge_name))
    sha = write_parquet(judged, out / "responses.parquet")
    atomic_write_json(out / "manifest.json", {
        "task": "gold-judge task", "version": out.name, "spec": asdict(spec),
        "judge": judge_name, "judge_id": JUDGES[judge_name], "judge_module": MODULES[judge_name],
        "arms": {k: asdict(ARMS[k]) for k in spec.arms},
        "n_responses": len(judged), "n_prompts": int(judged.prompt_id.nunique()),
        "responses_sha256": sha,
        "regenerate": f"python -m mars_lib.data.gold_task build --n-prompts {spec.n_prompts} "
                      f"--samples-per-arm {spec.samples_per_arm} --split-fractions "
                      f"{' '.join(str(f) for f in spec.split_fractions)} --seed {spec.seed} --judge {judge_name} "
                      f"--out {repo_relative(out)}",
        "relabelled_from": relabelled_from,   # how this folder was actually built, when not by `regenerate`
        "generation": generation,  # seconds, responses generated vs taken from the cache, tokens/s
        "judge_seconds": round(time.perf_counter() - t0, 1), "environment": environment_info()})
    return out


class TaskError(RuntimeError):
    pass


def load_responses(path: str | Path = DEFAULT_TASK_DIR, verify: bool = True) -> pd.DataFrame:
    """The judged responses of a task folder, checksum-verified against its manifest."""
    import hashlib
    path = Path(path)
    man_p, data_p = path / "manifest.json", path / "responses.parquet"
    if not man_p.exists() or not data_p.exists():
        raise TaskError(f"{path}: not a task folder (need manifest.json and responses.parquet). "
                        "Build it with: python -m mars_lib.data.gold_task build --out " + str(path))
    manifest = json.loads(man_p.read_text())
    data = data_p.read_bytes()
    if verify and hashlib.sha256(data).hexdigest() != manifest["responses_sha256"]:
        raise TaskError(f"{data_p}: checksum does not match manifest.json (corrupt or edited); "
                        "restore it from git or rebuild it")
    import io
    df = pd.read_parquet(io.BytesIO(data))
    df.attrs["manifest"] = manifest
    return df


def bt_label_prob(gold_a, gold_b, beta: float):
    """P(a preferred to b) for a noisy Bradley-Terry annotator: σ((g_a - g_b) / β). β > 0."""
    if beta <= 0:
        raise ValueError(f"label noise temperature beta must be > 0, got {beta}")
    x = (np.asarray(gold_a, float) - np.asarray(gold_b, float)) / beta
    return 0.5 * (1.0 + np.tanh(0.5 * x))      # = σ(x), without overflow


def make_pairs(responses: pd.DataFrame, beta: float, seed: int = 0, max_pairs_per_prompt: int | None = None) -> pd.DataFrame:
    """Pairs of responses to the same prompt, labelled by a noisy BT annotator on the gold scores.

    Every unordered pair of distinct response texts of a prompt is a candidate (optionally at
    most `max_pairs_per_prompt` of them, chosen at random). The label is drawn with
    P(chosen = a) = σ((g_a − g_b)/β). Columns: the pair schema (prompt, chosen, rejected, pair_id,
    source_id, origin) + split, prompt_id, gold_chosen, gold_rejected, label_correct (the noisy
    label agrees with the gold order; ties in gold count as correct).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for pid, g in responses.groupby("prompt_id", sort=True):
        g = g.drop_duplicates("response")
        combos = list(itertools.combinations(range(len(g)), 2))
        if max_pairs_per_prompt is not None and len(combos) > max_pairs_per_prompt:
            pick = rng.choice(len(combos), size=max_pairs_per_prompt, replace=False)
            combos = [combos[i] for i in sorted(pick)]
        recs = g.to_dict("records")
        for i, j in combos:
            a, b = recs[i], recs[j]
            rows.append((pid, a, b))
    ga = np.array([a["gold"] for _, a, _ in rows])
    gb = np.array([b["gold"] for _, _, b in rows])
    a_wins = rng.random(len(rows)) < bt_label_prob(ga, gb, beta)
    out = []
    for (pid, a, b), aw in zip(rows, a_wins):
        c, r = (a, b) if aw else (b, a)
        out.append({"pair_id": f"{pid}:{min(a['response_id'], b['response_id'])}|{max(a['response_id'], b['response_id'])}",
                    "prompt": a["prompt"], "chosen": c["response"], "rejected": r["response"],
                    "split": a["split"], "prompt_id": pid, "gold_chosen": c["gold"], "gold_rejected": r["gold"],
                    "arm_chosen": c["arm"], "arm_rejected": r["arm"]})
    df = pd.DataFrame(out)
    df["source_id"] = df["pair_id"]
    df["origin"] = "original"
    df["label_correct"] = df.gold_chosen >= df.gold_rejected
    return df


def redraw_labels(base, pool, beta: float, seed) -> tuple:
    """A fresh draw of the simulated annotator's labels for the same base pairs (a rerun of the
    task's label noise): each pair keeps its orientation with probability σ((g_chosen − g_rejected)/β),
    the distribution its label was first drawn from, and is swapped otherwise. Synthetic pairs of
    `pool` inherit their source's label, so a swapped source's pool rows are swapped too.
    base, pool: `features.Pairs` (pool may be None or empty). Returns (base, pool, swapped [N] bool)."""
    df = base.df
    p_keep = bt_label_prob(df.gold_chosen.to_numpy(), df.gold_rejected.to_numpy(), beta)
    swap = np.random.default_rng(seed).random(len(df)) >= p_keep
    new_base = base.swapped(swap)
    if pool is None or len(pool.df) == 0 or "source_id" not in pool.df:
        return new_base, pool, swap
    swapped_ids = set(df.pair_id[swap])
    return new_base, pool.swapped(pool.df.source_id.isin(swapped_ids).to_numpy()), swap


@dataclass
class Task:
    """A loaded task: judged responses and labelled pairs per split."""
    responses: pd.DataFrame
    pairs: pd.DataFrame
    beta: float
    manifest: dict = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        return self.pairs[self.pairs.split == name].reset_index(drop=True)

    def noise_ceiling(self, split: str = "test") -> float:
        """Share of pairs whose noisy label agrees with the gold order (the best any RM can reach
        against these labels, in expectation)."""
        return float(self.split(split).label_correct.mean())


def load_task(path: str | Path = DEFAULT_TASK_DIR, beta: float = 1.0, label_seed: int = 0,
              n_prompts: int | None = None, max_pairs_per_prompt: int | None = None) -> Task:
    """Load a task folder and draw labels. `n_prompts` keeps a deterministic subset (smoke runs)."""
    resp = load_responses(path)
    if n_prompts is not None:
        keep = sorted(resp.prompt_id.unique())
        rng = np.random.default_rng(label_seed)
        keep = set(rng.permutation(keep)[:n_prompts])
        resp = resp[resp.prompt_id.isin(keep)].reset_index(drop=True)
    pairs = make_pairs(resp, beta, seed=label_seed, max_pairs_per_prompt=max_pairs_per_prompt)
    if pairs.empty:
        raise TaskError(f"{path}: no pairs (n_prompts={n_prompts})")
    return Task(resp, pairs, beta, resp.attrs.get("manifest", {}))


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="python -m mars_lib.data.gold_task", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="only fill the generation cache (resumable)")
    b = sub.add_parser("build", help="generate (cached) + judge + write the task folder")
    ps = sub.add_parser("samples", help="fresh policy samples per prompt of one split (Pace West-of-N, resample)")
    ps.add_argument("--n", type=int, default=6, help="samples per prompt (C(6,2) = 15 candidate pairs)")
    ps.add_argument("--split", default="train")
    ps.add_argument("--arm", default="default", choices=sorted(ARMS))
    ps.add_argument("--out", type=Path, default=DEFAULT_TASK_DIR, help="task folder to write policy_samples.* into")
    ps.add_argument("--no-judge", action="store_true", help="skip the gold judge (no gold column; the gold labeler needs it)")
    for p in (g, b, ps):
        p.add_argument("--n-prompts", type=int, default=TaskSpec.n_prompts)
        p.add_argument("--samples-per-arm", type=int, default=TaskSpec.samples_per_arm)
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--split-fractions", type=float, nargs=3, default=TaskSpec.split_fractions,
                       metavar=("TRAIN", "VAL", "TEST"), help="prompt fractions per split")
        p.add_argument("--seed", type=int, default=0)
    for p in (b, ps):
        p.add_argument("--judge", choices=["gold1", "gold3"], default="gold3",
                       help="the gold judge (mars_lib.judges.task_judge; default: %(default)s, shares no model with policy or RMs)")
    b.add_argument("--out", type=Path, default=DEFAULT_TASK_DIR)
    a = ap.parse_args(argv)
    set_offline()
    spec = TaskSpec(n_prompts=a.n_prompts, samples_per_arm=a.samples_per_arm, seed=a.seed,
                    split_fractions=tuple(a.split_fractions))
    import time
    t0 = time.perf_counter()
    gen = Generator.smollm2(GenerationCache(cache_dir() / "generations.sqlite"), batch_size=a.batch_size)
    if a.cmd == "samples":
        df = generate_policy_samples(spec, gen, a.n, a.split, a.arm)
        if not a.no_judge:
            del gen                                      # gold1 loads its own copy of the LM
            df = judge_responses(df, make_judge(a.judge))
        cmd = (f"python -m mars_lib.data.gold_task samples --n {a.n} --split {a.split} --arm {a.arm} --n-prompts {spec.n_prompts} "
               f"--split-fractions {' '.join(str(f) for f in spec.split_fractions)} --seed {spec.seed} "
               f"--judge {a.judge} --out {repo_relative(a.out)}")
        write_policy_samples(df, a.out, cmd, time.perf_counter() - t0, judge_name=None if a.no_judge else a.judge)
        print(f"[tasks] {len(df)} policy samples written to {a.out}")
        return
    responses = generate_responses(spec, gen)
    print(f"[tasks] {len(responses)} responses; generated {gen.stats.generated} "
          f"({gen.stats.new_tokens} tokens, {gen.stats.tokens_per_s:.1f} tok/s), cache hits {gen.stats.cache_hits}")
    if a.cmd == "build":
        st = gen.stats
        del gen
        build_task_folder(spec, responses, a.out, judge_name=a.judge, generation={
            "seconds": round(time.perf_counter() - t0, 1), "generated": st.generated,
            "cache_hits": st.cache_hits, "new_tokens": st.new_tokens,
            "tokens_per_s": round(st.tokens_per_s, 1)})


if __name__ == "__main__":
    _cli()
