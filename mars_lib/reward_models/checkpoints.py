"""Where reward models are saved and how they come back: notebook 03 saves, notebooks 04 and 05 load.

One layout for every kind: `<results>/<folder>/models/<strategy>_seed<k>` — a `.safetensors` file
for a head (`cfg.rm == "head"`), a folder for a fine-tuned model (`"full"` / `"lora"`). Every model
saves itself (`RewardModel.save`); the config's `rm` names the kind that loads it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mars_lib.pipeline.config import RunConfig
from mars_lib.reward_models.head import HeadConfig, HeadRewardModel, RewardModel
from mars_lib.reward_models.finetune import FinetunedRewardModel


def saved_model_path(cfg: RunConfig, strategy: str, seed: int, folder: str = "03_rm_training") -> Path:
    """Where notebook 03 saves a reward model: <folder>/models/<strategy>_seed<k>[.safetensors]."""
    name = f"{strategy}_seed{seed}" + (".safetensors" if cfg.rm == "head" else "")
    return cfg.path(folder, "models", name)


def save_models(results: dict, cfg: RunConfig, folder: str = "03_rm_training") -> pd.DataFrame:
    """Save the model of every (strategy, seed) run; a table of where each went (relative paths)."""
    rows = []
    for (s, seed), r in results.items():
        p = r.model.save(saved_model_path(cfg, s, seed, folder))
        rows.append({"strategy": s, "seed": seed, "path": str(p.relative_to(cfg.path(folder).parent.parent))})
    return pd.DataFrame(rows)


def _load_one(cfg: RunConfig, path: Path, seed: int) -> RewardModel:
    if cfg.rm == "head":
        return HeadRewardModel.load(path, HeadConfig.from_run(cfg, seed))
    return FinetunedRewardModel.load(path, device=cfg.device)


def load_reward_models(cfg: RunConfig, folder: str = "03_rm_training") -> dict[tuple[str, int], RewardModel]:
    """Every reward model notebook 03 saved for this config's strategies and seeds, of the kind
    `cfg.rm`, keyed by (strategy, seed), from `cfg.models_dir` when set (a profile that reads another
    run's models, e.g. cpu_dpo) else `cfg.results_dir`. Score any of them with `model.score(prompts, responses, phi)`."""
    if cfg.models_dir is not None:
        cfg = cfg.replace(results_dir=cfg.models_dir)
    out = {}
    for s in cfg.strategies:
        for seed in cfg.seeds:
            p = saved_model_path(cfg, s, seed, folder)
            if not p.exists():
                raise FileNotFoundError(f"{p} missing: run notebook 03 with rm={cfg.rm!r}, strategy {s!r} and seed "
                                        f"{seed} first (./run_all.sh --only 03)")
            out[(s, seed)] = _load_one(cfg, p, seed)
    return out
