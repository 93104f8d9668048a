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

import hashlib
import json
from math import comb, log

import numpy as np
import pandas as pd

from .assets import cache_dir
from .config import RunConfig
from .context import Context, policy_model


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


def bon_iid_per_prompt(bon: pd.DataFrame, rewards: dict, judges: tuple[str, ...] = ("gold", "gold3")) -> pd.DataFrame:
    """Per reward model, judge, n = 1..N and prompt: the unbiased expected judge score of the RM's best
    of n i.i.d. draws (`bon_set`: N draws per prompt). `rewards` maps (strategy, seed) to the RM's
    score of every row of `bon` [rows]. Also rows for the two references every RM shares: strategy
    "oracle" (best of n by the judge itself: the ceiling at this n) — n = 1 is a random draw for all.
    Columns: strategy, seed, judge, n, kl_bon, prompt_id, value."""
    bon = bon.reset_index(drop=True)
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
    from .stats import t_quantile, two_stage_bootstrap
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
    from .stats import paired_difference
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
        from .generation import GenerationCache, Generator, Request
        from .judge import GoldJudge
        from .tasks import ARMS
        model, tok, model_id = policy_model(cfg)
        gen = Generator(model, tok, model_id, GenerationCache(cache_dir() / "generations.sqlite"), device=cfg.device)
        prompts = pool.drop_duplicates("prompt_id")[["prompt_id", "prompt", "split"]]
        reqs = [(pid, p, Request(p, ARMS["default"], sample=s, seed=cfg.label_seed))
                for pid, p in zip(prompts.prompt_id, prompts.prompt) for s in range(1, 1 + cfg.bon_extra_samples)]
        outs = gen.generate_with_info([r for _, _, r in reqs], desc="Best-of-N samples")
        extra = pd.DataFrame({"prompt_id": [a for a, _, _ in reqs], "prompt": [b for _, b, _ in reqs],
                              "arm": "default", "sample": [r.sample for _, _, r in reqs],
                              "response": [t for t, _ in outs], "finished": [f for _, f in outs], "split": split})
        judge = GoldJudge.offline(ctx.encoder, gen if cfg.policy_model is None else None)   # fluency: SmolLM2
        extra["gold"] = judge.score(extra.prompt.tolist(), extra.response.tolist(), extra.finished.tolist())
        pool = pd.concat([pool, extra], ignore_index=True)
    phi = ctx.encoder.embed_pairs(pool.prompt.tolist(), pool.response.tolist(), desc="features: Best-of-N pool")
    return pool.reset_index(drop=True), phi


DPO_EVAL_SAMPLE = 5000      # sample index of the DPO evaluation answers (task samples: 0-3, policy samples 1000+)


def release_memory() -> None:
    """Collect cyclic garbage (peft-wrapped models hold reference cycles) and give freed heap pages back
    to the OS: under the glibc thresholds of scripts/runtime_env.sh freed memory otherwise stays in the
    process. malloc_trim is glibc's; elsewhere only the collection runs (nothing else to release)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


DPO_STEP_PAIRS = 4            # pairs per DPO optimizer step (dpo_micro_batch per forward, the rest accumulated)


def dpo_downstream(ctx: Context, heads: dict, progress: bool = True) -> dict[str, pd.DataFrame]:
    """DPO with each reward model as the labeler (RLAIF), then each policy's answers on held-out prompts.

    For every (strategy, seed) in cfg.dpo_strategies × cfg.dpo_seeds (None: the first of cfg.seeds), from the same base policy
    (`policy_model`: SmolLM2-135M-Instruct offline, + fresh LoRA, `mars_lib.dpo`):
    1. pairs: the first two committed policy samples of each train prompt (up to cfg.dpo_train_prompts);
       the RM's higher-scored one is `chosen` — the RM is the only labeler, no gold is read;
    2. cfg.dpo_epochs of DPO (same pairs, steps and seed for every RM: policies differ only through labels);
    3. one answer per evaluation prompt (cfg.dpo_eval_prompts test prompts, the task's default sampling
       arm, the same request seeds for every policy, and for the untrained base policy) judged by the gold judge.
    Adapters are saved under results/05_downstream/dpo/<strategy>_seed<k>-<hash of pairs and settings>/
    and reused when present (an interrupted run
    resumes with the policies already trained); generations are cached by the policy's digest.
    Returns tables: labels (each RM's label per pair, with gold agreement), train_log (per step),
    answers (policy, prompt_id, response, finished, gold, log_ratio). log_ratio = log π(y|x) −
    log π_ref(y|x) of the policy's own answer (EOS appended); its mean over prompts estimates
    KL(π ‖ π_ref) — approximately, since answers are drawn with top-p 0.95 and a repetition penalty,
    not from π itself."""
    import copy

    from .dpo import DPOConfig, DPOPolicy, sequence_logprobs
    from .generation import GenerationCache, Generator, Request
    from .judge import GoldJudge
    from .tasks import ARMS, load_policy_samples
    cfg = ctx.cfg
    samples = load_policy_samples(cfg.task_path)
    train_pids = list(dict.fromkeys(ctx.task.split("train").prompt_id))
    if cfg.dpo_train_prompts is not None:
        train_pids = train_pids[:cfg.dpo_train_prompts]
    s = samples[samples.prompt_id.isin(set(train_pids))].sort_values(["prompt_id", "sample"])
    first2 = s.groupby("prompt_id").head(2)
    a, b = first2.groupby("prompt_id").nth(0).reset_index(drop=True), first2.groupby("prompt_id").nth(1).reset_index(drop=True)
    if len(a) == 0 or len(a) != len(b):
        raise ValueError("dpo_downstream: need two policy samples per train prompt (python -m mars_lib.tasks samples)")
    pa = ctx.encoder.embed_pairs(a.prompt.tolist(), a.response.tolist(), desc="features: DPO pairs")
    pb = ctx.encoder.embed_pairs(b.prompt.tolist(), b.response.tolist(), desc="features: DPO pairs")
    test_pids = list(dict.fromkeys(ctx.task.split("test").prompt_id))
    rng = np.random.default_rng(cfg.label_seed)
    eval_pids = sorted(rng.choice(test_pids, size=min(cfg.dpo_eval_prompts, len(test_pids)), replace=False))
    prompts = ctx.task.split("test").drop_duplicates("prompt_id").set_index("prompt_id").loc[eval_pids, "prompt"].tolist()
    dec = ARMS["default"]
    # sample index DPO_EVAL_SAMPLE keeps these requests apart from the task's own generations (sample 0
    # of the default arm): otherwise the base policy's answers would be whatever an earlier task build
    # left in the cache, and a fresh clone would get different ones
    reqs = [Request(p, dec, sample=DPO_EVAL_SAMPLE, seed=cfg.label_seed) for p in prompts]

    base, tok, base_id = policy_model(cfg)
    cache = GenerationCache(cache_dir() / "generations.sqlite")
    from .generation import smollm2_model_id
    # the gold judge's LM is the offline SmolLM2 too: share the policy's base weights (never trained: each
    # policy trains a deep copy) instead of holding a second copy (540 MB)
    shared = Generator(base, tok, base_id, None, device=cfg.device) if base_id == smollm2_model_id() else None
    judge = GoldJudge.offline(encoder=ctx.encoder, generator=shared)
    labels, logs, answers = [], [], []

    def answer(model, model_id: str, policy: str, dpo: DPOPolicy | None = None):
        gen = Generator(model, tok, model_id, cache, device=cfg.device)
        out = gen.generate_with_info(reqs, desc=f"answers: {policy}")
        texts = [t for t, _ in out]
        g = judge.score(prompts, texts, [f for _, f in out])
        kl = np.zeros(len(texts))
        if dpo is not None:        # log π(y|x) − log π_ref(y|x) on the policy's own answers (+ EOS)
            import torch
            with torch.no_grad():
                lp = sequence_logprobs(dpo.model, tok, prompts, texts).cpu().numpy()
                with dpo.model.disable_adapter():
                    lp_ref = sequence_logprobs(dpo.model, tok, prompts, texts).cpu().numpy()
            kl = lp - lp_ref
        answers.append(pd.DataFrame({"policy": policy, "prompt_id": eval_pids, "prompt": prompts, "response": texts,
                                     "finished": [f for _, f in out], "gold": g, "log_ratio": kl}))

    answer(base, base_id, "base")
    for strategy in [x for x in cfg.dpo_strategies if x in cfg.strategies]:
        for seed in [x for x in (cfg.dpo_seeds if cfg.dpo_seeds is not None else cfg.seeds[:1]) if x in cfg.seeds]:
            rm = heads.get((strategy, seed))
            if rm is None:
                raise ValueError(f"dpo_downstream: no saved reward model for ({strategy}, seed {seed}); "
                                 "run notebook 03 with that strategy and seed")
            a_wins = rm.score(a.prompt, a.response, pa) >= rm.score(b.prompt, b.response, pb)
            pairs = pd.DataFrame({"prompt_id": a.prompt_id, "prompt": a.prompt,
                                  "chosen": np.where(a_wins, a.response, b.response),
                                  "rejected": np.where(a_wins, b.response, a.response)})
            gold_agrees = np.where(a_wins, a.gold >= b.gold, b.gold >= a.gold)
            labels.append(pairs[["prompt_id"]].assign(strategy=strategy, seed=seed, a_preferred=a_wins,
                                                      agrees_with_gold=gold_agrees))
            dcfg = DPOConfig(epochs=cfg.dpo_epochs, lr=cfg.dpo_lr, device=cfg.device, batch_size=cfg.dpo_micro_batch,
                             grad_accum=DPO_STEP_PAIRS // cfg.dpo_micro_batch,
                             precision=cfg.dpo_precision or cfg.precision, seed=seed)
            # the folder is named by what the policy is trained from: a changed setting never reuses it
            key = hashlib.sha256(json.dumps([pairs[["prompt", "chosen", "rejected"]].values.tolist(), repr(dcfg),
                                             base_id]).encode()).hexdigest()[:10]
            folder = cfg.path("05_downstream", "dpo", f"{strategy}_seed{seed}-{key}", "x").parent
            if (folder / "mars_dpo.json").exists():
                policy = DPOPolicy.load(folder, copy.deepcopy(base), tok, device=cfg.device)
                log = pd.read_csv(folder / "train_log.csv")
            else:
                policy = DPOPolicy(copy.deepcopy(base), tok, dcfg)
                log = pd.DataFrame(policy.fit(pairs, seed=seed, progress=progress))
                log["pairs_per_s"] = policy.stats.train_pairs_per_s
                log.to_csv(folder / "train_log.csv", index=False)
                policy.save(folder)                  # written last: its presence marks a finished policy
            logs.append(log.assign(strategy=strategy, seed=seed))
            answer(policy.merged(), f"{base_id}+dpo@{policy.digest()}", f"{strategy}_seed{seed}", policy)
            del policy
            release_memory()                         # each policy held a model copy: without this RSS grew ~0.3 GB each
    if not labels:
        raise ValueError(f"dpo_downstream: none of dpo_strategies {cfg.dpo_strategies} x dpo_seeds {cfg.dpo_seeds} "
                         f"was trained (strategies {cfg.strategies}, seeds {cfg.seeds})")
    return {"labels": pd.concat(labels, ignore_index=True), "train_log": pd.concat(logs, ignore_index=True),
            "answers": pd.concat(answers, ignore_index=True)}


def dpo_policy_stats(answers: pd.DataFrame, labels: pd.DataFrame, train_log: pd.DataFrame) -> pd.DataFrame:
    """One row per policy of `dpo_downstream` (the base policy first): mean gold score of its answers and its
    SE over prompts, kl_estimate (mean log_ratio of its answers), label_agrees_with_gold (share of its RM's
    DPO labels that agree with the gold order) and final_train_loss (mean DPO loss of its last 5 steps)."""
    piv = answers.pivot(index="prompt_id", columns="policy", values="gold")
    pol = [c for c in piv.columns if c != "base"]
    kl = answers.groupby("policy").log_ratio.mean()
    of = lambda d, c: d[d.strategy + "_seed" + d.seed.astype(str) == c]          # noqa: E731  (rows of policy c)
    return pd.DataFrame([{"policy": c, "mean_gold": piv[c].mean(), "se": piv[c].std(ddof=1) / np.sqrt(len(piv)),
                          "kl_estimate": kl[c],
                          "label_agrees_with_gold": of(labels, c).agrees_with_gold.mean() if c != "base" else np.nan,
                          "final_train_loss": of(train_log, c).loss.tail(5).mean() if c != "base" else np.nan}
                         for c in ["base"] + pol])


def dpo_win_rates(answers: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """Gold win rates (`win_rate`, over the evaluation prompts) of every DPO policy against the base policy,
    and of each MARS policy against every other policy (MARS against MARS once: v2 over v1); lo / hi =
    win_rate ∓ z · se (z = 1.96: a normal 95 % interval over prompts)."""
    piv = answers.pivot(index="prompt_id", columns="policy", values="gold")
    pol = [c for c in piv.columns if c != "base"]
    comps = [(x, "base") for x in pol] + [(m, o) for m in pol if m.startswith("mars") for o in pol
                                          if o != m and not (o.startswith("mars") and o > m)]
    out = pd.DataFrame([{"a": x, "b": y, **win_rate(piv[x].to_numpy(), piv[y].to_numpy())} for x, y in comps])
    out["lo"], out["hi"] = out.win_rate - z * out.se, out.win_rate + z * out.se
    return out


def llm_judge_win_rates(cfg: RunConfig, answers: pd.DataFrame, comparisons: list[tuple[str, str]], seed: int = 0) -> pd.DataFrame:
    """Win rates of policy a over policy b on the same prompts under an LLM judge (cfg.judge_model:
    a local folder or hub id of a chat LM; the paper's protocol uses a strong API model, which is the
    user's own plug-in). Each prompt's two answers are shown once, in a randomized A/B order
    (`labelers.LLMJudgeLabeler`, both_orders=False); a > b when the judge's log-odds favour a, ties
    (log-odds exactly 0) count half. Columns as `downstream.win_rate` plus a, b, judge."""
    from .generation import load_causal_lm
    from .labelers import LLMJudgeLabeler
    if cfg.judge_model is None:
        raise ValueError("llm_judge_win_rates needs cfg.judge_model (a local folder or hub id of a chat LM)")
    model, tok, _ = load_causal_lm(cfg.judge_model, cfg.device)
    judge = LLMJudgeLabeler(model, tok, both_orders=False, seed=seed, device=cfg.device)
    piv = answers.pivot(index="prompt_id", columns="policy", values="response")
    prompts = answers.drop_duplicates("prompt_id").set_index("prompt_id").loc[piv.index, "prompt"].tolist()
    rows = []
    for a, b in comparisons:
        gap = judge.compare(prompts, piv[a].tolist(), piv[b].tolist())
        rows.append({"a": a, "b": b, "judge": cfg.judge_model, **win_rate(np.sign(gap), np.zeros_like(gap))})
    return pd.DataFrame(rows)
