"""Notebook 05's stages: each computes one downstream use of the reward models, saves its tables under
`<results>/05_downstream/` and returns them, so every computation cell of the notebook is one call.

    s = downstream_stages.setup(cfg)              the config saved, notebook 03's RMs scoring the Best-of-N pool
    downstream_stages.best_of_n_curves(s)         each RM's expected gold score of best-of-n, n ≤ N
    downstream_stages.win_rates(s)                the MARS RMs' picks against each baseline's, per seed and over seeds
    downstream_stages.bon_examples(s)             what each RM picks for the first prompts
    downstream_stages.bon_iid(s)                  Best-of-N on the committed i.i.d. set: per n, and paired differences
    dpo = downstream_stages.train_dpo(s)          DPO with each RM as the labeler; every policy's answers, judged
    downstream_stages.dpo_results(s, dpo)         the policies' scores, win rates and paired differences
    downstream_stages.claims_table(s)             results/claims.csv rebuilt with the Best-of-N rows

The tables are the notebook's results; figures, the claims table and the findings read them back from disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mars_lib.downstream import best_of_n, bon_set, dpo_stage
from mars_lib.evaluation import claims, stats
from mars_lib.pipeline import context
from mars_lib.pipeline.config import RunConfig
from mars_lib.pipeline.context import Context
from mars_lib.pipeline.tables import stage_saver
from mars_lib.reward_models import checkpoints

OUT = "05_downstream"
WIN_TARGETS, WIN_OTHERS = ("mars_v1", "mars_v2"), ("none", "uniform", "won", "won_pace", "mars_v1")
IID_OTHERS = ("none", "none_matched", "uniform", "won", "reweight", "mars_v1")


_save = stage_saver(OUT)        # save(cfg, df, name) -> df, under <results>/<OUT>/


@dataclass
class Setup:
    """What every stage of notebook 05 reads: the Best-of-N pool (the task's test responses, one column
    r_<strategy>_<seed> per reward model), notebook 03's reward models and N, the draws per prompt."""
    cfg: RunConfig
    ctx: Context
    pool: pd.DataFrame
    heads: dict
    N: int


def setup(cfg: RunConfig) -> Setup:
    """Saves the config; loads notebook 03's reward models (from `cfg.models_dir` when set: linear heads,
    or fine-tuned RMs with rm full / lora) and scores every Best-of-N candidate with each."""
    cfg.save(cfg.path(OUT, "config.json"))
    ctx = context.setup(cfg)
    pool, phi = best_of_n.bon_pool(ctx, "test")
    heads = checkpoints.load_reward_models(cfg)
    scores = {f"r_{a}_{seed}": m.score(pool.prompt, pool.response, phi) for (a, seed), m in heads.items()}
    pool = pd.concat([pool, pd.DataFrame(scores, index=pool.index)], axis=1)   # one block, not a column per RM
    N = int(pool.groupby("prompt_id").size().min())
    print(f"{pool.prompt_id.nunique()} test prompts x N = {N} policy samples; {len(heads)} reward models")
    return Setup(cfg, ctx, pool, heads, N)


def best_of_n_curves(s: Setup) -> dict[str, pd.DataFrame]:
    """bon_curve.csv (`best_of_n.bon_curve`: each RM's unbiased expected gold score of best-of-n and
    KL_bon, every n ≤ N) and bon_reference.csv (a random sample and the oracle best of N)."""
    pool = s.pool
    curves = pd.concat([best_of_n.bon_curve(pool, f"r_{a}_{seed}").assign(strategy=a, seed=seed) for (a, seed) in s.heads],
                       ignore_index=True)
    ref = pd.DataFrame([{"reference": "random sample (n = 1)", "gold": pool.gold.mean()},
                        {"reference": "oracle (best gold of N)", "gold": pool.groupby("prompt_id").gold.max().mean()}])
    return {"curves": _save(s.cfg, curves, "bon_curve.csv"), "reference": _save(s.cfg, ref, "bon_reference.csv")}


def win_rates(s: Setup) -> dict[str, pd.DataFrame]:
    """win_rates.csv: per seed, the gold win rate (ties half) of each MARS RM's best-of-N pick against
    each baseline RM's pick on the same prompts; win_rate_summary.csv: the win rate over seeds and
    prompts with the package's one interval (`stats.two_stage_bootstrap` on the per-prompt outcomes:
    prompts × seeds, t interval), se and df — what the claims and figure 05_win_rates read."""
    cfg, pool, rows, outcomes = s.cfg, s.pool, [], []
    for target in WIN_TARGETS:
        for other in WIN_OTHERS:
            if target == other or target not in cfg.strategies or other not in cfg.strategies:
                continue
            for seed in cfg.seeds:
                a = best_of_n.bon_picks(pool, f"r_{target}_{seed}").set_index("prompt_id").gold
                b = best_of_n.bon_picks(pool, f"r_{other}_{seed}").set_index("prompt_id").gold.loc[a.index]
                rows.append({"policy_a": f"BoN-{s.N} {target}", "policy_b": f"BoN-{s.N} {other}", "a": target, "b": other,
                             "seed": seed, **best_of_n.win_rate(a.to_numpy(), b.to_numpy())})
                won = (a.to_numpy() > b.to_numpy()) + 0.5 * (a.to_numpy() == b.to_numpy())
                outcomes.append(pd.DataFrame({"strategy": f"{target}>{other}", "seed": seed, "cluster": a.index,
                                              "pair_id": a.index, "value": won}))
    wins = _save(cfg, pd.DataFrame(rows), "win_rates.csv")
    if not rows:
        return {"per_seed": wins, "summary": pd.DataFrame()}
    per_prompt = pd.concat(outcomes, ignore_index=True)
    if per_prompt.seed.nunique() >= 2:
        wr = stats.two_stage_bootstrap(per_prompt, n_boot=cfg.n_boot)
    else:           # one seed: no interval can cover seed variation
        wr = per_prompt.groupby("strategy", sort=False).value.mean().rename("mean").reset_index().assign(
            lo=float("nan"), hi=float("nan"), se=float("nan"), df=float("nan"), n_seeds=1,
            n_clusters=per_prompt.cluster.nunique())
    ab = wr.strategy.str.split(">", expand=True)
    wr = wr.assign(a=ab[0], b=ab[1]).rename(columns={"n_clusters": "prompts"})
    wr = wr[["a", "b", "mean", "lo", "hi", "se", "df", "n_seeds", "prompts"] + (["method"] if "method" in wr else [])]
    return {"per_seed": wins, "summary": _save(cfg, wr, "win_rate_summary.csv")}


def bon_examples(s: Setup) -> pd.DataFrame:
    """bon_examples.csv: the response each RM of the first seed picks for the first three prompts, with
    its gold score; prints the first prompt's picks."""
    cfg, pool, seed0, rows = s.cfg, s.pool, s.cfg.seeds[0], []
    ex = pool.drop_duplicates("prompt_id").head(3)[["prompt_id", "prompt"]]
    for pid, prompt in zip(ex.prompt_id, ex.prompt):
        g = pool[pool.prompt_id == pid]
        for a in cfg.strategies:
            pick = g.loc[g[f"r_{a}_{seed0}"].idxmax()]
            rows.append({"prompt": prompt, "rm": a, "gold": pick.gold, "response": pick.response})
    examples = _save(cfg, pd.DataFrame(rows), "bon_examples.csv")
    for r in examples.head(len(cfg.strategies)).itertuples():
        print(f"[{r.rm:8s} gold={r.gold:.2f}] {r.response[:200]!r}")
    return examples


def bon_iid(s: Setup) -> dict[str, pd.DataFrame]:
    """Best-of-N on the committed i.i.d. set (`bon_set.load_bon_set`; its first `cfg.bon_iid_prompts`
    prompts when set): every RM scores the same draws; bon_iid_summary.csv (per judge, n and strategy,
    interval over prompts and seeds) and bon_iid_paired.csv (each MARS RM against the baselines at the
    largest n). Prints how often the two judges of the set pick the same best draw."""
    cfg, heads = s.cfg, s.heads
    bon = bon_set.load_bon_set(cfg.task_path)
    if cfg.bon_iid_prompts is not None:                      # smoke: the first prompts only
        bon = bon[bon.prompt_id.isin(bon.prompt_id.drop_duplicates().head(cfg.bon_iid_prompts))].reset_index(drop=True)
    phi_iid = s.ctx.encoder.embed_pairs(bon.prompt.tolist(), bon.response.tolist(), desc="features: i.i.d. Best-of-N set")
    rewards = {(a, seed): m.score(bon.prompt, bon.response, phi_iid) for (a, seed), m in heads.items()}
    iid = best_of_n.bon_iid_per_prompt(bon, rewards)          # every judge column of the set, gold first
    summary = _save(cfg, best_of_n.bon_iid_summary(iid, n_boot=cfg.n_boot), "bon_iid_summary.csv")
    comparisons = [(m, o) for m in WIN_TARGETS for o in IID_OTHERS if m != o and {m, o} <= set(cfg.strategies)]
    paired = _save(cfg, best_of_n.bon_iid_paired(iid, comparisons, n_boot=cfg.n_boot), "bon_iid_paired.csv")
    print(f"{bon.prompt_id.nunique()} prompts x {bon.groupby('prompt_id').size().min()} i.i.d. draws; {len(heads)} reward models")
    other = next((j for j in ("gold1", "gold3") if j in bon), None)
    if other:                                                 # how far apart the two judges are on these draws
        best = bon.groupby("prompt_id")[["gold", other]].idxmax()
        print(f"gold and {other} pick the same best draw for {(best.gold == best[other]).mean():.0%} of prompts; "
              f"Spearman correlation of their scores {bon.gold.rank().corr(bon[other].rank()):.2f}")
    return {"summary": summary, "paired": paired}


def train_dpo(s: Setup) -> dict[str, pd.DataFrame]:
    """`dpo_stage.dpo_downstream` (adapters cached by their pairs and settings): dpo_labels.csv (each RM's
    label per pair), dpo_train_log.csv (per step) and dpo_answers.csv (every policy's judged answers).
    Empty when none of `cfg.dpo_strategies` is among `cfg.strategies`."""
    if not [x for x in s.cfg.dpo_strategies if x in s.cfg.strategies]:
        return {}
    dpo = dpo_stage.dpo_downstream(s.ctx, s.heads)
    return {"labels": _save(s.cfg, dpo["labels"], "dpo_labels.csv"),
            "train_log": _save(s.cfg, dpo["train_log"], "dpo_train_log.csv"),
            "answers": _save(s.cfg, dpo["answers"], "dpo_answers.csv")}


def dpo_results(s: Setup, dpo: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """From `train_dpo`'s tables: dpo_policy_stats.csv (mean judge score, KL estimate, label agreement,
    final loss per policy), dpo_win_rates.csv (per seed: every policy against the base, each MARS policy
    against each other policy; ± 1.96 SE over prompts), dpo_paired.csv (seeds pooled: mean judge-score
    differences paired over prompts and seeds, with the minimum detectable effect) and, when
    `cfg.judge_model` names a chat LM, dpo_win_rates_llm_judge.csv ("llm_judge")."""
    cfg, answers = s.cfg, dpo["answers"]
    out = {"stats": _save(cfg, dpo_stage.dpo_policy_stats(answers, dpo["labels"], dpo["train_log"], cfg.dpo_judges),
                          "dpo_policy_stats.csv"),
           "win_rates": _save(cfg, dpo_stage.dpo_win_rates(answers, cfg.dpo_judges), "dpo_win_rates.csv"),
           "paired": _save(cfg, dpo_stage.dpo_paired(answers, cfg.dpo_judges, n_boot=cfg.n_boot), "dpo_paired.csv")}
    if cfg.judge_model:          # the paper's protocol judges with an LLM; here any local / hub chat LM
        comps = list(dict.fromkeys(zip(out["win_rates"].a, out["win_rates"].b)))
        out["llm_judge"] = _save(cfg, dpo_stage.llm_judge_win_rates(cfg, answers, comps, seed=cfg.label_seed),
                                 "dpo_win_rates_llm_judge.csv")
    return out


def claims_table(s: Setup) -> pd.DataFrame | None:
    """`claims.write_claims`: results/claims.csv rebuilt from the saved tables, now with the Best-of-N
    rows. None, with a note, when this results folder has no notebook-03 outcomes (a run that reads
    another run's reward models through `models_dir`)."""
    cfg = s.cfg
    if not cfg.path("03_rm_training", "per_pair_test.parquet").exists():
        print(f"no notebook-03 outcomes under {cfg.results_dir}: no claims table (models read from {cfg.models_dir})")
        return None
    return claims.write_claims(cfg)
