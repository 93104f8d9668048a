"""Downstream use of each reward model: Best-of-N against the gold judge, and win rates.

Best-of-N: for each held-out prompt the policy's N samples are shared by all reward models; each
RM's pick is the sample it scores highest. The expected gold score of best-of-n for every n ≤ N
is computed without resampling by the unbiased estimator (Nakano et al. 2021, Gao et al. 2022):
with the N samples sorted by the RM's reward ascending (ranks i = 1..N),
    E[gold of best-of-n] = Σ_i  C(i−1, n−1) / C(N, n) · gold_(i),
the probability that sample i is the RM's maximum of a uniformly random n-subset.
KL of best-of-n to the policy: KL_bon = log n − (n − 1)/n (Stiennon et al. 2020).
"""
from __future__ import annotations

from math import comb, log

import numpy as np
import pandas as pd

from mars_lib.pipeline.assets import cache_dir
from mars_lib.pipeline.context import Context, policy_model
from mars_lib.evaluation.stats import paired_difference, t_quantile, two_stage_bootstrap
from mars_lib.synthetic.generation import GenerationCache, Generator, Request
from mars_lib.judges.task_judge import task_judge
from mars_lib.data.gold_task import ARMS


def kl_bon(n: int) -> float:
    """KL(best-of-n || policy) = log n − (n − 1)/n."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return log(n) - (n - 1) / n


def bon_expected_gold(rewards, gold, n: int) -> float:
    """Unbiased E[gold of the RM's best of n uniformly drawn samples] from N ≥ n samples.

    rewards, gold: [N]. Ties in reward are broken by sample order (stable sort).
    """
    r, g = np.asarray(rewards, float), np.asarray(gold, float)
    N = r.size
    if not 1 <= n <= N:
        raise ValueError(f"need 1 <= n <= N, got n={n}, N={N}")
    order = np.argsort(r, kind="stable")
    w = np.array([comb(i, n - 1) for i in range(N)], dtype=float) / comb(N, n)   # rank i+1 -> C(i, n-1)
    return float(w @ g[order])


def bon_curve(pool: pd.DataFrame, reward_col: str, n_max: int | None = None) -> pd.DataFrame:
    """Per n: mean over prompts of the unbiased best-of-n gold score, with its standard error.

    pool: one row per (prompt_id, sample) with columns prompt_id, gold, and `reward_col`.
    """
    groups = [(g[reward_col].to_numpy(), g["gold"].to_numpy()) for _, g in pool.groupby("prompt_id", sort=True)]
    N = min(len(g[0]) for g in groups)
    n_max = min(n_max or N, N)
    rows = []
    for n in range(1, n_max + 1):
        vals = np.array([bon_expected_gold(r[:N], g[:N], n) for r, g in groups])
        rows.append({"n": n, "kl_bon": kl_bon(n), "gold": vals.mean(),
                     "se": vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else float("nan"),
                     "n_prompts": len(vals)})
    return pd.DataFrame(rows)


def bon_picks(pool: pd.DataFrame, reward_col: str) -> pd.DataFrame:
    """The RM's best of all N samples per prompt (rows of `pool`)."""
    idx = pool.groupby("prompt_id", sort=True)[reward_col].idxmax()
    return pool.loc[idx].reset_index(drop=True)


def win_rate(gold_a, gold_b) -> dict:
    """Win rate of A over B under the gold judge, per prompt; ties count half. With its SE."""
    a, b = np.asarray(gold_a, float), np.asarray(gold_b, float)
    s = (a > b).astype(float) + 0.5 * (a == b)
    return {"win_rate": float(s.mean()), "se": float(s.std(ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan"),
            "wins": int((a > b).sum()), "ties": int((a == b).sum()), "losses": int((a < b).sum()), "n": int(s.size)}


def bon_weights(N: int) -> np.ndarray:
    """[N, N] matrix W with W[n-1, i] = C(i, n-1) / C(N, n): row n-1 weights the sample of ascending
    reward rank i+1 in the unbiased best-of-n estimate (`bon_expected_gold`, all n at once)."""
    return np.array([[comb(i, n - 1) / comb(N, n) for i in range(N)] for n in range(1, N + 1)])


def bon_iid_per_prompt(bon: pd.DataFrame, rewards: dict, judges: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per reward model, judge, n = 1..N and prompt: the unbiased expected judge score of the RM's best
    of n i.i.d. draws (`bon_set`: N draws per prompt). `rewards` maps (strategy, seed) to the RM's
    score of every row of `bon` [rows]. Also rows for the two references every RM shares: strategy
    "oracle" (best of n by the judge itself: the ceiling at this n) — n = 1 is a random draw for all.
    Columns: strategy, seed, judge, n, kl_bon, prompt_id, value. `judges`: judge columns of `bon`
    (default: every one it has, `gold` — the task's judge — first)."""
    bon = bon.reset_index(drop=True)
    judges = judges or [j for j in ("gold", "gold1", "gold3") if j in bon]
    sizes = bon.groupby("prompt_id", sort=True).size()
    if sizes.nunique() != 1:
        raise ValueError(f"every prompt needs the same number of draws; got {sorted(sizes.unique())}")
    N = int(sizes.iloc[0])
    order_rows = bon.sort_values(["prompt_id", "sample"], kind="stable").index.to_numpy().reshape(-1, N)   # [P, N]
    pids = bon.prompt_id.to_numpy()[order_rows[:, 0]]
    W = bon_weights(N)
    kl = np.array([kl_bon(n) for n in range(1, N + 1)])
    out = []
    for judge in judges:
        g = bon[judge].to_numpy(float)[order_rows]                       # [P, N]
        for (s, seed), r in [*rewards.items(), (("oracle", -1), bon[judge].to_numpy(float))]:
            r = np.asarray(r, float)[order_rows]
            ranked = np.take_along_axis(g, np.argsort(r, axis=1, kind="stable"), axis=1)
            vals = ranked @ W.T                                          # [P, N]: column n-1
            out.append(pd.DataFrame({"strategy": s, "seed": seed, "judge": judge, "n": np.tile(np.arange(1, N + 1), len(pids)),
                                     "kl_bon": np.tile(kl, len(pids)), "prompt_id": np.repeat(pids, N),
                                     "value": vals.ravel()}))
    return pd.concat(out, ignore_index=True)


def bon_iid_summary(per_prompt: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Mean over prompts and seeds of each RM's best-of-n score per judge and n, with the two-stage
    interval over prompts and seeds (`stats.two_stage_bootstrap`). The oracle (one "seed") gets an
    interval over prompts only (t interval)."""
    rows = []
    def over_prompts(v: np.ndarray) -> tuple[float, float, float]:
        half = t_quantile(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        return v.mean(), v.mean() - half, v.mean() + half

    for (judge, n), g in per_prompt.groupby(["judge", "n"], sort=True):
        rm = g[g.strategy != "oracle"]
        if rm.seed.nunique() >= 2:
            ci = two_stage_bootstrap(rm.assign(cluster=rm.prompt_id, pair_id=rm.prompt_id), n_boot=n_boot)
            rows += [dict(judge=judge, n=n, kl_bon=g.kl_bon.iloc[0], strategy=r.strategy, mean=r["mean"], lo=r.lo, hi=r.hi,
                          n_seeds=r.n_seeds, n_prompts=r.n_clusters) for _, r in ci.iterrows()]
        else:                                     # one seed (paper profile): prompts only, seed variation not covered
            for s, gs in rm.groupby("strategy", sort=False):
                m, lo, hi = over_prompts(gs.value.to_numpy())
                rows.append(dict(judge=judge, n=n, kl_bon=g.kl_bon.iloc[0], strategy=s, mean=m, lo=lo, hi=hi, n_seeds=1,
                                 n_prompts=len(gs)))
        m, lo, hi = over_prompts(g[g.strategy == "oracle"].value.to_numpy())
        rows.append(dict(judge=judge, n=n, kl_bon=g.kl_bon.iloc[0], strategy="oracle", mean=m, lo=lo, hi=hi, n_seeds=1,
                         n_prompts=int((g.strategy == "oracle").sum())))
    return pd.DataFrame(rows)


def bon_iid_paired(per_prompt: pd.DataFrame, comparisons: list[tuple[str, str]], n: int | None = None,
                   n_boot: int = 1000) -> pd.DataFrame:
    """Paired differences of best-of-n scores (a − b) at one n (default: the largest), per judge: same
    prompts, seeds matched by label; the two-stage interval and minimum detectable effect of
    `stats.paired_difference`. With one seed (paper profile) there is no such interval: no rows."""
    n = int(per_prompt.n.max()) if n is None else n
    rows = []
    if per_prompt[per_prompt.strategy != "oracle"].seed.nunique() < 2:
        return pd.DataFrame(columns=["judge", "n", "a", "b", "effect", "lo", "hi", "se", "df", "p_better", "n_seeds",
                                     "n_clusters", "n_pairs", "mde", "method"])
    for judge, g in per_prompt[(per_prompt.n == n) & (per_prompt.strategy != "oracle")].groupby("judge", sort=True):
        g = g.assign(cluster=g.prompt_id, pair_id=g.prompt_id)
        for a, b in comparisons:
            if {a, b} <= set(g.strategy):
                rows.append(dict(judge=judge, n=n, a=a, b=b, **paired_difference(g, a, b, n_boot=n_boot)))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the stages of notebook 05
# Best-of-N candidates, DPO with each reward model as the labeler, and LLM-judge win rates.

def bon_pool(ctx: Context, split: str = "test") -> tuple[pd.DataFrame, np.ndarray]:
    """Best-of-N candidates: every policy sample of the task for the split's prompts (+ optional
    extra samples at the 'default' arm, generated, cached and gold-judged). Returns the pool (one
    row per sample) and its RM features φ(x, y) [rows, D]."""
    cfg = ctx.cfg
    pool = ctx.task.responses[ctx.task.responses.split == split].copy()
    if cfg.bon_extra_samples > 0:
        model, tok, model_id = policy_model(cfg)
        gen = Generator(model, tok, model_id, GenerationCache(cache_dir() / "generations.sqlite"), device=cfg.device)
        prompts = pool.drop_duplicates("prompt_id")[["prompt_id", "prompt", "split"]]
        reqs = [(pid, p, Request(p, ARMS["default"], sample=s, seed=cfg.label_seed))
                for pid, p in zip(prompts.prompt_id, prompts.prompt) for s in range(1, 1 + cfg.bon_extra_samples)]
        outs = gen.generate_with_info([r for _, _, r in reqs], desc="Best-of-N samples")
        extra = pd.DataFrame({"prompt_id": [a for a, _, _ in reqs], "prompt": [b for _, b, _ in reqs],
                              "arm": "default", "sample": [r.sample for _, _, r in reqs],
                              "response": [t for t, _ in outs], "finished": [f for _, f in outs], "split": split})
        judge = task_judge(cfg.task_path, encoder=ctx.encoder,            # gold1 may share MiniLM and SmolLM2
                           generator=gen if cfg.policy_model is None else None)
        extra["gold"] = judge.score(extra.prompt.tolist(), extra.response.tolist(), extra.finished.tolist())
        pool = pd.concat([pool, extra], ignore_index=True)
    phi = ctx.encoder.embed_pairs(pool.prompt.tolist(), pool.response.tolist(), desc="features: Best-of-N pool")
    return pool.reset_index(drop=True), phi
