"""V-GPS value function: Q(s, action chunk) from offline RL, used to re-rank the policy's candidates.

Like the verifier it reads the frozen policy's conditioning token (one encoding for policy, verifier
and value). Two Q critics (their minimum is the score, the usual guard against over-estimated
actions) and a state value V for IQL's expectile backup (`train_value`). The critics' head is a
scalar regression or HL-Gauss: a categorical distribution over value bins trained with cross
entropy against a Gaussian-smoothed target (sigma = 0.75 bin widths), which Farebrother et al.
found to scale better than MSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verifiers import token_scorer
from vla_runtime.hub import HubMixin, resolve_checkpoint
from vla_runtime.policy.normalize import Normalizer

CONFIG_TYPE = "vla_steering.value_function"
HEADS = ("regression", "hlgauss")


@dataclass(frozen=True)
class ValueConfig:
    cond_dim: int = 128
    horizon: int = 8
    action_dim: int = 7
    hidden: int = 256
    layers: int = 2
    head: str = "hlgauss"
    bins: int = 51  # HL-Gauss only
    v_min: float = -50.0  # the return range: -1 / (1 - gamma) for V-GPS rewards with gamma 0.98
    v_max: float = 0.0
    policy: str = ""  # fingerprint of the policy whose tokens it reads (see `ActionVerifier`)

    def __post_init__(self) -> None:
        for name in ("cond_dim", "horizon", "action_dim", "hidden", "layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not isinstance(self.bins, int) or self.bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {self.bins!r}")
        if not (math.isfinite(self.v_min) and math.isfinite(self.v_max) and self.v_min < self.v_max):
            raise ValueError(f"need finite v_min < v_max, got v_min={self.v_min} v_max={self.v_max}")

    @property
    def bin_width(self) -> float:
        return (self.v_max - self.v_min) / self.bins


def _mlp(d_in: int, hidden: int, layers: int, d_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.SiLU()]
    return nn.Sequential(*mods, nn.Linear(hidden, d_out))


def hl_gauss_target(y: torch.Tensor, config: ValueConfig) -> torch.Tensor:
    """y (B,) returns -> (B, bins) probabilities: a Gaussian (sigma 0.75 bin widths) at y, integrated over
    each bin and renormalised over the support (y is clipped into it)."""
    edges = torch.linspace(config.v_min, config.v_max, config.bins + 1, dtype=y.dtype)
    sigma = 0.75 * config.bin_width
    y = y.clamp(config.v_min, config.v_max)[:, None]
    cdf = torch.special.erf((edges[None] - y) / (math.sqrt(2.0) * sigma))  # (B, bins+1)
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)


class ValueFunction(nn.Module, HubMixin, tags=["value-function", "offline-rl"]):
    name = "value"
    reads = "token"  # the policy's conditioning token, as the verifier

    def __init__(self, config: ValueConfig, normalizer: Normalizer) -> None:
        super().__init__()
        if normalizer.action_low.shape != (config.action_dim,):
            raise ValueError(f"normalizer has {normalizer.action_low.shape[0]} action dims, config {config.action_dim}")
        self.config, self.normalizer = config, normalizer
        d_in = config.cond_dim + config.horizon * config.action_dim
        out = config.bins if config.head == "hlgauss" else 1
        self.critics = nn.ModuleList(_mlp(d_in, config.hidden, config.layers, out) for _ in range(2))
        self.v = _mlp(config.cond_dim, config.hidden, config.layers, 1)
        centres = torch.linspace(config.v_min, config.v_max, config.bins + 1)
        self.register_buffer("centres", (centres[1:] + centres[:-1]) / 2, persistent=False)

    def critic_outputs(self, cond: torch.Tensor, chunks: torch.Tensor,
                       critics: nn.ModuleList | None = None) -> list[torch.Tensor]:
        """cond (B, cond_dim), chunks (B, H, A) robot units -> per critic (B, bins) logits or (B, 1) values.
        critics: another set of the same shape (IQL's target critics); default these."""
        x = torch.cat([cond, self.normalizer.normalize_actions(chunks).flatten(1)], dim=-1)
        return [c(x) for c in (self.critics if critics is None else critics)]

    def q_values(self, cond: torch.Tensor, chunks: torch.Tensor,
                 critics: nn.ModuleList | None = None) -> torch.Tensor:
        """-> (2, B) expected returns of the two critics (or of `critics`, see `critic_outputs`)."""
        outs = self.critic_outputs(cond, chunks, critics)
        if self.config.head == "hlgauss":
            return torch.stack([o.softmax(-1) @ self.centres for o in outs])
        return torch.stack([o.squeeze(-1) for o in outs])

    def state_value(self, cond: torch.Tensor) -> torch.Tensor:
        """cond (B, cond_dim) -> (B,) V(s)."""
        return self.v(cond).squeeze(-1)

    def forward(self, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """-> (B,) min over the two critics: the score."""
        return self.q_values(cond, chunks).min(0).values

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The `Scorer` contract: the decision's `Context` (its token `cond` (1, cond_dim)) and candidates
        (m, H, A) -> (m,) float64 scores."""
        return token_scorer.score_on_token(self, ctx, candidates)

    def save_pretrained(self, out_dir: str | Path, model_card: str = "", overwrite: bool = False) -> Path:
        """The checkpoint folder, atomically; `model_card` written as given (`card_text` adds the Hub metadata)."""
        return token_scorer.save(self, CONFIG_TYPE, out_dir, model_card, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> ValueFunction:
        """A checkpoint folder, or a Hub repo id read from the local Hugging Face cache (never downloads)."""
        path = resolve_checkpoint(name_or_path, "value function", revision, cache_dir)
        return token_scorer.load(cls, ValueConfig, CONFIG_TYPE, "value function", path)
