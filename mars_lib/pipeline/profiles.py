"""Named sets of defaults for `RunConfig` (mars_lib.pipeline.config): the profiles (smoke / cpu / paper) and
the authors' two settings as presets. Values are named flat, as in a notebook's parameter cell."""
from __future__ import annotations

PROFILES: dict[str, dict] = {
    # every notebook end to end in minutes (CI): a slice of the task, fewer seeds/rounds
    "smoke": {"results_dir": "results/smoke", "seeds": (0, 1), "n_prompts": 100, "human_max_pairs": 120,
              "human_eval_max_pairs": 60, "rounds": 2, "n_paraphrases": 3, "n_boot": 200,
              "curvature_taus": (0.0, 0.5, 2.0), "fidelity_sources": 10, "refine_max_pairs": 6,
              "dpo_strategies": ("none", "mars_v1"), "dpo_train_prompts": 4, "bon_iid_prompts": 24, "dpo_eval_prompts": 4, "tau_grid": (0.1, 5.0),
              "hvp_pairs": 8, "lanczos_iters": 8, "hutchinson_samples": 8,
              # the when-MARS-helps map (mars_lib.pipeline.helps_map) as one cell: v1 at one τ on the paraphrase pool
              "helps_betas": (1.0,), "helps_taus_v1": (20.0,), "helps_taus_v2": (), "helps_operators": ("paraphrase",)},
    # the reference run: the whole offline task
    "cpu": {},
    # notebook 03 with the when-MARS-helps map (mars_lib.pipeline.helps_map, docs/method.md §12): 4 β × 2 operators ×
    # (4 + 4 τ + uniform_stratified) × 10 seeds = 720 head runs (~14 min on 2 cores with the cpu run's features
    # cached); the rest of notebook 03 cut to the gold task, three arms and one τ so that the map is the cost
    # (./run_all.sh --profile cpu_map --only 03; results/cpu_map/)
    "cpu_map": {"results_dir": "results/cpu_map", "helps_betas": (0.05, 0.5, 1.0, 2.0), "helps_taus_v1": (0.1, 0.8, 2.0, 8.0),
                "helps_taus_v2": (0.1, 0.5, 0.75, 1.5), "helps_operators": ("paraphrase", "resample"),
                "strategies": ("none_matched", "uniform_stratified", "mars_v1"), "human_track": (), "extra_operators": (),
                "tau_grid": (0.1,)},
    # notebook 03 with the stronger-backbone head regime (mars_lib.pipeline.backbones, docs/method.md §13): the
    # linear head on all-mpnet-base-v2 beside MiniLM on HH-RLHF (120 base pairs, 300 test pairs, the cpu run's
    # pool settings), the compute-matched arms, 10 seeds; the gold task's MiniLM features come from the cpu run's
    # cache. mpnet encodes ~1-1.5 HH texts/s on 2 cores, so its ~2k texts are most of the cost
    # (./run_all.sh --profile cpu_backbones --only 03; results/cpu_backbones/)
    "cpu_backbones": {"results_dir": "results/cpu_backbones", "head_backbones": ("mpnet",), "human_track": ("hh-rlhf",),
                      "human_max_pairs": 120, "human_eval_max_pairs": 300, "extra_operators": (), "tau_grid": (0.1,),
                      "strategies": ("none_matched", "uniform_stratified", "mars_v1", "mars_v1@ess0.5", "mars_v2@ess0.5")},
    # notebook 05's DPO at a size the cpu profile's 45-min cold budget cannot hold (~1 h on 2 cores after a
    # cpu run): 160 held-out prompts, 2 DPO seeds, MARS v1 and the baselines it must beat — none_matched
    # is the compute-matched no-augmentation arm — judged by the task's judge (gold3 in task v3: shares no
    # model with the policy or the RMs); the cpu run's reward models
    # (./run_all.sh --profile cpu_dpo --only 05; -p dpo_judges '["gold", "gold1"]' adds gold-judge-1)
    "cpu_dpo": {"results_dir": "results/cpu_dpo", "models_dir": "results", "dpo_eval_prompts": 160, "dpo_seeds": (0, 1),
                "dpo_strategies": ("none", "none_matched", "uniform", "mars_v1"), "dpo_judges": ("gold",)},
    # the paper's setting on one GPU (docs/method.md §4; docs/reference.md "The paper profile"): hub ids in rm_model, encoder,
    # paraphraser, policy_model, human_track, rewardbench — each replaceable by a local copy
    "paper": {"results_dir": "results/paper", "offline": False, "device": "cuda", "encoder": "sentence-transformers/all-mpnet-base-v2",
              "rm": "full", "rm_model": "microsoft/deberta-v3-base", "ft_lr": 2e-5,
              # the authors' effective batch of 64 pairs as 16 x 4 instead of their 4 x 16 (the same gradient per
              # step), in bf16: 218 pairs/s against 65 at 4 x 16 fp32 and 51 at 4 x 16 bf16 on an H200; DPO keeps
              # micro-batches of 4, where fp32 is the faster (TinyLlama 18 vs 16 pairs/s; SmolLM2 28 vs 8)
              # (results/bench/device_throughput_*.csv; docs/reference.md, "bf16 or fp32 on a GPU")
              "batch_size": 16, "grad_accum": 4, "precision": "bf16", "dpo_precision": "fp32", "dpo_micro_batch": 4, "seeds": (42,), "max_length": 512, "rounds": 5, "epochs_per_round": 1,
              "budget_ratio": 2.0, "human_track": ("hh-rlhf",), "human_track_path": "Anthropic/hh-rlhf", "human_max_pairs": 1000, "n_base": 1000, "refine_max_pairs": None,
              "rewardbench": "allenai/reward-bench",
              "dpo_train_prompts": None, "dpo_eval_prompts": 100, "dpo_lr": 5e-5,
              "policy_model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
              "paraphraser": "humarin/chatgpt_paraphraser_on_T5_base", "paraphrase_prompt": True},
}

# The authors' two settings (docs/method.md §4.3), as ratios so that they scale with the base-set
# size: B = budget_ratio × n_base (v1: 2000 / 1000, v2: 5000 / 1000); WoN's K = B / n_base follows.
# `n_base` (authors: 1000) is the size parameter; on CPU the default keeps every base pair of the
# task. v2 uses the semantically refined paraphrase pool (operator "refined_paraphrase").
PRESETS: dict[str, dict] = {
    "v1": {"source": "[C1] v1 notebook: B=2000, alpha=0.1 on |margin|, 5 rounds x 1 epoch, WoN K=2",
           "budget_ratio": 2.0, "tau_v1": 0.1, "rounds": 5, "epochs_per_round": 1, "cumulative": False,
           "reset_optimizer": True, "warm_start": False, "strategies": ("none", "uniform", "won", "mars_v1")},
    "v2": {"source": "[C2] v2 code: B=5000, alpha=0.5 on signed margin, 1 round x 5 epochs, WoN K=5, "
                     "semantic-refined aug26 pool",
           "operator": "refined_paraphrase", "budget_ratio": 5.0, "tau_v2": 0.5, "rounds": 1, "epochs_per_round": 5, "cumulative": False,
           "reset_optimizer": True, "warm_start": False, "strategies": ("none", "uniform", "won", "mars_v2"),
           "reweight_like": "mars_v2"},
}

