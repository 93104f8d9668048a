"""A run's setup and factories: the task, the cached encoder, the policy, and new reward models.

`setup(cfg)` is the first call of every notebook; the factories build what later stages need from
the one config object (`config.RunConfig`), so no stage constructs a model by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mars_lib.pipeline.assets import cache_dir, minilm_dir, smollm2_dir
from mars_lib.pipeline.split_assets import SPLIT_ASSETS, mpnet_dir
from mars_lib.reward_models.features import Encoder, FeatureCache, Pairs, featurize
from mars_lib.reward_models.head import HeadConfig, HeadRewardModel
from mars_lib.data.gold_task import Task, load_task
from mars_lib.synthetic.generation import GenerationCache, Generator, load_causal_lm, smollm2_model_id
from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel

if TYPE_CHECKING:
    from mars_lib.pipeline.config import RunConfig


@dataclass
class Context:
    cfg: RunConfig
    task: Task
    encoder: Encoder

    def pairs(self, split: str) -> Pairs:
        """Featurized pairs of a split; the train split is cut to `cfg.n_base` pairs (seeded) when set."""
        df = self.task.split(split)
        if split == "train" and self.cfg.n_base is not None and self.cfg.n_base < len(df):
            df = df.sample(n=self.cfg.n_base, random_state=self.cfg.label_seed).reset_index(drop=True)
        return featurize(df, self.encoder, desc=f"features: {split}")


def setup(cfg: RunConfig) -> Context:
    """Runtime settings, the task (labels drawn with cfg.beta), and the cached feature encoder."""
    cfg.apply_runtime()
    task = load_task(cfg.task_path, beta=cfg.beta, label_seed=cfg.label_seed, n_prompts=cfg.n_prompts,
                     max_pairs_per_prompt=cfg.max_pairs_per_prompt)
    return Context(cfg, task, encoder_for(cfg))


def encoder_for(cfg: RunConfig) -> Encoder:
    """cfg.encoder: "minilm" or "mpnet" (the offline all-MiniLM-L6-v2 / all-mpnet-base-v2 assets) or a local
    folder / hub id of a sentence encoder (mean pooling, L2-normalised — all-mpnet-base-v2 from the hub in
    the paper profile). Cached by content."""
    cache = FeatureCache(cache_dir() / "features.sqlite")
    if cfg.encoder == "minilm":
        return Encoder.minilm(cache, max_length=cfg.max_length, device=cfg.device)
    if cfg.encoder == "mpnet":
        # batches of 16, not 64: on 2 cores as fast, the same vectors, ~0.5 GiB less at its peak
        # (python bench/encoder_memory.py: results/bench/encoder_memory_mpnet.csv)
        return Encoder(mpnet_dir(), f"all-mpnet-base-v2@{SPLIT_ASSETS['mpnet'].sha256[:12]}", cache,
                       max_length=cfg.max_length, device=cfg.device, batch_size=16)
    return Encoder.from_pretrained(cfg.encoder, cache, max_length=cfg.max_length, device=cfg.device)


def policy_model(cfg: RunConfig):
    """(model, tokenizer, cache id) of the policy: SmolLM2-135M-Instruct offline (cfg.policy_model None)
    or any local folder / hub id of a chat causal LM (TinyLlama-1.1B-Chat in the paper profile)."""
    if cfg.policy_model is None:
        model, tok, _ = load_causal_lm(str(smollm2_dir()), cfg.device)
        return model, tok, smollm2_model_id()
    return load_causal_lm(cfg.policy_model, cfg.device)


def new_head(cfg: RunConfig, dim: int, seed: int) -> HeadRewardModel:
    return HeadRewardModel(dim, HeadConfig.from_run(cfg, seed))


def first_reward_model(cfg: RunConfig, base: Pairs, seed: int | None = None) -> HeadRewardModel:
    """The no-augmentation RM after the full schedule (rounds × epochs on the base pairs)."""
    seed = cfg.seeds[0] if seed is None else seed
    m = new_head(cfg, base.phi_c.shape[1], seed)
    m.fit(base.phi_c, base.phi_r, epochs=cfg.rounds * cfg.epochs_per_round, seed=seed)
    return m


def model_factory(cfg: RunConfig, dim: int | None = None):
    """A seed -> reward model builder of the config's kind: the head on `dim`-wide features (cfg.rm
    "head"), else a fine-tuned FinetunedRewardModel."""
    if cfg.rm == "head":
        if dim is None:
            raise ValueError("the head reward model needs the feature size: model_factory(cfg, dim)")
        return lambda seed: new_head(cfg, dim, seed)

    def make(seed: int):
        return FinetunedRewardModel(FinetuneConfig(
            model=cfg.rm_model or str(minilm_dir()), lora=cfg.rm == "lora", lr=cfg.ft_lr, batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum, max_length=cfg.max_length, epochs=cfg.epochs_per_round,
            precision=cfg.precision, device=cfg.device, seed=seed))
    return make


def rewriter(cfg: RunConfig):
    """The refinement's generator: SmolLM2 offline (cfg.refine_model None) or any local / hub causal LM."""
    cache = GenerationCache(cache_dir() / "generations.sqlite")
    if cfg.refine_model is None:
        return Generator.smollm2(cache, device=cfg.device)
    return Generator.from_pretrained(cfg.refine_model, cache, device=cfg.device)
