"""Selector: per-scorer scores over m candidates -> the index of the chunk to execute.

Scorers speak different units (a verifier's Bradley-Terry logit, a Q-value, a safety margin), so
they are combined as a weighted sum of per-scorer z-scores across the candidates. A candidate that
any scorer rejects (-inf) is never chosen. `argmax` is RoboMonkey's and V-GPS's greedy pick;
`softmax` samples with a temperature (V-GPS uses 1.0 on raw Q-values: `zscore=False`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

MODES = ("argmax", "softmax")


@dataclass(frozen=True)
class Selector:
    mode: str = "argmax"
    temperature: float = 1.0
    weights: dict[str, float] = field(default_factory=dict)  # scorer name -> weight; missing names weigh 1
    zscore: bool = True  # False: sum raw scores (one scorer, V-GPS style)
    # argmax keeps candidate 0 (GaussianVote's: the samples' mean) unless the best beats it by more than this,
    # in the combined score's units: a verifier's small preferences are noise the mean does not pay for
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown selection mode {self.mode!r}; known: {MODES}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")
        bad = {k: w for k, w in self.weights.items() if not (w >= 0 and math.isfinite(w))}
        if bad:
            raise ValueError(f"scorer weights must be finite and >= 0, got {bad}")

    def combine(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """{scorer: (m,) scores} -> (m,) combined score; -inf where any scorer rejected the candidate."""
        if not scores:
            raise ValueError("no scores to select from")
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
        shapes = {k: a.shape for k, a in arrays.items()}
        if len(set(shapes.values())) != 1 or any(len(s) != 1 or s[0] == 0 for s in shapes.values()):
            raise ValueError(f"every scorer must give one score per candidate (m,), got shapes {shapes}")
        for k, a in arrays.items():
            if np.any(np.isnan(a)) or np.any(a == np.inf):
                raise ValueError(f"scorer {k!r} returned NaN or +inf: {a.tolist()}")
        rejected = np.any([np.isneginf(a) for a in arrays.values()], axis=0)  # (m,)
        total = np.zeros(len(rejected))
        for k, a in arrays.items():
            total += self.weights.get(k, 1.0) * (_zscore(a, ~rejected) if self.zscore else np.where(rejected, 0, a))
        return np.where(rejected, -np.inf, total)

    def select(self, scores: dict[str, np.ndarray], generator: torch.Generator | None = None) -> int:
        """The chosen candidate's index. softmax draws with `generator`; argmax takes the first best."""
        return self.pick(self.combine(scores), generator)

    def pick(self, combined: np.ndarray, generator: torch.Generator | None = None) -> int:
        """`select` on scores already combined (`combine`), for a caller that looked at them first."""
        if np.all(np.isneginf(combined)):
            raise ValueError("every candidate was rejected by a scorer; nothing safe to execute")
        if self.mode == "argmax":
            best = int(np.argmax(combined))
            if self.margin > 0 and np.isfinite(combined[0]) and combined[best] - combined[0] <= self.margin:
                return 0
            return best
        logits = torch.from_numpy(combined / self.temperature)
        return int(torch.multinomial(torch.softmax(logits, dim=0), 1, generator=generator).item())


def _zscore(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(a - mean) / std over the kept candidates (0 where excluded, or everywhere when all are tied)."""
    out = np.zeros_like(a)
    if keep.any():
        vals = a[keep]
        std = vals.std()
        out[keep] = (vals - vals.mean()) / std if std > 0 else 0.0
    return out
