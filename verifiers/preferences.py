"""Synthetic preference data for the action verifier (RoboMonkey), and its loss.

From a demonstration state, the expert's chunk is perturbed many ways. Candidates are ranked by
their NRMSE to the expert chunk, and pairs (better, worse) train a scorer with a Bradley-Terry loss
plus RoboMonkey's preference-level term. No human labels are needed: distance to the expert stands
in for "how good is this action here".

All arrays are in robot units. Perturbations are drawn in normalised units (each dimension's q01..q99
range maps to [-1, 1]), so every dimension is perturbed relative to its own scale. Candidates are
clipped to the ActionSpec bounds, so they are valid actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from vla_runtime.types import ActionSpec

KINDS = ("gaussian", "dimension", "gripper")


@dataclass(frozen=True)
class PerturbConfig:
    """How the expert chunk is perturbed (normalised units: 1.0 = half a dimension's q01..q99 range)."""

    gaussian_stds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)  # i.i.d. noise on every entry
    dimension_offsets: tuple[float, ...] = (0.1, 0.3, 0.6, 1.0)  # one dimension shifted for the whole chunk
    kind_probs: tuple[float, float, float] = (0.6, 0.3, 0.1)  # gaussian, dimension, gripper flip

    def __post_init__(self) -> None:
        if not self.gaussian_stds or any(not (s > 0 and np.isfinite(s)) for s in self.gaussian_stds):
            raise ValueError(f"gaussian_stds must be positive, got {self.gaussian_stds}")
        if not self.dimension_offsets or any(not (s > 0 and np.isfinite(s)) for s in self.dimension_offsets):
            raise ValueError(f"dimension_offsets must be positive, got {self.dimension_offsets}")
        p = np.asarray(self.kind_probs, dtype=np.float64)
        if p.shape != (3,) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"kind_probs must be 3 non-negative numbers summing to 1, got {self.kind_probs}")


def nrmse(candidates: np.ndarray, expert: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """candidates (k, H, A), expert (H, A), low/high (A,) the q01..q99 range -> (k,) root mean squared
    difference, each dimension divided by its range."""
    scale = np.maximum(np.asarray(high, np.float64) - np.asarray(low, np.float64), 1e-9)  # (A,)
    diff = (np.asarray(candidates, np.float64) - np.asarray(expert, np.float64)[None]) / scale
    return np.sqrt(np.mean(diff**2, axis=(1, 2)))


def perturb(expert: np.ndarray, k: int, spec: ActionSpec, low: np.ndarray, high: np.ndarray,
            rng: np.random.Generator, config: PerturbConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """expert (H, A) -> (k candidates (k, H, A) clipped to the bounds, their kinds (k,) int into KINDS)."""
    cfg = config or PerturbConfig()
    e = np.asarray(expert, dtype=np.float64)
    if e.shape != (spec.chunk_length, spec.dim) or not np.all(np.isfinite(e)):
        raise ValueError(f"expert chunk must be finite with shape ({spec.chunk_length}, {spec.dim}), got {e.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    half = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2  # (A,) robot units per normalised unit
    kinds = rng.choice(3, size=k, p=np.asarray(cfg.kind_probs) / np.sum(cfg.kind_probs))
    out = np.repeat(e[None], k, axis=0)
    g = spec.gripper_index
    motion = np.array([d for d in range(spec.dim) if d != g])
    for i, kind in enumerate(kinds):
        if kind == 0:
            std = rng.choice(cfg.gaussian_stds)
            out[i][:, motion] += rng.normal(0.0, std, (spec.chunk_length, len(motion))) * half[motion]
        elif kind == 1:
            d = rng.choice(motion)
            out[i][:, d] += rng.choice(cfg.dimension_offsets) * rng.choice((-1.0, 1.0)) * half[d]
        else:  # the gripper decision flips from a random step to the end of the chunk
            start = rng.integers(0, spec.chunk_length)
            out[i][start:, g] = np.where(out[i][start:, g] > 0.5, 0.0, 1.0)
    return np.clip(out, spec.low_array(), spec.high_array()).astype(np.float32), kinds


def preference_pairs(errors: np.ndarray, n_pairs: int, rng: np.random.Generator,
                     min_gap: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """errors (k,) NRMSE per candidate -> (winner idx, loser idx, d* = error_l - error_w > min_gap), each
    (p,) with p <= n_pairs: random pairs whose errors differ by more than `min_gap` (near-ties teach
    noise)."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)):
        raise ValueError(f"errors must be a finite (k >= 2,) array, got shape {e.shape}")
    i = rng.integers(0, len(e), 4 * n_pairs)
    j = rng.integers(0, len(e), 4 * n_pairs)
    keep = np.abs(e[i] - e[j]) > min_gap
    i, j = i[keep][:n_pairs], j[keep][:n_pairs]
    winner, loser = np.where(e[i] < e[j], i, j), np.where(e[i] < e[j], j, i)
    return winner, loser, e[loser] - e[winner]


def preference_loss(r_w: torch.Tensor, r_l: torch.Tensor, d_star: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """RoboMonkey's loss, mean over pairs: -log sigmoid((r_w - r_l) - alpha * (d* - |r_w - r_l|)^2).

    alpha = 0 is plain Bradley-Terry. The squared term asks the reward gap to match the NRMSE gap,
    so scores are calibrated in size as well as in order.
    """
    if not (r_w.shape == r_l.shape == d_star.shape):
        raise ValueError(f"r_w, r_l, d_star must share a shape, got {tuple(r_w.shape)}, {tuple(r_l.shape)}, "
                         f"{tuple(d_star.shape)}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    gap = r_w - r_l
    return -F.logsigmoid(gap - alpha * (d_star - gap.abs()) ** 2).mean()
