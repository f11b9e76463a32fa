"""Stored normalisation statistics (`normalization.json`).

Actions map q01..q99 -> [-1, 1] per dimension (robust to the odd outlier);
proprio is standardised with mean/std. Both invert exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalizer:
    action_low: np.ndarray  # (A,) q01
    action_high: np.ndarray  # (A,) q99
    proprio_mean: np.ndarray  # (P,)
    proprio_std: np.ndarray  # (P,)

    def __post_init__(self) -> None:
        for name in ("action_low", "action_high", "proprio_mean", "proprio_std"):
            v = np.asarray(getattr(self, name), dtype=np.float32)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ValueError(f"normalizer {name} must be a finite vector, got {v.tolist()}")
            object.__setattr__(self, name, v)
        if self.action_low.shape != self.action_high.shape:
            raise ValueError(f"action_low {self.action_low.shape} and action_high {self.action_high.shape} differ")
        if np.any(self.proprio_std <= 0):
            raise ValueError(f"proprio_std must be > 0, got {self.proprio_std.tolist()}")

    @classmethod
    def fit(cls, actions: np.ndarray, proprio: np.ndarray, eps: float = 1e-3) -> Normalizer:
        """actions (N, A), proprio (N, P). Constant dimensions get a minimum range `eps`."""
        lo, hi = np.quantile(actions, 0.01, axis=0), np.quantile(actions, 0.99, axis=0)
        mid = (lo + hi) / 2
        half = np.maximum((hi - lo) / 2, eps)
        return cls(mid - half, mid + half, proprio.mean(axis=0), np.maximum(proprio.std(axis=0), eps))

    # torch versions for the model; tensors broadcast over leading dims
    def _t(self, x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        lo, hi = self._t(self.action_low, a), self._t(self.action_high, a)
        return 2 * (a - lo) / (hi - lo) - 1

    def unnormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        lo, hi = self._t(self.action_low, a), self._t(self.action_high, a)
        return (a + 1) / 2 * (hi - lo) + lo

    def normalize_proprio(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._t(self.proprio_mean, x)) / self._t(self.proprio_std, x)

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("action_low", "action_high", "proprio_mean", "proprio_std")}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        keys = ("action_low", "action_high", "proprio_mean", "proprio_std")
        missing = set(keys) - set(d)
        if missing:
            raise ValueError(f"normalization is missing {sorted(missing)}")
        arrays = {}
        for k in keys:
            try:
                arrays[k] = np.asarray(d[k], dtype=np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"normalization {k} must be a list of numbers, got {d[k]!r}") from None
        return cls(**arrays)

    def check_dims(self, action_dim: int, proprio_dim: int) -> Normalizer:
        """Refuse statistics of another action or proprio size than the model's."""
        if self.action_low.shape != (action_dim,) or self.proprio_mean.shape != (proprio_dim,) \
                or self.proprio_std.shape != (proprio_dim,):
            raise ValueError(f"normalization has {self.action_low.shape[0]} action and {self.proprio_mean.shape[0]} "
                             f"proprio dims, the config {action_dim} and {proprio_dim}")
        return self
