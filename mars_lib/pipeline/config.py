"""One configuration object per run: profiles (smoke / cpu / paper) as named sets of defaults.

Settings are grouped by concern in small frozen dataclasses (task, reward model, MARS, augmentation,
evaluation, downstream) inside one `RunConfig`, and every setting is also named flat. A notebook's
`parameters` cell shows the cpu profile's literal values; `RunConfig.from_notebook(globals())` reads
it (`RunConfig.resolve(profile, **params)` for code), validates every field, and the resolved config
is saved beside every result table. The code never branches on the profile
name: it reads the fields (docs/design.md §3).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

POOL_MODES = ("pool", "on_demand")
RM_KINDS = ("head", "full", "lora")
FLIP_FILTERS = ("off", "rm")
LABELERS = ("gold", "rm")

from mars_lib import strategies  # noqa: E402
from mars_lib.synthetic import operators
from mars_lib.pipeline.io import atomic_write_json, REPO_ROOT
from mars_lib.baselines import MARS_GAP  # noqa: E402
from mars_lib.pipeline.profiles import PRESETS, PROFILES  # noqa: E402  (named sets of defaults; re-exported)
from mars_lib.data.tracks import TRACKS  # noqa: E402
from mars_lib.pipeline.assets import set_offline, set_online


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


@dataclass(frozen=True)
class TaskConfig:
    """The preference data: the gold task (mars_lib.data.gold_task) and the real-human tracks (mars_lib.data.tracks)."""
    task_dir: str = "data/gold_task_v3"         # committed offline task (prompts, responses, gold3 scores)
    beta: float = 1.0                           # label-noise temperature of the BT annotator (gold units)
    n_prompts: int | None = None                # keep a deterministic subset of prompts (None = all)
    max_pairs_per_prompt: int | None = None     # None = every pair of distinct responses
    label_seed: int = 0                         # seed of the noisy label draw
    seed_labels: bool = True                    # gold task: each training seed also redraws the train labels
                                                # (tasks.redraw_labels), so seed-to-seed spread includes label noise
    n_base: int | None = None                   # base (original) training pairs: a deterministic subset
                                                # (authors: 1000 — the size parameter of the presets; None = all)
    human_track: tuple[str, ...] = ("chitchat", "hh-rlhf")  # real-human tracks beside the gold task ("off" or
                                                # () = none; a single name is accepted): chitchat and hh-rlhf
                                                # are offline (hh-rlhf: the committed data/hh_rlhf_harmless copy)
    human_track_path: str | None = None         # where the (single) track's data is: None = the track's default
                                                # (committed copy for hh-rlhf, hub id for the others); a hub id, a
                                                # local HH .jsonl[.gz] file with a split field, or a local folder
                                                # in the hub's format
    human_max_pairs: int | None = None          # cap on train pairs of the track (None = all; authors: 1000)
    human_eval_max_pairs: int | None = None     # cap on its val / test pairs each, and on each OOD subset (None = all)


@dataclass(frozen=True)
class RewardModelConfig:
    """The reward model: frozen encoder + head, or a fine-tuned classifier (mars_lib.reward_models.head, mars_lib.reward_models.finetune)."""
    encoder: str = "minilm"                     # sentence encoder (head RM features, semantic distance): "minilm" or
                                                # "mpnet" (offline assets) or a local folder / hub id
    head_backbones: tuple[str, ...] = ()        # nb 03: encoders whose heads also train on the human tracks, beside
                                                # `encoder` (mars_lib.pipeline.backbones); () skips
    max_length: int = 256                       # tokens of "Human: x / Assistant: y" (left-truncated)
    head_hidden: int = 0                        # 0 = linear head (the theory's model)
    lr: float = 1e-2                            # AdamW on the head (features are L2-normalised)
    weight_decay: float = 1e-4
    batch_size: int = 64                        # pairs per step (authors' effective batch: 64)
    rm: str = "head"                            # "head": frozen encoder + trained head | "full" / "lora":
                                                # fine-tuned AutoModelForSequenceClassification (mars_lib.reward_models.finetune)
    rm_model: str | None = None                 # backbone to fine-tune (None: the offline MiniLM asset)
    ft_lr: float = 2e-5                         # fine-tuning learning rate (authors: 2e-5)
    grad_accum: int = 1                         # fine-tuning: micro-batches of batch_size pairs per step
    precision: str = "fp32"                     # fine-tuning: "fp32" | "bf16" (CUDA only; weights stay fp32)


@dataclass(frozen=True)
class MarsConfig:
    """MARS, its baselines and controls: allocation and the rounds schedule (mars_lib.mars, mars_lib.strategies)."""
    strategies: tuple[str, ...] = strategies.DEFAULT  # arms trained (names in mars_lib.strategies.REGISTRY)
    rounds: int = 5                             # T: allocate -> augment -> train rounds (v1 code: 5)
    epochs_per_round: int = 1                   # v1 code: 1 epoch per round
    budget_ratio: float = 2.0                   # B / N_base synthetic pairs per round (v1: 2000 / 1000)
    tau_v1: float = 0.1                         # v1: q ∝ exp(-τ|Δ|) [C1]
    tau_v2: float = 0.5                         # v2: q ∝ exp(-τΔ), signed [C2]
    reweight_like: str = "mars_v1"              # the controls that reuse MARS's q (reweight, easy-first, hard-filter) use this version's
                                                # reward-gap transform and tau (v2 preset: mars_v2)
    tau_grid: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # nb 03 τ sweep of MARS v1 / v2
                                                # (head RMs, every seed; contains the authors' 0.1 / 0.5)
    hard_filter_frac: float = 0.1               # hard_filter: drop this share of base pairs with the most negative
                                                # reward gap each round (likely label noise, as Selective DPO)
    warm_start: bool = False                    # train on the base set before the first allocation?
    cumulative: bool = False                    # keep earlier rounds' synthetic pairs? (v1 code: fresh)
    reset_optimizer: bool = True                # v1 code re-creates optimizer + schedule each round
    eval_every_round: bool = True               # evaluate on val / test before training and after every round
                                                # (False: after the last round only — the fine-tuned regime on CPU)
    track_curvature: bool = True                # per round: BT curvature of the realised training set (linear head)
    helps_betas: tuple[float, ...] = ()         # nb 03 map (mars_lib.pipeline.helps_map, method.md §12): label noises β; () skips the map
    helps_taus_v1: tuple[float, ...] = ()       # map: MARS v1 τ grid (profile cpu_map: near-uniform to ESS/N ≤ 0.2); () skips v1
    helps_taus_v2: tuple[float, ...] = ()       # map: MARS v2 τ grid (the same span); () skips v2
    helps_operators: tuple[str, ...] = ()       # map: operators whose pools it runs (cpu_map: paraphrase, resample)


@dataclass(frozen=True)
class AugmentConfig:
    """How synthetic pairs are built (mars_lib.synthetic.builders, mars_lib.synthetic.refine, mars_lib.synthetic.pools)."""
    operator: str = "paraphrase"                # synthetic pairs: "paraphrase" (authors v1, WordNet offline) |
                                                # "refined_paraphrase" (authors v2: semantic refinement of
                                                # low-distance pairs, then paraphrase; mars_lib.synthetic.refine) |
                                                # "resample" (close pairs among fresh policy samples, AI-labelled)
    labeler: str = "gold"                       # resample: "gold" (simulated annotator, noise beta) | "rm" (self-training)
    gap_band: tuple[float, float] = (0.1, 0.5)  # resample: kept |labeler gap| between these quantiles
    extra_operators: tuple[str, ...] = ("refined_paraphrase", "resample")  # nb 03 also runs every strategy with these
    refine_max_pairs: int | None = 120          # refined_paraphrase: rewrite at most this many low-distance pairs
                                                # (a seeded random subset; None = all, as the authors) — SmolLM2
                                                # rewrites cost ~4.7 s per pair on 2 CPU cores
    refine_attempts: int = 5                    # tries per stage (rejected, then chosen) (authors: 5)
    refine_model: str | None = None             # rewriter: None = SmolLM2-135M-Instruct (offline asset) or a
                                                # local folder / hub id of a causal LM (authors: GPT-4.1)
    flip_filter: str = "off"                    # drop synthetic pairs whose inherited label the labeler flips:
                                                # "off" | "rm" (the no-augmentation head RM)
    pool_mode: str = "pool"                     # "pool" (authors: pre-generated) | "on_demand"
    n_paraphrases: int = 5                      # per text; pool = n×n pairs per source (authors: 5 -> 25)
    paraphraser: str | None = None              # None = WordNet (offline) | a seq2seq model, local folder or hub id
                                                # (paper profile: the authors' T5, humarin/chatgpt_paraphraser_on_T5_base)
    paraphrase_prompt: bool = False             # authors: True; off on CPU: each pair then reuses 2n texts
                                                # instead of 2n² (5x fewer encoder calls), see README


@dataclass(frozen=True)
class EvalConfig:
    """Intervals, curvature checks and fidelity (mars_lib.evaluation.stats, mars_lib.evaluation.curvature; notebooks 02-04)."""
    rewardbench: str | None = None              # nb 03: also score every RM on RewardBench (mars_lib.evaluation.rewardbench):
                                                # None = skip | "allenai/reward-bench" (hub) | a local copy in its format
    n_boot: int = 1000                          # bootstrap resamples for CIs
    curvature_taus: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 5.0)
    hvp_pairs: int = 16                         # nb 04: pairs in the fine-tuned RM's Hessian-vector-product batch
    lanczos_iters: int = 20                     # nb 04: Lanczos iterations (HVPs) for the top eigenvalues
    hutchinson_samples: int = 30                # nb 04: Rademacher probes (HVPs) for the trace estimate
    fidelity_sources: int = 60                  # source pairs whose synthetic pairs are gold-judged (nb 02;
                                                # the task's judge, gold3, scores every text)


@dataclass(frozen=True)
class DownstreamConfig:
    """Best-of-N and DPO with the trained reward models (mars_lib.downstream.best_of_n; notebook 05)."""
    bon_extra_samples: int = 0                  # extra policy samples per test prompt for Best-of-N
    bon_iid_prompts: int | None = None          # nb 05: prompts of the committed i.i.d. Best-of-N set used (None = all)
    policy_model: str | None = None             # nb 05 policy (extra Best-of-N samples, DPO): None = SmolLM2-135M-
                                                # Instruct (offline asset) or a local folder / hub id of a chat LM
    dpo_strategies: tuple[str, ...] = ("none", "uniform", "won", "mars_v1", "mars_v2")  # nb 05: RMs labelling DPO
                                                # pairs (a LoRA policy each; () = skip DPO); those among `strategies` run
    dpo_seeds: tuple[int, ...] | None = None    # nb 05: RM seeds used for DPO (None = the first of `seeds`; each also seeds its DPO run);
                                                # only those among `seeds` run
    dpo_epochs: int = 1                         # DPO passes over the pairs (2 policy samples per train prompt)
    dpo_train_prompts: int | None = 64          # cap on train prompts (None = all 240): 64 pairs ≈ 1.6 min per RM on 2 cores
    dpo_eval_prompts: int = 48                  # held-out prompts each policy answers (~1 s each, judged)
    dpo_judges: tuple[str, ...] = ("gold",)     # judges of the DPO answers: "gold" (the task's), "gold1", "gold3"
    judge_model: str | None = None              # nb 05: also judge the DPO answers with this chat LM (local folder
                                                # or hub id; randomized A/B order); None = the gold judge only
    dpo_lr: float = 5e-4                        # LoRA learning rate: high because a CPU run takes few steps
                                                # (16 at 64 pairs); mars_lib.downstream.dpo's default is 5e-5
    dpo_micro_batch: int = 1                    # DPO pairs per forward (1, 2, 4); each step has 4, the rest accumulated
                                                # (same gradient); 4 at once: +2 GB of SmolLM2 activations on CPU
    dpo_precision: str | None = None            # DPO's "fp32" | "bf16" (CUDA); None = `precision` (docs/reference.md, "bf16 or fp32 on a GPU")


GROUPS: dict[str, type] = {"task": TaskConfig, "reward_model": RewardModelConfig, "mars": MarsConfig, "augment": AugmentConfig, "evaluation": EvalConfig, "downstream": DownstreamConfig}

@dataclass(frozen=True, init=False)
class RunConfig:
    """One run's settings: the run itself (below) and one small dataclass per concern — `task`,
    `reward_model`, `mars`, `augment`, `evaluation`, `downstream` (GROUPS). Every setting also reads
    flat (`cfg.tau_v1` is `cfg.mars.tau_v1`), is constructed flat (`RunConfig(tau_v1=0.5)`, or with
    whole groups), and saves flat (`to_dict`), so a notebook parameter or `-p NAME VALUE` names it
    without its group."""
    profile: str = "cpu"
    preset: str | None = None                   # None | "v1" | "v2": the authors' settings (PRESETS), then parameters
    results_dir: str = "results"                # tables in results/<nb>/, figures in results/figures/
    models_dir: str | None = None               # nb 05 reads notebook 03's saved RMs from here (None = results_dir)
    device: str = "cpu"                         # explicit; no hidden accelerator or bf16
    threads: int = 2                            # torch threads (2-core laptop)
    offline: bool = True                        # HF_*_OFFLINE=1 in this process: nothing is looked up on the hub
                                                # (paper profile: False, its models and data sets come from the hub)
    seeds: tuple[int, ...] = tuple(range(10))   # RM training seeds (init, order, synthetic draws); >= 10 for
                                                # head RMs so that seed variation is estimated, not guessed
    task: TaskConfig = TaskConfig()
    reward_model: RewardModelConfig = RewardModelConfig()
    mars: MarsConfig = MarsConfig()
    augment: AugmentConfig = AugmentConfig()
    evaluation: EvalConfig = EvalConfig()
    downstream: DownstreamConfig = DownstreamConfig()

    def __init__(self, **values):
        unknown = sorted(set(values) - set(_RUN_FIELDS) - set(GROUPS) - set(FIELD_GROUP))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known: {sorted(FIELD_GROUP) + list(_RUN_FIELDS)}")
        for name, f in _RUN_FIELDS.items():
            object.__setattr__(self, name, values.get(name, f.default))
        for g, cls in GROUPS.items():
            group = values.get(g, cls())
            flat = {k: v for k, v in values.items() if FIELD_GROUP.get(k) == g}
            object.__setattr__(self, g, replace(group, **flat) if flat else group)
        self.__post_init__()

    def __getattr__(self, name):
        """Flat read of a grouped field (only called when normal lookup fails)."""
        g = FIELD_GROUP.get(name)
        if g is None or g not in vars(self):
            raise AttributeError(f"{type(self).__name__!r} has no field {name!r}")
        return getattr(vars(self)[g], name)

    @staticmethod
    def field_names() -> list[str]:
        """Every setting's flat name (what a notebook parameter or `-p NAME VALUE` may set)."""
        return [*_RUN_FIELDS, *FIELD_GROUP]

    def replace(self, **changes) -> "RunConfig":
        """A copy with some fields changed, named flat (or whole groups); validated like a new config."""
        return type(self)(**{**self.to_dict(), **changes})

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"config field '{name}' = {getattr(self, name)!r}: {why}")
        tracks = self.human_track
        tracks = () if tracks in ("off", None) else (tracks,) if isinstance(tracks, str) else tuple(tracks)
        object.__setattr__(self, "task", replace(self.task, human_track=tracks))
        if any(t not in TRACKS for t in tracks) or len(set(tracks)) != len(tracks):
            bad("human_track", f"choose from {TRACKS} (each once), or 'off'")
        if self.human_track_path is not None and len(tracks) != 1:
            bad("human_track_path", "names the data of one track: set human_track to that single track")
        if self.reweight_like not in MARS_GAP:
            bad("reweight_like", f"choose one of {tuple(MARS_GAP)}")
        if not self.tau_grid or any(not t > 0 for t in self.tau_grid):
            bad("tau_grid", "need at least one tau, each > 0")
        if not 0 < self.hard_filter_frac < 1:
            bad("hard_filter_frac", "must be in (0, 1)")
        if self.profile not in PROFILES:
            bad("profile", f"unknown profile; choose one of {sorted(PROFILES)}")
        if self.preset is not None and self.preset not in PRESETS:
            bad("preset", f"unknown preset; choose one of {sorted(PRESETS)} or None")
        if self.n_base is not None and self.n_base < 2:
            bad("n_base", "need at least 2 base pairs (or None for all)")
        unknown = [s for s in self.strategies if not strategies.known(s)]
        if unknown or not self.strategies:
            bad("strategies", f"unknown strategy {unknown}; choose from {strategies.names()}")
        if self.operator not in operators.REGISTRY:
            bad("operator", f"choose one of {operators.names()}")
        if any(o not in operators.REGISTRY for o in self.extra_operators + self.helps_operators):
            bad(next(n for n in ("extra_operators", "helps_operators") if set(getattr(self, n)) - set(operators.REGISTRY)), f"choose from {operators.names()}")
        if self.flip_filter not in FLIP_FILTERS:
            bad("flip_filter", f"choose one of {FLIP_FILTERS}")
        if self.refine_max_pairs is not None and self.refine_max_pairs < 1:
            bad("refine_max_pairs", "must be >= 1 (or None for every low-distance pair)")
        if self.labeler not in LABELERS:
            bad("labeler", f"choose one of {LABELERS}")
        if len(self.gap_band) != 2 or not 0 <= self.gap_band[0] < self.gap_band[1] <= 1:
            bad("gap_band", "need two quantiles 0 <= lo < hi <= 1")
        if self.pool_mode == "on_demand" and operators.get(self.operator).sources is None:
            bad("pool_mode", f"the {self.operator} operator builds only a pre-generated pool; use pool_mode='pool'")
        if self.pool_mode not in POOL_MODES:
            bad("pool_mode", f"choose one of {POOL_MODES}")
        if self.rm not in RM_KINDS or (self.head_backbones and self.rm != "head"):
            bad("rm", f"choose one of {RM_KINDS}" + ("; head_backbones needs rm='head'" if self.rm in RM_KINDS else ""))
        for name in ("precision", "dpo_precision"):
            value = getattr(self, name)
            if value is None and name == "dpo_precision":
                continue
            if value not in ("fp32", "bf16"):
                bad(name, "choose 'fp32' or 'bf16'")
            if value == "bf16" and not self.device.startswith("cuda"):
                bad(name, "bf16 is for CUDA devices; use 'fp32' on CPU")
        for name in ("human_max_pairs", "human_eval_max_pairs"):
            if getattr(self, name) is not None and getattr(self, name) < 2:
                bad(name, "need at least 2 pairs (or None for all)")
        for name in ("tau_v1", "tau_v2", "beta", "lr", "ft_lr", "dpo_lr", "helps_betas", "helps_taus_v1", "helps_taus_v2"):
            if not all(x > 0 for x in getattr(self, name)) if name.startswith("helps_") else not getattr(self, name) > 0:
                bad(name, "must be > 0")
        if self.budget_ratio < 0:
            bad("budget_ratio", "must be >= 0 (synthetic pairs per base pair per round)")
        for name in ("rounds", "epochs_per_round", "batch_size", "n_paraphrases", "threads", "max_length", "n_boot",
                     "hvp_pairs", "lanczos_iters", "hutchinson_samples", "grad_accum", "refine_attempts",
                     "dpo_epochs", "dpo_eval_prompts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a positive integer")
        if not self.seeds:
            bad("seeds", "need at least one seed")
        if any(not strategies.known(x) for x in self.dpo_strategies):
            bad("dpo_strategies", f"choose from {strategies.names()}")
        if self.dpo_micro_batch not in (1, 2, 4):
            bad("dpo_micro_batch", "choose 1, 2 or 4 (pairs per forward pass; each DPO step has 4 pairs)")
        if self.dpo_train_prompts is not None and self.dpo_train_prompts < 1:
            bad("dpo_train_prompts", "must be >= 1 (or None for all)")
        if not self.dpo_judges or any(j not in ("gold", "gold1", "gold3") for j in self.dpo_judges):
            bad("dpo_judges", "choose one or more of 'gold' (the task's), 'gold1', 'gold3'")
        if self.bon_iid_prompts is not None and self.bon_iid_prompts < 2:
            bad("bon_iid_prompts", "need at least 2 prompts (or None for all)")
        if self.n_prompts is not None and self.n_prompts < 2:
            bad("n_prompts", "need at least 2 prompts (or None for all)")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            bad("device", "use 'cpu' or 'cuda[:N]'")

    @classmethod
    def resolve(cls, profile: str = "cpu", **params) -> "RunConfig":
        """Profile defaults, then the preset's values (`preset=`), then every non-None parameter; unknown names: error."""
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        names = set(cls.field_names())
        unknown = sorted(set(params) - names)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; known: {sorted(names)}")
        preset = params.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values = {**PROFILES[profile], **({k: v for k, v in PRESETS[preset].items() if k != "source"} if preset else {}),
                  "profile": profile}
        for k, v in params.items():
            if v is not None:
                values[k] = tuple(v) if isinstance(v, list) else v
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def from_notebook(cls, namespace: dict) -> "RunConfig":
        """The config of a notebook run, from its parameters cell (pass `globals()`).

        The cell shows the settings its notebook discusses with the cpu profile's literal values (what
        the reference run uses); `profile` names the set of defaults. A setting is an override when it
        is named in `overrides` (the list `./run_all.sh -p NAME VALUE` passes to papermill with the
        values; with plain papermill add `-p overrides '["NAME", ...]'`) or when its value differs from
        the cpu reference value (an edit of the cell); every other setting is the profile's value, so
        `-p profile smoke` alone gives the smoke profile and `-p profile paper -p device cpu` the paper
        profile on CPU. Only config fields are read; anything else in the namespace is ignored."""
        profile = namespace.get("profile", "cpu")
        ref = cls.resolve("cpu").to_dict()
        injected = set(namespace.get("overrides") or ())
        unknown = sorted(injected - set(ref))
        if unknown:
            raise ConfigError(f"overrides names {unknown}, which are no config fields")
        params = {}
        for name in ref:
            if name == "profile" or name not in namespace:
                continue
            v = namespace[name]
            if callable(v) or type(v).__name__ == "module":
                raise ConfigError(f"notebook variable {name!r} is a {type(v).__name__}, not a value: a module or "
                                  "function shadows the config field of that name (rename the import)")
            norm = tuple(v) if isinstance(v, list) else v
            if name in injected or norm != ref[name]:
                params[name] = v
        return cls.resolve(profile, **params)

    def to_dict(self) -> dict:
        """Every setting under its flat name (what config.json, result metadata and cache keys hold)."""
        out = {name: getattr(self, name) for name in _RUN_FIELDS}
        for g in GROUPS:
            out.update(asdict(getattr(self, g)))
        return out

    def grouped(self) -> dict:
        """The settings by concern: {"run": {...}, "task": {...}, ...} (for reading, e.g. in a notebook)."""
        return {"run": {name: getattr(self, name) for name in _RUN_FIELDS}, **{g: asdict(getattr(self, g)) for g in GROUPS}}

    def save(self, path) -> Path:
        return atomic_write_json(path, self.to_dict())

    def path(self, *parts) -> Path:
        """A path under results_dir (relative paths are taken from the repository root)."""
        base = Path(self.results_dir)
        base = base if base.is_absolute() else REPO_ROOT / base
        p = base.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def task_path(self) -> Path:
        p = Path(self.task_dir)
        return p if p.is_absolute() else REPO_ROOT / p

    def apply_runtime(self) -> None:
        """Threads, offline mode (`offline`) and a check that the device and precision exist here:
        device "cuda" needs a CUDA build of torch and a visible GPU, bf16 a GPU that supports it
        (checked now rather than at resolve, so that --dry-run validates on any machine)."""
        import torch
        torch.set_num_threads(self.threads)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"config field 'device' = {self.device!r}: torch {torch.__version__} sees no CUDA GPU "
                              "here; install the CUDA build (README, 'Installing torch') or run with -p device cpu "
                              "-p precision fp32")
        for name in ("precision", "dpo_precision"):
            if getattr(self, name) == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
                raise ConfigError(f"config field {name!r} = 'bf16': {torch.cuda.get_device_name()} has no bf16 "
                                  f"support; run with -p {name} fp32")
        set_offline() if self.offline else set_online()


_RUN_FIELDS = {f.name: f for f in fields(RunConfig) if f.name not in GROUPS}
FIELD_GROUP = {f.name: g for g, cls in GROUPS.items() for f in fields(cls)}   # flat name -> group
