"""Learned action verifier (RoboMonkey's VLM verifier at our scale): (observation, chunk) -> scalar.

It reads the frozen policy's conditioning token (Digi-Q style: one encoding serves the policy and
its verifier, so scoring m candidates costs one small MLP batch, not m encoder runs) and the
candidate chunk, normalised with the policy's action statistics. It is trained on synthetic
preferences (`verifiers.preferences`); a higher score means closer to what an expert would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verifiers import token_scorer
from vla_runtime.hub import HubMixin, resolve_checkpoint
from vla_runtime.policy.normalize import Normalizer

CONFIG_TYPE = "vla_steering.action_verifier"


@dataclass(frozen=True)
class VerifierConfig:
    cond_dim: int = 128  # the policy's d_model: the verifier reads its conditioning token
    horizon: int = 8
    action_dim: int = 7
    hidden: int = 256
    layers: int = 2
    # `training.weights_fingerprint` of the policy whose tokens it reads ("" = unknown): steering
    # refuses to pair the verifier with another policy, whose tokens would mean something else.
    policy: str = ""

    def __post_init__(self) -> None:
        for name in ("cond_dim", "horizon", "action_dim", "hidden", "layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.policy, str):
            raise ValueError(f"policy must be a fingerprint string, got {self.policy!r}")


class ActionVerifier(nn.Module, HubMixin, tags=["action-verifier", "reward-model"]):
    name = "verifier"
    reads = "token"  # the policy's conditioning token: only a policy that provides one can be steered

    def __init__(self, config: VerifierConfig, normalizer: Normalizer) -> None:
        super().__init__()
        if normalizer.action_low.shape != (config.action_dim,):
            raise ValueError(f"normalizer has {normalizer.action_low.shape[0]} action dims, config {config.action_dim}")
        self.config, self.normalizer = config, normalizer
        h = config.hidden
        self.chunk_in = nn.Sequential(nn.Linear(config.horizon * config.action_dim, h), nn.SiLU())
        self.cond_in = nn.Sequential(nn.Linear(config.cond_dim, h), nn.SiLU())
        blocks: list[nn.Module] = []
        for _ in range(config.layers):
            blocks += [nn.Linear(3 * h if not blocks else h, h), nn.SiLU()]
        self.trunk = nn.Sequential(*blocks)
        self.out = nn.Linear(h, 1)

    def forward(self, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """cond (B, cond_dim), chunks (B, H, A) robot units -> scores (B,)."""
        c = self.cond_in(cond)
        a = self.chunk_in(self.normalizer.normalize_actions(chunks).flatten(1))
        return self.out(self.trunk(torch.cat([c, a, c * a], dim=-1))).squeeze(-1)

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The `Scorer` contract: the decision's `Context` (its token `cond` (1, cond_dim)) and candidates
        (m, H, A) -> (m,) float64 scores."""
        return token_scorer.score_on_token(self, ctx, candidates)

    def save_pretrained(self, out_dir: str | Path, model_card: str = "", overwrite: bool = False) -> Path:
        """The checkpoint folder, atomically; `model_card` written as given (`card_text` adds the Hub metadata)."""
        return token_scorer.save(self, CONFIG_TYPE, out_dir, model_card, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> ActionVerifier:
        """A checkpoint folder, or a Hub repo id read from the local Hugging Face cache (never downloads)."""
        path = resolve_checkpoint(name_or_path, "action verifier", revision, cache_dir)
        return token_scorer.load(cls, VerifierConfig, CONFIG_TYPE, "action verifier", path)
