"""Proposal samplers: the policy's n sampled chunks -> the candidates the scorers rank.

`Identity` hands the policy's own samples to the scorers (V-GPS re-ranks K policy samples).
`GaussianVote` is RoboMonkey's: fit a per-dimension Gaussian to the n samples and draw m
candidates from it. That is cheaper than m policy samples and explores around the policy's
consensus. Every candidate's gripper is the samples' majority vote, so candidates differ in
motion, not in the discrete open/close decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_runtime.execution import gripper_vote
from vla_runtime.types import ActionSpec


def check_chunks(chunks: np.ndarray, horizon: int, action_dim: int, what: str = "candidates",
                 count: str = "m") -> np.ndarray:
    """-> chunks as float32 (k, H, A); a clear error for wrong shapes or non-finite values (every proposal and
    scorer checks its input with this)."""
    c = np.asarray(chunks, dtype=np.float32)
    if c.ndim != 3 or c.shape[0] < 1 or c.shape[1:] != (horizon, action_dim):
        raise ValueError(f"{what} must be ({count} >= 1, {horizon}, {action_dim}), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{what} contain NaN or inf")
    return c


def check_samples(samples: np.ndarray, spec: ActionSpec) -> np.ndarray:
    """-> samples as float32 (n, H, A) (`check_chunks`)."""
    return check_chunks(samples, spec.chunk_length, spec.dim, "samples", "n")


def _check_m(m: int) -> None:
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")


@dataclass(frozen=True)
class Identity:
    """The first m of the policy's samples, unchanged (m <= n)."""

    spec: ActionSpec

    def propose(self, samples: np.ndarray, m: int, generator: torch.Generator | None = None) -> np.ndarray:
        """samples (n, H, A) -> (m, H, A). `generator` is unused (the contract's signature)."""
        s = check_samples(samples, self.spec)
        _check_m(m)
        if m > len(s):
            raise ValueError(f"Identity proposes the policy's own samples: m={m} > n={len(s)}; draw more samples")
        return s[:m].copy()


@dataclass(frozen=True)
class GaussianVote:
    """RoboMonkey's proposal: per-dimension Gaussian over the n samples, m draws clipped to the bounds,
    gripper by majority vote, exact duplicates dropped.

    include_mean: candidate 0 is the Gaussian's mean itself, the chunk `vla eval --average n` executes.
    The scorers can then always fall back to the policy's consensus.
    min_std: a floor on the fitted std (robot units), so n=1 or identical samples still explore.
    keep_samples: also hand the n samples themselves to the scorers, after the m draws, each with its
    own gripper command: the verifier then arbitrates the open/close decision where the samples
    disagree, instead of the vote alone.
    """

    spec: ActionSpec
    include_mean: bool = True
    min_std: float = 0.0
    keep_samples: bool = False

    def __post_init__(self) -> None:
        if not (self.min_std >= 0.0 and np.isfinite(self.min_std)):
            raise ValueError(f"min_std must be a finite number >= 0, got {self.min_std}")

    def propose(self, samples: np.ndarray, m: int, generator: torch.Generator | None) -> np.ndarray:
        """samples (n, H, A) -> (m', H, A) with m' <= m (+ n with keep_samples; duplicates dropped, first
        occurrence kept).

        The noise comes from `generator` (a torch.Generator), so the same seed gives the same candidates.
        """
        s = check_samples(samples, self.spec)
        _check_m(m)
        mean = s.mean(axis=0, dtype=np.float64)  # (H, A)
        std = np.maximum(s.std(axis=0, dtype=np.float64), self.min_std)  # (H, A)
        z = torch.randn((m, *mean.shape), generator=generator, dtype=torch.float64).numpy()  # (m, H, A)
        cand = mean + std * z
        if self.include_mean:
            cand[0] = mean
        cand = np.clip(cand, self.spec.low_array(), self.spec.high_array()).astype(np.float32)
        cand[:, :, self.spec.gripper_index] = gripper_vote(s, self.spec.gripper_index)  # (H,) broadcast
        if self.keep_samples:
            cand = np.concatenate([cand, s])
        _, first = np.unique(cand.reshape(len(cand), -1), axis=0, return_index=True)
        return cand[np.sort(first)]
