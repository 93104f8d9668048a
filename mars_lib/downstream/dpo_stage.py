"""DPO with each reward model as the labeler (RLAIF), notebook 05: every RM labels the same policy-sample
pairs, a LoRA policy is trained on each RM's labels, and every policy answers held-out prompts that the
gold judges score.

Comparisons of policies are paired: the same prompts, the same request seeds, and (with several DPO
seeds) policy a of seed k against policy b of seed k. `dpo_paired` gives the mean judge-score
difference with the two-stage interval over prompts and seeds of `mars_lib.evaluation.stats` (one seed: a paired
t interval over prompts, which leaves the seed-to-seed variation out and says so in `method`).
"""
from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pandas as pd

from mars_lib.pipeline.assets import cache_dir
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context, policy_model
from mars_lib.downstream.best_of_n import win_rate
from mars_lib.pipeline.memory import release_memory
from mars_lib.judges.task_judge import LABELS as JUDGE_NAMES   # the judge columns an answers table may hold: gold, gold1, gold3
from mars_lib.downstream.dpo import DPOConfig, DPOPolicy, sequence_logprobs
from mars_lib.synthetic.generation import GenerationCache, Generator, load_causal_lm, Request, smollm2_model_id
from mars_lib.data.gold_task import ARMS, load_policy_samples
from mars_lib.judges.task_judge import make_judge, task_judge_name
from mars_lib.evaluation.stats import paired_difference, t_quantile
from mars_lib.judges.labelers import LLMJudgeLabeler

DPO_EVAL_SAMPLE = 5000      # sample index of the DPO evaluation answers (task samples: 0-3, policy samples 1000+)
DPO_STEP_PAIRS = 4            # pairs per DPO optimizer step (dpo_micro_batch per forward, the rest accumulated)


def dpo_downstream(ctx: Context, heads: dict, progress: bool = True) -> dict[str, pd.DataFrame]:
    """DPO with each reward model as the labeler (RLAIF), then each policy's answers on held-out prompts.

    For every (strategy, seed) in cfg.dpo_strategies × cfg.dpo_seeds (None: the first of cfg.seeds), from the same base policy
    (`policy_model`: SmolLM2-135M-Instruct offline, + fresh LoRA, `mars_lib.downstream.dpo`):
    1. pairs: the first two committed policy samples of each train prompt (up to cfg.dpo_train_prompts);
       the RM's higher-scored one is `chosen` — the RM is the only labeler, no gold is read;
    2. cfg.dpo_epochs of DPO (same pairs, steps and seed for every RM: policies differ only through labels);
    3. one answer per evaluation prompt (cfg.dpo_eval_prompts test prompts, the task's default sampling
       arm, the same request seeds for every policy, and for the untrained base policy), scored once all
       policies have answered by each judge of cfg.dpo_judges (one column each: gold, gold1, gold3).
    Adapters are saved in the cache, <cache>/dpo/<strategy>_seed<k>-<hash of pairs and settings>/, and
    reused when present: an interrupted run resumes with the policies already trained, and a profile that
    only adds seeds or prompts reuses the others; generations are cached by the policy's digest.
    Returns tables: labels (each RM's label per pair, with gold agreement), train_log (per step),
    answers (policy, strategy, seed, prompt_id, response, finished, <judges>, log_ratio). log_ratio = log π(y|x) −
    log π_ref(y|x) of the policy's own answer (EOS appended); its mean over prompts estimates
    KL(π ‖ π_ref) — approximately, since answers are drawn with top-p 0.95 and a repetition penalty,
    not from π itself."""
    cfg = ctx.cfg
    a, b, pa, pb = _candidate_pairs(ctx)
    eval_pids, prompts, reqs = _eval_requests(ctx)

    base, tok, base_id = policy_model(cfg)
    cache = GenerationCache(cache_dir() / "generations.sqlite")
    labels, logs, answers = [], [], []

    def answer(model, model_id: str, policy: str, strategy: str, seed: int, dpo: DPOPolicy | None = None):
        gen = Generator(model, tok, model_id, cache, device=cfg.device)
        out = gen.generate_with_info(reqs, desc=f"answers: {policy}")
        texts = [t for t, _ in out]
        del gen, model             # a policy's merged copy (~0.5 GB) is gone before its KL pass (issue 19)
        kl = np.zeros(len(texts))
        if dpo is not None:        # log π(y|x) − log π_ref(y|x) on the policy's own answers (+ EOS)
            import torch
            release_memory(collect=True)
            with torch.no_grad():
                lp = sequence_logprobs(dpo.model, tok, prompts, texts).cpu().numpy()
                with dpo.model.disable_adapter():
                    lp_ref = sequence_logprobs(dpo.model, tok, prompts, texts).cpu().numpy()
            kl = lp - lp_ref
        answers.append(pd.DataFrame({"policy": policy, "strategy": strategy, "seed": seed, "prompt_id": eval_pids,
                                     "prompt": prompts, "response": texts, "finished": [f for _, f in out], "log_ratio": kl}))

    answer(base, base_id, "base", "base", -1)
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
            policy, log = _trained_policy(cfg, base, tok, base_id, pairs, f"{strategy}_seed{seed}", seed, progress)
            logs.append(log.assign(strategy=strategy, seed=seed))
            answer(policy.merged(), f"{base_id}+dpo@{policy.digest()}", f"{strategy}_seed{seed}", strategy, seed, policy)
            del policy
            release_memory(collect=True)             # each policy held a model copy: without this RSS grew ~0.3 GB each
    if not labels:
        raise ValueError(f"dpo_downstream: none of dpo_strategies {cfg.dpo_strategies} x dpo_seeds {cfg.dpo_seeds} "
                         f"was trained (strategies {cfg.strategies}, seeds {cfg.seeds})")
    answers = pd.concat(answers, ignore_index=True)
    for name in cfg.dpo_judges:              # after every policy has answered: one judge in memory at a time
        answers[name] = _judge(name, ctx, base, tok, base_id).score(answers.prompt.tolist(), answers.response.tolist(),
                                                                      answers.finished.tolist())
        release_memory()
    return {"labels": pd.concat(labels, ignore_index=True), "train_log": pd.concat(logs, ignore_index=True),
            "answers": answers}


def _candidate_pairs(ctx: Context):
    """The first two committed policy samples of each train prompt (up to cfg.dpo_train_prompts), as
    frames a and b with their features: the pairs every RM labels."""
    cfg = ctx.cfg
    samples = load_policy_samples(cfg.task_path)
    train_pids = list(dict.fromkeys(ctx.task.split("train").prompt_id))
    if cfg.dpo_train_prompts is not None:
        train_pids = train_pids[:cfg.dpo_train_prompts]
    s = samples[samples.prompt_id.isin(set(train_pids))].sort_values(["prompt_id", "sample"])
    first2 = s.groupby("prompt_id").head(2)
    a, b = first2.groupby("prompt_id").nth(0).reset_index(drop=True), first2.groupby("prompt_id").nth(1).reset_index(drop=True)
    if len(a) == 0 or len(a) != len(b):
        raise ValueError("dpo_downstream: need two policy samples per train prompt (python -m mars_lib.data.gold_task samples)")
    pa = ctx.encoder.embed_pairs(a.prompt.tolist(), a.response.tolist(), desc="features: DPO pairs")
    pb = ctx.encoder.embed_pairs(b.prompt.tolist(), b.response.tolist(), desc="features: DPO pairs")
    return a, b, pa, pb


def _eval_requests(ctx: Context):
    """(prompt ids, prompts, generation requests) of the held-out prompts every policy answers."""
    cfg = ctx.cfg
    test_pids = list(dict.fromkeys(ctx.task.split("test").prompt_id))
    rng = np.random.default_rng(cfg.label_seed)
    eval_pids = sorted(rng.choice(test_pids, size=min(cfg.dpo_eval_prompts, len(test_pids)), replace=False))
    prompts = ctx.task.split("test").drop_duplicates("prompt_id").set_index("prompt_id").loc[eval_pids, "prompt"].tolist()
    dec = ARMS["default"]
    # sample index DPO_EVAL_SAMPLE keeps these requests apart from the task's own generations (sample 0
    # of the default arm): otherwise the base policy's answers would be whatever an earlier task build
    # left in the cache, and a fresh clone would get different ones
    reqs = [Request(p, dec, sample=DPO_EVAL_SAMPLE, seed=cfg.label_seed) for p in prompts]
    return eval_pids, prompts, reqs


def _trained_policy(cfg, base, tok, base_id: str, pairs: pd.DataFrame, name: str, seed: int, progress: bool):
    """A LoRA DPO policy on `pairs`, from the adapter cache when this exact training was done before."""
    dcfg = DPOConfig(epochs=cfg.dpo_epochs, lr=cfg.dpo_lr, device=cfg.device, batch_size=cfg.dpo_micro_batch,
                     grad_accum=DPO_STEP_PAIRS // cfg.dpo_micro_batch,
                     precision=cfg.dpo_precision or cfg.precision, seed=seed)
    # the folder is named by what the policy is trained from: a changed setting never reuses it
    key = hashlib.sha256(json.dumps([pairs[["prompt", "chosen", "rejected"]].values.tolist(), repr(dcfg),
                                     base_id]).encode()).hexdigest()[:10]
    folder = cache_dir() / "dpo" / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "mars_dpo.json").exists():
        policy = DPOPolicy.load(folder, copy.deepcopy(base), tok, device=cfg.device)
        log = pd.read_csv(folder / "train_log.csv")
    else:
        policy = DPOPolicy(copy.deepcopy(base), tok, dcfg)
        log = pd.DataFrame(policy.fit(pairs, seed=seed, progress=progress))
        log["pairs_per_s"] = policy.stats.train_pairs_per_s
        log.to_csv(folder / "train_log.csv", index=False)
        policy.save(folder)          # written last: its presence marks a finished policy
    return policy, log


def _judge(name: str, ctx: Context, base, tok, base_id: str):
    """The judge `name` of cfg.dpo_judges ("gold" = the task's own, `task_judges`). gold1 uses the offline
    SmolLM2 for fluency: when the policy is that model it shares the policy's base weights (never
    trained: each DPO policy trains a deep copy) instead of loading a second copy (540 MB)."""
    name = task_judge_name(ctx.cfg.task_path) if name == "gold" else name
    if name != "gold1":
        return make_judge(name)
    shared = Generator(base, tok, base_id, None, device=ctx.cfg.device) if base_id == smollm2_model_id() else None
    return make_judge(name, encoder=ctx.encoder, generator=shared)


def _judges(answers: pd.DataFrame, judges) -> list[str]:
    judges = [j for j in (judges or JUDGE_NAMES) if j in answers.columns]
    if not judges:
        raise ValueError(f"answers has no judge column; expected one of {list(JUDGE_NAMES)}")
    return judges


def dpo_policy_stats(answers: pd.DataFrame, labels: pd.DataFrame, train_log: pd.DataFrame,
                     judges: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per policy of `dpo_downstream` (the base policy first) and judge: mean_score of its answers
    and its SE over prompts, kl_estimate (mean log_ratio of its answers), label_agrees_with_gold (share of
    its RM's DPO labels that agree with the task's gold order) and final_train_loss (mean DPO loss of its
    last 5 steps). `judges`: the answers' judge columns to report (None: every one present)."""
    kl = answers.groupby("policy").log_ratio.mean()
    of = lambda d, c: d[d.strategy + "_seed" + d.seed.astype(str) == c]          # noqa: E731  (rows of policy c)
    rows = []
    for judge in _judges(answers, judges):
        piv = answers.pivot(index="prompt_id", columns="policy", values=judge)
        for c in ["base"] + [c for c in piv.columns if c != "base"]:
            rows.append({"policy": c, "judge": judge, "mean_score": piv[c].mean(),
                         "se": piv[c].std(ddof=1) / np.sqrt(len(piv)), "kl_estimate": kl[c],
                         "label_agrees_with_gold": of(labels, c).agrees_with_gold.mean() if c != "base" else np.nan,
                         "final_train_loss": of(train_log, c).loss.tail(5).mean() if c != "base" else np.nan})
    return pd.DataFrame(rows)


def _seed_of(policy: str) -> str:
    return policy.rsplit("_seed", 1)[-1] if "_seed" in policy else ""


def dpo_win_rates(answers: pd.DataFrame, judges: tuple[str, ...] | None = None, z: float = 1.96) -> pd.DataFrame:
    """Win rates (`downstream.win_rate`, over the evaluation prompts, ties half) per judge: every DPO
    policy against the base policy, and each MARS policy against every other policy of the same DPO seed
    (MARS against MARS once: v2 over v1); lo / hi = win_rate ∓ z · se (a normal 95 % interval over
    prompts; `dpo_paired` pools the seeds)."""
    out = []
    for judge in _judges(answers, judges):
        piv = answers.pivot(index="prompt_id", columns="policy", values=judge)
        pol = [c for c in piv.columns if c != "base"]
        comps = [(x, "base") for x in pol] + [(m, o) for m in pol if m.startswith("mars") for o in pol
                                              if o != m and _seed_of(o) == _seed_of(m)
                                              and not (o.startswith("mars") and o > m)]
        out += [{"judge": judge, "a": x, "b": y, **win_rate(piv[x].to_numpy(), piv[y].to_numpy())} for x, y in comps]
    out = pd.DataFrame(out)
    out["lo"], out["hi"] = out.win_rate - z * out.se, out.win_rate + z * out.se
    return out


def dpo_comparisons(strategies) -> list[tuple[str, str]]:
    """Strategy-level comparisons: each against the base policy, each MARS strategy against every
    other (v2 against v1 once)."""
    s = [x for x in strategies if x != "base"]
    return [(x, "base") for x in s] + [(m, o) for m in s if m.startswith("mars") for o in s
                                       if o != m and not (o.startswith("mars") and o > m)]


def dpo_paired(answers: pd.DataFrame, judges: tuple[str, ...] | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Mean judge-score difference a − b of two strategies' DPO policies on the same prompts, per judge.
    With >= 2 DPO seeds, seed k of a is paired with seed k of b (the base policy, untrained, stands
    against every seed) and the interval is `stats.paired_difference`'s two-stage interval over prompts
    and seeds; with one seed, a paired t interval over prompts (`method` says so: the seed-to-seed
    variation of DPO and of the RM is then not covered). Columns: judge, a, b, effect, lo, hi, se, df,
    p_better, n_seeds, n_prompts, mde (minimum detectable effect at 80 % power, with the t quantiles of
    the interval: few seeds leave few df), method."""
    pol = answers[answers.policy != "base"]
    seeds = sorted(pol.seed.unique())
    base = answers[answers.policy == "base"]
    long = pd.concat([pol] + [base.assign(seed=k) for k in seeds], ignore_index=True)
    rows = []
    for judge in _judges(answers, judges):
        df = long.assign(cluster=long.prompt_id, pair_id=long.prompt_id, value=long[judge])
        for a, b in dpo_comparisons(pd.unique(pol.strategy)):
            if len(seeds) >= 2:
                r = paired_difference(df, a, b, n_boot=n_boot)
                r["n_prompts"] = r.pop("n_clusters")
                r.pop("n_pairs")
                # with few DPO seeds the seed stage leaves few df: the z-based MDE would understate what the
                # t interval can detect, so the MDE uses the same t quantiles (80 % power)
                r["mde"] = (t_quantile(0.975, r["df"]) + t_quantile(0.8, r["df"])) * r["se"]
            else:
                piv = df.pivot(index="prompt_id", columns="strategy", values="value")
                d = (piv[a] - piv[b]).to_numpy(float)
                n = len(d)
                se = d.std(ddof=1) / np.sqrt(n)
                t = t_quantile(0.975, n - 1)
                r = dict(effect=d.mean(), lo=d.mean() - t * se, hi=d.mean() + t * se, se=se, df=n - 1,
                         p_better=np.nan, n_seeds=1, n_prompts=n, mde=(t + t_quantile(0.8, n - 1)) * se,
                         method="paired t over prompts (one DPO seed: seed variation not covered)")
            rows.append({"judge": judge, "a": a, "b": b, **r})
    return pd.DataFrame(rows)[["judge", "a", "b", "effect", "lo", "hi", "se", "df", "p_better", "n_seeds",
                               "n_prompts", "mde", "method"]]


def llm_judge_win_rates(cfg: RunConfig, answers: pd.DataFrame, comparisons: list[tuple[str, str]], seed: int = 0) -> pd.DataFrame:
    """Win rates of policy a over policy b on the same prompts under an LLM judge (cfg.judge_model:
    a local folder or hub id of a chat LM; the paper's protocol uses a strong API model, which is the
    user's own plug-in). Each prompt's two answers are shown once, in a randomized A/B order
    (`labelers.LLMJudgeLabeler`, both_orders=False); a > b when the judge's log-odds favour a, ties
    (log-odds exactly 0) count half. Columns as `downstream.win_rate` plus a, b, judge."""
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
