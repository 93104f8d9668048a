"""The stages the notebooks run, as functions: each notebook calls these and only narrates.

Every stage reads what it needs from `results/` of earlier notebooks when present, and otherwise
recomputes it (so any notebook can run alone, e.g. `./run_all.sh --only 03`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .assets import cache_dir
from .augment import ParaphraseOp, build_pool
from .features import Encoder, FeatureCache, Pairs, featurize
from .metrics import mean_ci, paired_comparison
from .reward_model import HeadConfig, HeadRewardModel
from .tasks import Task, load_task
from .training import Candidates, RunResult, run_strategy


@dataclass
class Context:
    cfg: object
    task: Task
    encoder: Encoder

    def pairs(self, split: str) -> Pairs:
        """Featurized pairs of a split; the train split is cut to `cfg.n_base` pairs (seeded) when set."""
        df = self.task.split(split)
        if split == "train" and self.cfg.n_base is not None and self.cfg.n_base < len(df):
            df = df.sample(n=self.cfg.n_base, random_state=self.cfg.label_seed).reset_index(drop=True)
        return featurize(df, self.encoder, desc=f"features: {split}")


def setup(cfg) -> Context:
    """Runtime settings, the task (labels drawn with cfg.beta), and the cached feature encoder."""
    cfg.apply_runtime()
    task = load_task(cfg.task_path, beta=cfg.beta, label_seed=cfg.label_seed, n_prompts=cfg.n_prompts,
                     max_pairs_per_prompt=cfg.max_pairs_per_prompt)
    return Context(cfg, task, encoder_for(cfg))


def encoder_for(cfg) -> Encoder:
    """cfg.encoder: "minilm" (the offline asset) or a local folder / hub id of a sentence encoder
    (mean pooling, L2-normalised — all-mpnet-base-v2 in the paper profile). Cached by content."""
    cache = FeatureCache(cache_dir() / "features.sqlite")
    if cfg.encoder == "minilm":
        return Encoder.minilm(cache, max_length=cfg.max_length, device=cfg.device)
    return Encoder.from_pretrained(cfg.encoder, cache, max_length=cfg.max_length, device=cfg.device)


def policy_model(cfg):
    """(model, tokenizer, cache id) of the policy: SmolLM2-135M-Instruct offline (cfg.policy_model None)
    or any local folder / hub id of a chat causal LM (TinyLlama-1.1B-Chat in the paper profile)."""
    from .assets import smollm2_dir
    from .generation import load_causal_lm, smollm2_model_id
    if cfg.policy_model is None:
        model, tok, _ = load_causal_lm(str(smollm2_dir()), cfg.device)
        return model, tok, smollm2_model_id()
    return load_causal_lm(cfg.policy_model, cfg.device)


def new_head(cfg, dim: int, seed: int) -> HeadRewardModel:
    return HeadRewardModel(dim, HeadConfig(hidden=cfg.head_hidden, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           batch_size=cfg.batch_size, epochs=cfg.epochs_per_round, seed=seed))


def first_reward_model(cfg, base: Pairs, seed: int | None = None) -> HeadRewardModel:
    """The no-augmentation RM after the full schedule (rounds × epochs on the base pairs)."""
    seed = cfg.seeds[0] if seed is None else seed
    m = new_head(cfg, base.phi_c.shape[1], seed)
    m.fit(base.phi_c, base.phi_r, epochs=cfg.rounds * cfg.epochs_per_round, seed=seed)
    return m


def paraphrase_op(cfg) -> ParaphraseOp:
    return ParaphraseOp(n=cfg.n_paraphrases, paraphrase_prompt=cfg.paraphrase_prompt, seed=cfg.label_seed,
                        model=cfg.paraphraser, device=cfg.device)


def paraphrase_pool_frame(cfg, base_df: pd.DataFrame) -> pd.DataFrame:
    """The authors' pre-generated pool as a table: n×n paraphrase pairs per base pair (no features).

    Cached in the cache folder by content (base pair texts + operator parameters)."""
    op = paraphrase_op(cfg)
    h = hashlib.sha256(json.dumps([op.params(), base_df[["prompt", "chosen", "rejected"]].values.tolist()]).encode())
    path = cache_dir("pools") / f"pool-{h.hexdigest()[:16]}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    pool = build_pool(base_df, op)
    import io

    from .io import atomic_write_bytes
    buf = io.BytesIO()
    pool.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    return pool


def refinement(ctx: "Context", base_df: pd.DataFrame) -> pd.DataFrame:
    """MARS v2's semantic refinement of the base pairs (mars_lib.refine), cached by content.

    Every low-distance pair is rewritten when cfg.refine_max_pairs is None (the authors); otherwise a
    seeded random subset of that many low-distance pairs (the threshold is the whole set's mean)."""
    import io

    from .io import atomic_write_bytes
    from .refine import RefineConfig, semantic_distance, semantic_refine
    cfg = ctx.cfg
    rc = RefineConfig(attempts=cfg.refine_attempts, seed=cfg.label_seed)
    key = json.dumps([base_df[["prompt", "chosen", "rejected"]].values.tolist(), cfg.refine_model,
                      cfg.refine_max_pairs, ctx.encoder.encoder_id, repr(rc)])
    path = cache_dir("refine") / f"refine-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"
    if path.exists():
        out = pd.read_parquet(path)
        out.attrs.update(json.loads((path.with_suffix(".json")).read_text()))
        return out
    rows = None
    if cfg.refine_max_pairs is not None:
        d = semantic_distance(ctx.encoder, base_df.chosen.tolist(), base_df.rejected.tolist())
        low = np.flatnonzero(d < d.mean())
        if len(low) > cfg.refine_max_pairs:
            rows = np.sort(np.random.default_rng(cfg.label_seed).choice(low, cfg.refine_max_pairs, replace=False))
    gen = rewriter(cfg)
    out = semantic_refine(base_df, ctx.encoder, gen, rc, rows=rows)
    out.attrs["rewriter"] = gen.model_id
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(out.attrs, default=str).encode())
    atomic_write_bytes(path, buf.getvalue())
    return out


def rewriter(cfg):
    """The refinement's generator: SmolLM2 offline (cfg.refine_model None) or any local / hub causal LM."""
    from .generation import GenerationCache, Generator
    cache = GenerationCache(cache_dir() / "generations.sqlite")
    if cfg.refine_model is None:
        return Generator.smollm2(cache, device=cfg.device)
    return Generator.from_pretrained(cfg.refine_model, cache, device=cfg.device)


def source_frame(ctx: "Context", base: Pairs) -> pd.DataFrame:
    """The texts synthetic pairs are built from: the base pairs, semantically refined for the
    refined_paraphrase operator (same pair_id and labels; base training pairs stay original)."""
    if ctx.cfg.operator != "refined_paraphrase":
        return base.df
    ref = refinement(ctx, base.df)
    out = base.df.copy()
    out["chosen"], out["rejected"] = ref.chosen.to_numpy(), ref.rejected.to_numpy()
    out.attrs.update(ref.attrs)
    out.attrs["refined_pairs"] = int(ref.refinement_kept.sum())
    return out


def drop_label_flips(cfg, ctx: "Context", base: Pairs, pool: Pairs) -> Pairs:
    """cfg.flip_filter 'rm': drop synthetic pairs whose inherited label the no-augmentation head RM
    reverses (its reward gap on the synthetic pair < 0); the count is in attrs['flip_dropped']."""
    if cfg.flip_filter == "off" or len(pool.df) == 0:
        return pool
    rm = first_reward_model(cfg, base)
    keep = rm.reward_gap(pool.phi_c, pool.phi_r) >= 0
    out = pool.take(np.flatnonzero(keep))
    out.df.attrs.update({**pool.df.attrs, "flip_filter": cfg.flip_filter, "flip_dropped": int((~keep).sum())})
    return out


def synthetic_pool(cfg, base: Pairs, encoder: Encoder, sources: pd.DataFrame | None = None) -> Pairs:
    """The paraphrase pool of `paraphrase_pool_frame` (of `sources`' texts, default the base pairs),
    with the source's labels and features."""
    pool = paraphrase_pool_frame(cfg, base.df if sources is None else sources)
    # inherit the source's gold scores and label (the authors' assumption; nb 02 checks it)
    src = base.df.set_index("pair_id")
    for col in ("gold_chosen", "gold_rejected", "label_correct"):
        if col in src:
            pool[col] = src.loc[pool.source_id, col].to_numpy()
    out = featurize(pool, encoder, desc="features: synthetic pool")
    if sources is not None:
        out.df.attrs.update({k: v for k, v in sources.attrs.items() if k in ("refined_pairs", "threshold", "rewriter")})
    return out


def make_pool(cfg, ctx: "Context", base: Pairs) -> Pairs:
    """The synthetic pool of `cfg.operator` (paraphrase, refined_paraphrase or resample), then the
    optional label-flip filter."""
    if cfg.operator == "resample":
        pool = resample_synthetic_pool(ctx, base)
    else:
        pool = synthetic_pool(cfg, base, ctx.encoder, source_frame(ctx, base))
    return drop_label_flips(cfg, ctx, base, pool)


def resample_synthetic_pool(ctx: "Context", base: Pairs) -> Pairs:
    """Close-quality pairs among the task's policy samples, labelled by `cfg.labeler` (augment.resample_pool).

    gold: the simulated annotator (the task's own noise model, β = cfg.beta). rm: the no-augmentation
    head RM trained on the base pairs (self-training; it never reads gold scores). The pool keeps
    the labeler's accounting in attrs (labeler calls, generated tokens, band) and each pair's gold
    scores, so label fidelity is measured on the new responses themselves."""
    from .augment import resample_pool
    from .labelers import GoldLabeler, RewardModelLabeler
    from .tasks import load_policy_samples
    cfg = ctx.cfg
    samples = load_policy_samples(cfg.task_path)
    if cfg.labeler == "gold":
        labeler = GoldLabeler(samples, cfg.beta)
    else:
        rm = first_reward_model(cfg, base)
        labeler = RewardModelLabeler(lambda p, r: rm.score(ctx.encoder.embed_pairs(p, r, desc="features: labeler")))
    pool = resample_pool(base.df, samples, labeler, band=tuple(cfg.gap_band), seed=cfg.label_seed)
    if "gold_chosen" in pool:
        pool["label_correct"] = pool.gold_chosen > pool.gold_rejected
    out = featurize(pool, ctx.encoder, desc="features: resample pool")
    out.df.attrs.update(pool.attrs)
    return out


def _pool_with(ctx: "Context", base: Pairs, **changes):
    """(cfg, pool) for this run's config with `changes` applied (always pool mode)."""
    import dataclasses
    cfg = dataclasses.replace(ctx.cfg, pool_mode="pool", **changes)
    return cfg, make_pool(cfg, dataclasses.replace(ctx, cfg=cfg), base)


def resample_with(ctx: "Context", base: Pairs, labeler: str) -> tuple[Pairs, pd.DataFrame]:
    """The resample pool under another labeler than cfg's: (pool, its accounting row)."""
    cfg, pool = _pool_with(ctx, base, operator="resample", labeler=labeler)
    return pool, pool_accounting(cfg, pool)


def run_extra_operators(ctx: "Context", base: Pairs, evals: dict[str, Pairs]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy (but won_pace) again with each of `cfg.extra_operators` (pool mode, same budget,
    schedule and seeds): (accounting rows, tidy history with an `operator` column)."""
    acc, hist = [], []
    for op in [o for o in ctx.cfg.extra_operators if o != ctx.cfg.operator]:
        cfg, pool = _pool_with(ctx, base, operator=op)
        acc.append(pool_accounting(cfg, pool))
        runs = train_strategies(cfg, base, pool, evals, ctx.encoder, desc=f"{op}: strategies × seeds",
                                strategies=tuple(s for s in cfg.strategies if s != "won_pace"))
        hist.append(pd.concat([r.history for r in runs.values()], ignore_index=True).assign(operator=op))
    if not hist:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(acc, ignore_index=True), pd.concat(hist, ignore_index=True)


def pool_accounting(cfg, pool: Pairs) -> pd.DataFrame:
    """One row: what the synthetic pool cost and how faithful its labels are (gold where known)."""
    a = pool.df.attrs
    row = {"operator": cfg.operator, "labeler": a.get("labeler", f"inherited ({cfg.operator})"),
           "pool_pairs": len(pool.df), "labeler_calls": a.get("labeler_calls", 0),
           "generated_tokens": a.get("generated_tokens", 0), "candidates": a.get("candidates"),
           "kept": a.get("kept"), "band": str(a.get("band_abs")) if "band_abs" in a else None,
           "refined_sources": a.get("refined_pairs"), "flip_dropped": a.get("flip_dropped", 0)}
    if {"gold_chosen", "gold_rejected"} <= set(pool.df) and cfg.operator == "resample":
        row["label_agrees_with_gold"] = float((pool.df.gold_chosen > pool.df.gold_rejected).mean())
        row["mean_abs_gold_gap"] = float((pool.df.gold_chosen - pool.df.gold_rejected).abs().mean())
    return pd.DataFrame([row])


def on_demand_builder(cfg, base: Pairs, encoder: Encoder, sources: pd.DataFrame | None = None):
    """pool_mode 'on_demand': exactly b_i fresh paraphrase pairs for source i (of `sources`' texts,
    default the base pairs), featurized (cached)."""
    from .augment import draw_on_demand
    op = paraphrase_op(cfg)
    src = base.df.set_index("pair_id")
    texts = base.df if sources is None else sources

    def build(budgets, round_seed: int) -> Pairs:
        syn = draw_on_demand(texts, budgets, op, round_seed)
        for col in ("gold_chosen", "gold_rejected", "label_correct"):
            if col in src and len(syn):
                syn[col] = src.loc[syn.source_id, col].to_numpy()
        return featurize(syn, encoder, desc="features: on-demand synthetic")
    return build


def model_factory(cfg):
    """None for the head model (built by the rounds loop); else a seed -> FinetunedRewardModel builder."""
    if cfg.rm == "head":
        return None
    from .assets import minilm_dir
    from .finetune import FinetuneConfig, FinetunedRewardModel

    def make(seed: int):
        return FinetunedRewardModel(FinetuneConfig(
            model=cfg.rm_model or str(minilm_dir()), lora=cfg.rm == "lora", lr=cfg.ft_lr, batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum, max_length=cfg.max_length, epochs=cfg.epochs_per_round,
            precision=cfg.precision, device=cfg.device, seed=seed))
    return make


def policy_candidates(ctx: Context, base: Pairs) -> Candidates:
    """The task's committed policy samples (N per train prompt) for the prompts of `base`, featurized.

    These are what Pace et al.'s West-of-N (`won_pace`) ranks; regenerate with
    `python -m mars_lib.tasks samples` (recorded in the task folder's policy_samples.json)."""
    from .tasks import load_policy_samples
    ps = load_policy_samples(ctx.cfg.task_path)
    ps = ps[ps.prompt_id.isin(set(base.df.prompt_id))].reset_index(drop=True)
    if ps.empty:
        raise ValueError("no policy samples for the base prompts; regenerate them (python -m mars_lib.tasks samples)")
    phi = ctx.encoder.embed_pairs(ps.prompt.tolist(), ps.response.tolist(), desc="features: policy samples")
    return Candidates(ps, phi)


def train_strategies(cfg, base: Pairs, pool: Pairs, evals: dict[str, Pairs], encoder: Encoder | None = None,
                     desc: str = "strategies × seeds", policy: Candidates | None = None,
                     strategies: tuple[str, ...] | None = None, sources: pd.DataFrame | None = None
                     ) -> dict[tuple[str, int], RunResult]:
    """Every strategy × seed, same budget and schedule, with the RM kind of `cfg.rm`. `sources`: the
    texts on-demand synthetic pairs are built from (`source_frame`; needed for refined_paraphrase)."""
    from tqdm.auto import tqdm
    if cfg.pool_mode == "on_demand" and cfg.operator == "refined_paraphrase" and sources is None:
        raise ValueError("pool_mode='on_demand' with operator 'refined_paraphrase' needs the refined source "
                         "texts: pass sources=experiment.source_frame(ctx, base)")
    on_demand = on_demand_builder(cfg, base, encoder, sources) if cfg.pool_mode == "on_demand" else None
    make = model_factory(cfg)
    out = {}
    jobs = [(s, seed) for seed in cfg.seeds for s in (strategies or cfg.strategies)]
    for s, seed in tqdm(jobs, desc=desc):
        out[(s, seed)] = run_strategy(s, base, pool, evals, cfg, seed, on_demand, make_model=make, policy=policy)
    return out


def human_track(ctx: Context) -> tuple[Pairs, dict[str, Pairs]]:
    """The real-human track `cfg.human_track` as featurized train / val / test pairs.

    chitchat (offline): conversations from one starter prompt, chosen = higher human rating
    (rule in `mars_lib.tracks.chitchat_pairs`); the hub tracks need network access (paper profile).
    `cfg.human_track_path` replaces the hub id (a local copy in the hub's format). `cfg.human_max_pairs`
    caps the train pairs (a seeded subset; the authors' fixed 1k) and `cfg.human_eval_max_pairs` val / test.
    """
    from .tracks import load_track
    cfg = ctx.cfg
    df = load_track(cfg.human_track, "all") if cfg.human_track == "chitchat" else pd.concat(
        [load_track(cfg.human_track, s, path=cfg.human_track_path) for s in ("train", "test")], ignore_index=True)
    out = {}
    for split in ("train", "val", "test"):
        part = df[df.split == split]
        cap = cfg.human_max_pairs if split == "train" else cfg.human_eval_max_pairs
        if cap is not None and len(part) > cap:
            part = part.sample(n=cap, random_state=cfg.label_seed)
        if len(part):
            out[split] = featurize(part.reset_index(drop=True), ctx.encoder, desc=f"features: {cfg.human_track} {split}")
    if "train" not in out or "test" not in out:
        raise ValueError(f"track {cfg.human_track!r} has no train or no test pairs")
    return out.pop("train"), out


def final_summary(history: pd.DataFrame, cfg, split: str = "test") -> pd.DataFrame:
    """Mean and 95 % bootstrap CI over seeds of each metric at the last round."""
    last = history[(history["round"] == history["round"].max()) & (history.split == split)]
    rows = []
    for (s, m), g in last.groupby(["strategy", "metric"], sort=False):
        rows.append({"strategy": s, "metric": m, **mean_ci(g.sort_values("seed").value.to_numpy(), n_boot=cfg.n_boot)})
    return pd.DataFrame(rows)


def paired_vs(history: pd.DataFrame, cfg, target: str, metric: str = "accuracy", split: str = "test") -> pd.DataFrame:
    """`target` vs every other strategy on the same seeds: difference, CI, P(improvement)."""
    last = history[(history["round"] == history["round"].max()) & (history.split == split) & (history.metric == metric)]
    piv = last.pivot_table(index="seed", columns="strategy", values="value")
    rows = []
    for other in piv.columns:
        if other != target and target in piv:
            rows.append({"strategy": target, "vs": other, "metric": metric,
                         **paired_comparison(piv[target].to_numpy(), piv[other].to_numpy(), n_boot=cfg.n_boot)})
    return pd.DataFrame(rows)


def save_heads(results: dict, cfg, folder: str = "03_rm_training") -> pd.DataFrame:
    """Save every trained head as safetensors (tiny: D + 1 floats for the linear head).

    Fine-tuned models are saved whole (`FinetunedRewardModel.save`) under `<folder>/models/`."""
    from safetensors.torch import save_file
    rows = []
    for (s, seed), r in results.items():
        p = saved_model_path(cfg, s, seed, folder)
        if isinstance(r.model, HeadRewardModel):
            save_file({k: v.contiguous() for k, v in r.model.state_dict().items()}, str(p))
        else:
            r.model.save(p)
        rows.append({"strategy": s, "seed": seed, "path": str(p.relative_to(cfg.path(folder).parent.parent))})
    return pd.DataFrame(rows)


def load_heads(cfg, dim: int, folder: str = "03_rm_training") -> dict[tuple[str, int], HeadRewardModel]:
    """The heads saved by notebook 03 for this config's strategies and seeds (safetensors only)."""
    from safetensors.torch import load_file
    out = {}
    for s in cfg.strategies:
        for seed in cfg.seeds:
            p = saved_model_path(cfg, s, seed, folder)
            if not p.exists():
                raise FileNotFoundError(f"{p} missing: run notebook 03 first (./run_all.sh --only 03)")
            m = new_head(cfg, dim, seed)
            m.load_state_dict(load_file(str(p)))
            out[(s, seed)] = m
    return out


def saved_model_path(cfg, strategy: str, seed: int, folder: str = "03_rm_training"):
    """Where notebook 03 saves a reward model: <folder>/models/<strategy>_seed<k>[.safetensors]."""
    name = f"{strategy}_seed{seed}" + (".safetensors" if cfg.rm == "head" else "")
    return cfg.path(folder, "models", name)


def load_reward_models(cfg, dim: int, folder: str = "03_rm_training") -> dict:
    """Every reward model notebook 03 saved for this config's strategies and seeds, of the kind
    `cfg.rm`: linear heads ("head", `load_heads`) or fine-tuned models ("full" / "lora",
    `FinetunedRewardModel.load` onto cfg.device). Score either with `score_responses`."""
    if cfg.rm == "head":
        return load_heads(cfg, dim, folder)
    from .finetune import FinetunedRewardModel
    out = {}
    for s in cfg.strategies:
        for seed in cfg.seeds:
            p = saved_model_path(cfg, s, seed, folder)
            if not (p / "mars_finetune.json").exists():
                raise FileNotFoundError(f"{p} missing: run notebook 03 with rm={cfg.rm!r} first (./run_all.sh --only 03)")
            out[(s, seed)] = FinetunedRewardModel.load(p, device=cfg.device)
    return out


def score_responses(rm, prompts, responses, phi: np.ndarray | None = None) -> np.ndarray:
    """r(x, y) for every (prompt, response) with either RM kind: a head scores the encoder features
    `phi` [N, D] of the same rows; a fine-tuned RM reads the texts. [N] float."""
    if isinstance(rm, HeadRewardModel):
        if phi is None:
            raise ValueError("score_responses: a head reward model needs the features phi of the rows")
        return rm.score(phi)
    return rm.score(list(prompts), list(responses))


def rewardbench_eval(ctx: Context, models: dict, trained_on: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every reward model on RewardBench (cfg.rewardbench: hub id or local copy; mars_lib.rewardbench).

    Ours: the whole `filtered` split, section scores with RewardBench's official weighting, per
    (strategy, seed). The authors' [C2]: the `raw` split, two stratified 500-pair subsamples (seeds
    188, 144), size-weighted sections, mean ± population std over the subsamples.
    Returns (ours, authors) as tidy tables with columns strategy, seed, trained_on, section, ..."""
    from .rewardbench import authors_protocol, load_rewardbench, section_scores
    cfg = ctx.cfg
    # featurized like every evaluation set (cached by content), so both RM kinds score through pair_scores
    data = {split: featurize(load_rewardbench(cfg.rewardbench, split), ctx.encoder, desc=f"features: RewardBench {split}")
            for split in ("filtered", "raw")}
    rows_a, rows_o = [], []
    for (s, seed), m in models.items():
        df = data["filtered"].df
        rc, rr = m.pair_scores(data["filtered"])
        for sec, v in section_scores(df.subset, rc > rr).items():
            rows_o.append({"strategy": s, "seed": seed, "trained_on": trained_on, "section": sec, "value": v,
                           "pairs": int(df.section.eq(sec).sum()) if sec != "Core" else int(df.section.notna().sum())})
        rc, rr = m.pair_scores(data["raw"])
        rows_a.append(authors_protocol(data["raw"].df.subset, rc - rr).assign(strategy=s, seed=seed, trained_on=trained_on))
    return pd.DataFrame(rows_o), pd.concat(rows_a, ignore_index=True)


def label_fidelity(cfg, sources: Pairs, source_gap: np.ndarray, judge, encoder: Encoder) -> pd.DataFrame:
    """Gold-judge every synthetic pair of the given sources (what no published implementation measures).

    One row per synthetic pair: source_id, source reward gap, gold of the synthetic chosen/rejected,
    whether the synthetic pair keeps its source's gold order (`keeps_gold_order`), whether its
    inherited label agrees with gold (`label_correct_syn`), and meaning preservation (MiniLM
    cosine of each paraphrased response to its original).
    """
    op = paraphrase_op(cfg)
    pool = build_pool(sources.df, op, progress=False)
    if pool.empty:
        return pd.DataFrame()
    g = judge.score(pool.prompt.tolist() + pool.prompt.tolist(), pool.chosen.tolist() + pool.rejected.tolist())
    n = len(pool)
    src = sources.df.set_index("pair_id")
    gap = pd.Series(source_gap, index=sources.df.pair_id)
    orig_c = src.loc[pool.source_id, "chosen"].tolist()
    orig_r = src.loc[pool.source_id, "rejected"].tolist()
    e = encoder.embed(pool.chosen.tolist() + orig_c + pool.rejected.tolist() + orig_r, progress=False)
    cos_c = (e[:n] * e[n:2 * n]).sum(1)
    cos_r = (e[2 * n:3 * n] * e[3 * n:]).sum(1)
    src_order = np.sign(src.loc[pool.source_id, "gold_chosen"].to_numpy() - src.loc[pool.source_id, "gold_rejected"].to_numpy())
    out = pd.DataFrame({"source_id": pool.source_id, "syn_index": pool.syn_index,
                        "source_reward_gap": gap.loc[pool.source_id].to_numpy(),
                        "source_label_correct": src.loc[pool.source_id, "label_correct"].to_numpy(),
                        "gold_chosen_syn": g[:n], "gold_rejected_syn": g[n:],
                        "cos_chosen": cos_c, "cos_rejected": cos_r})
    out["keeps_gold_order"] = np.sign(out.gold_chosen_syn - out.gold_rejected_syn) == src_order
    out["label_correct_syn"] = out.gold_chosen_syn >= out.gold_rejected_syn
    return out


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


def _last_layer_and_head(model) -> list:
    """The parameters of the last transformer block and of the score head (classifier / score /
    pooler), found by name for any AutoModelForSequenceClassification (BERT, DeBERTa, Llama, ...)."""
    import re
    named = list(model.named_parameters())
    ids = [int(m.group(1)) for n, _ in named for m in [re.search(r"\.layers?\.(\d+)\.", n)] if m]
    if not ids:
        raise ValueError(f"{type(model).__name__}: no numbered transformer layers found among its parameters")
    last = re.compile(rf"\.layers?\.{max(ids)}\.")
    heads = ("classifier", "score", "pooler")
    out = [p for n, p in named if last.search(n) or n.split(".")[0] in heads]
    return out


def finetuned_curvature(cfg, pairs: Pairs, n_pairs: int = 16, lanczos_iters: int = 12, hutchinson_samples: int = 12,
                        max_length: int | None = None, seed: int = 0, model_path=None) -> pd.DataFrame:
    """Curvature of the BT loss for a *fine-tunable* transformer RM, by Hessian-vector products.

    model_path None: the pretrained MiniLM as AutoModelForSequenceClassification(num_labels=1) with a
    seeded score head (max_length default 128). Otherwise a reward model saved by notebook 03
    (`FinetunedRewardModel.save`: full, or LoRA merged into its backbone) at its trained parameters
    (max_length default cfg.max_length). Eager attention (SDPA has no double backward on CPU);
    float64 on CPU, float32 on CUDA. Parameters = the last transformer block + the score head.
    On a seeded random batch of `n_pairs` pairs: Lanczos top-3 eigenvalues (`lanczos_iters` HVPs) and
    a Hutchinson trace estimate (`hutchinson_samples` HVPs, with its standard error).
    """
    import time

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .assets import minilm_dir
    from .curvature import bt_hvp_operator, hutchinson_trace, lanczos_top
    from .features import rm_text
    torch.manual_seed(seed)
    dtype = torch.float64 if cfg.device == "cpu" else torch.float32
    if model_path is None:
        src, max_length = minilm_dir(), max_length or 128
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, attn_implementation="eager",
                                                                   dtype=dtype)
        tok.truncation_side = "left"
    else:
        from .finetune import FinetunedRewardModel, _is_peft
        rm = FinetunedRewardModel.load(model_path, device="cpu")      # pad token and truncation side set there
        tok, model, max_length = rm.tokenizer, rm.model.to(dtype), max_length or cfg.max_length
        model = model.merge_and_unload() if _is_peft(model) else model      # merged in the HVP's dtype
        model.set_attn_implementation("eager")
    model = model.to(device=cfg.device, dtype=dtype).eval()
    params = _last_layer_and_head(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    rows = np.random.default_rng(seed).choice(len(pairs.df), size=min(n_pairs, len(pairs.df)), replace=False)
    df = pairs.df.iloc[rows]
    enc = lambda col: {k: v.to(cfg.device) for k, v in tok([rm_text(p, r) for p, r in zip(df.prompt, df[col])],  # noqa: E731
                       padding=True, truncation=True, max_length=max_length, return_tensors="pt").items()}
    t0 = time.perf_counter()
    matvec, dim = bt_hvp_operator(model, enc("chosen"), enc("rejected"), params)
    top = lanczos_top(matvec, dim, k=3, iters=lanczos_iters, seed=seed)
    t1 = time.perf_counter()
    tr = hutchinson_trace(matvec, dim, n_samples=hutchinson_samples, seed=seed)
    t2 = time.perf_counter()
    return pd.DataFrame([
        {"quantity": "lambda_1", "value": top[0], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "lambda_2", "value": top[1], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "lambda_3", "value": top[2], "se": float("nan"), "iterations": lanczos_iters, "seconds": t1 - t0},
        {"quantity": "trace (Hutchinson)", "value": tr["trace"], "se": tr["se"], "iterations": hutchinson_samples,
         "seconds": t2 - t1}]).assign(params=dim, pairs=len(df), max_length=max_length)


DPO_EVAL_SAMPLE = 5000      # sample index of the DPO evaluation answers (task samples: 0-3, policy samples 1000+)


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
    judge = GoldJudge.offline(encoder=ctx.encoder)
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
            a_wins = score_responses(rm, a.prompt, a.response, pa) >= score_responses(rm, b.prompt, b.response, pb)
            pairs = pd.DataFrame({"prompt_id": a.prompt_id, "prompt": a.prompt,
                                  "chosen": np.where(a_wins, a.response, b.response),
                                  "rejected": np.where(a_wins, b.response, a.response)})
            gold_agrees = np.where(a_wins, a.gold >= b.gold, b.gold >= a.gold)
            labels.append(pairs[["prompt_id"]].assign(strategy=strategy, seed=seed, a_preferred=a_wins,
                                                      agrees_with_gold=gold_agrees))
            dcfg = DPOConfig(epochs=cfg.dpo_epochs, lr=cfg.dpo_lr, device=cfg.device, precision=cfg.precision, seed=seed)
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
    if not labels:
        raise ValueError(f"dpo_downstream: none of dpo_strategies {cfg.dpo_strategies} x dpo_seeds {cfg.dpo_seeds} "
                         f"was trained (strategies {cfg.strategies}, seeds {cfg.seeds})")
    return {"labels": pd.concat(labels, ignore_index=True), "train_log": pd.concat(logs, ignore_index=True),
            "answers": pd.concat(answers, ignore_index=True)}


def llm_judge_win_rates(cfg, answers: pd.DataFrame, comparisons: list[tuple[str, str]], seed: int = 0) -> pd.DataFrame:
    """Win rates of policy a over policy b on the same prompts under an LLM judge (cfg.judge_model:
    a local folder or hub id of a chat LM; the paper's protocol uses a strong API model, which is the
    user's own plug-in). Each prompt's two answers are shown once, in a randomized A/B order
    (`labelers.LLMJudgeLabeler`, both_orders=False); a > b when the judge's log-odds favour a, ties
    (log-odds exactly 0) count half. Columns as `downstream.win_rate` plus a, b, judge."""
    from .downstream import win_rate
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
