"""Reward models and the Bradley-Terry loss.

Loss (docs/method.md §1.2, [C1][C2]): L = mean_i −log σ(r(x_i, y_i+) − r(x_i, y_i−) − m_i), with an
optional `label_margin` m_i (0 by default). The default CPU reward model is a trainable linear (or
small MLP) head on frozen, cached encoder features φ(x, y) — exactly the linear model
r = θᵀφ of the paper's theory, so its curvature has a closed form (mars_lib.evaluation.curvature).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, label_margin: torch.Tensor | float = 0.0,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood, averaged over pairs.

    r_chosen, r_rejected: [B] (a [B, 1] score is squeezed; any other shape is an error, so a
    label_margin of shape [B] can never broadcast against [B, 1] rewards into [B, B]).
    label_margin: scalar or [B]. weight: optional [B] per-pair weights (normalised to mean 1).
    """
    r_c, r_r = _as_vector(r_chosen, "r_chosen"), _as_vector(r_rejected, "r_rejected")
    if r_c.shape != r_r.shape:
        raise ValueError(f"r_chosen {tuple(r_c.shape)} and r_rejected {tuple(r_r.shape)} differ")
    m = torch.as_tensor(label_margin, dtype=r_c.dtype, device=r_c.device)
    if m.ndim > 0:
        m = _as_vector(m, "label_margin")
        if m.shape != r_c.shape:
            raise ValueError(f"label_margin {tuple(m.shape)} does not match rewards {tuple(r_c.shape)}")
    nll = -F.logsigmoid(r_c - r_r - m)
    if weight is None:
        return nll.mean()
    w = _as_vector(torch.as_tensor(weight, dtype=r_c.dtype, device=r_c.device), "weight")
    return (w * nll).sum() / w.sum()


def _as_vector(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 2 and t.shape[1] == 1:
        return t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape [B] or [B, 1], got {tuple(t.shape)}")
    return t


@runtime_checkable
class RewardModel(Protocol):
    """What every reward model of the package implements; the rounds loop, the checkpoints, the
    downstream stages and the CLI use only this, never the model's kind.

    Kinds: `HeadRewardModel` (a trained head on frozen, cached encoder features: reads `phi`) and
    `finetune.FinetunedRewardModel` (a fine-tuned sequence classifier: reads the texts). Each row
    is given with both its texts and its features, and each kind takes what it needs.
    """

    def score(self, prompts, responses, phi: np.ndarray | None = None) -> np.ndarray:
        """r(x, y) for every row: prompts, responses (sequences of str) and their features phi [N, D]."""

    def pair_scores(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+), r(x, y−)) for a `features.Pairs`."""

    def pair_gap(self, pairs) -> np.ndarray:
        """Δ = r(x, y+) − r(x, y−) for a `features.Pairs`."""

    def fit_pairs(self, pairs, epochs: int | None = None, reset_optimizer: bool = True,
                  seed: int | None = None) -> list[float]:
        """Bradley-Terry training on a `features.Pairs`; the loss per epoch."""

    def linear_theta(self) -> np.ndarray | None:
        """θ of a linear model r = θᵀφ (closed-form curvature), None for any other model."""

    def save(self, path) -> Path:
        """Write the model to `path` (a file for a head, a folder for a fine-tuned model)."""


@dataclass
class HeadConfig:
    """Trainable head on frozen features (defaults: the linear model of the theory)."""
    hidden: int = 0              # 0 = linear r = θᵀφ + b; > 0 = one hidden layer MLP (GELU)
    lr: float = 1e-2             # AdamW learning rate (features are L2-normalised, so this is O(1e-2))
    weight_decay: float = 1e-4   # small L2 on the head
    batch_size: int = 64         # pairs per step (the authors' effective batch is 64)
    epochs: int = 1              # passes over the training set per call of `fit`
    seed: int = 0

    @classmethod
    def from_run(cls, cfg, seed: int) -> "HeadConfig":
        """The head settings of a run config (`config.RunConfig`) for one training seed."""
        return cls(hidden=cfg.head_hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                   epochs=cfg.epochs_per_round, seed=seed)

    def __post_init__(self):
        if self.hidden < 0 or self.lr <= 0 or self.weight_decay < 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"invalid head config: {self}")


class HeadRewardModel(torch.nn.Module):
    """r(x, y) = head(φ(x, y)); trained with `fit(phi_chosen, phi_rejected)` on cached features."""

    def __init__(self, dim: int, cfg: HeadConfig | None = None):
        super().__init__()
        self.cfg = cfg or HeadConfig()
        g = torch.Generator().manual_seed(self.cfg.seed)
        if self.cfg.hidden:
            self.net = torch.nn.Sequential(torch.nn.Linear(dim, self.cfg.hidden), torch.nn.GELU(),
                                           torch.nn.Linear(self.cfg.hidden, 1))
        else:
            self.net = torch.nn.Linear(dim, 1)
        with torch.no_grad():                     # seeded init, independent of global RNG state
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 else 0.0))
        self.optimizer = None
        self.steps = 0

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """phi [N, D] -> rewards [N]."""
        return self.net(phi)[:, 0]

    @property
    def theta(self) -> np.ndarray:
        """The linear head's weight vector θ [D] (linear model only)."""
        if self.cfg.hidden:
            raise ValueError("theta is defined for the linear head only")
        return self.net.weight.detach()[0].double().numpy()

    def reset_optimizer(self) -> None:
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def fit(self, phi_c: np.ndarray, phi_r: np.ndarray, epochs: int | None = None, reset_optimizer: bool = True,
            seed: int | None = None, label_margin: np.ndarray | None = None) -> list[float]:
        """Mini-batch AdamW on the BT loss. phi_c, phi_r: [N, D]. Returns the loss per epoch."""
        if phi_c.shape != phi_r.shape or phi_c.ndim != 2 or len(phi_c) == 0:
            raise ValueError(f"need two [N, D] feature arrays of equal shape, got {phi_c.shape} and {phi_r.shape}")
        if reset_optimizer or self.optimizer is None:
            self.reset_optimizer()
        Xc, Xr = torch.as_tensor(phi_c, dtype=torch.float32), torch.as_tensor(phi_r, dtype=torch.float32)
        M = torch.as_tensor(label_margin, dtype=torch.float32) if label_margin is not None else None
        g = torch.Generator().manual_seed(self.cfg.seed if seed is None else seed)
        losses = []
        self.train()
        for _ in range(epochs or self.cfg.epochs):
            perm = torch.randperm(len(Xc), generator=g)
            tot = 0.0
            for s in range(0, len(perm), self.cfg.batch_size):
                idx = perm[s:s + self.cfg.batch_size]
                loss = bt_loss(self(Xc[idx]), self(Xr[idx]), 0.0 if M is None else M[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.steps += 1
                tot += loss.item() * len(idx)
            losses.append(tot / len(perm))
        self.eval()
        return losses

    @torch.no_grad()
    def score_features(self, phi: np.ndarray) -> np.ndarray:
        """Rewards for features [N, D] -> [N] float64."""
        return self.forward(torch.as_tensor(phi, dtype=torch.float32)).double().numpy()

    def reward_gap(self, phi_c: np.ndarray, phi_r: np.ndarray) -> np.ndarray:
        """Δ = r(x, y+) − r(x, y−) per pair, [N]."""
        return self.score_features(phi_c) - self.score_features(phi_r)

    # --- the RewardModel interface (shared with mars_lib.reward_models.finetune.FinetunedRewardModel) -------
    def score(self, prompts, responses, phi: np.ndarray | None = None) -> np.ndarray:
        """r(x, y) of rows given by texts and features: a head reads the features phi [N, D]."""
        if phi is None:
            raise ValueError("a head reward model scores encoder features: pass phi, the features of the rows")
        return self.score_features(phi)

    def linear_theta(self) -> np.ndarray | None:
        return None if self.cfg.hidden else self.theta

    def save(self, path) -> Path:
        """The head's weights as one safetensors file (D + 1 floats for the linear head)."""
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        return path

    @classmethod
    def load(cls, path, cfg: HeadConfig) -> "HeadRewardModel":
        """A head saved by `save`; `cfg` must describe the same architecture (hidden size)."""
        from safetensors.torch import load_file
        state = load_file(str(path))
        dim = state["net.weight" if "net.weight" in state else "net.0.weight"].shape[1]
        m = cls(dim, cfg)
        m.load_state_dict(state)
        return m

    def pair_scores(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+), r(x, y−)) for a `features.Pairs`."""
        return self.score_features(pairs.phi_c), self.score_features(pairs.phi_r)

    def pair_gap(self, pairs) -> np.ndarray:
        return self.reward_gap(pairs.phi_c, pairs.phi_r)

    def fit_pairs(self, pairs, epochs: int | None = None, reset_optimizer: bool = True, seed: int | None = None) -> list[float]:
        return self.fit(pairs.phi_c, pairs.phi_r, epochs=epochs, reset_optimizer=reset_optimizer, seed=seed)

