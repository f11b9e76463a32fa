"""Learned action verifier (RoboMonkey's VLM verifier at our scale): (observation, chunk) -> scalar.

It reads the frozen policy's conditioning token (Digi-Q style: one encoding serves the policy and
its verifier, so scoring m candidates costs one small MLP batch, not m encoder runs) and the
candidate chunk, normalised with the policy's action statistics. It is trained on synthetic
preferences (`verifiers.preferences`); a higher score means closer to what an expert would do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vla_runtime.checkpoint import load_weights, read_json, read_typed_config, require_files, write_checkpoint
from vla_runtime.policy.normalize import Normalizer

CONFIG_TYPE = "vla_steering.action_verifier"
FILES = ("config.json", "model.safetensors", "normalization.json")


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


class ActionVerifier(nn.Module):
    name = "verifier"

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

    @torch.inference_mode()
    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The decision's policy `Context` (its token `cond` (1, cond_dim)) and candidates (m, H, A) -> (m,)
        float64 scores (the `Scorer` contract of `verifiers.steered`)."""
        cond = ctx.cond
        cfg = self.config
        c = np.asarray(candidates, dtype=np.float32)
        if c.ndim != 3 or c.shape[1:] != (cfg.horizon, cfg.action_dim) or len(c) < 1:
            raise ValueError(f"candidates must be (m >= 1, {cfg.horizon}, {cfg.action_dim}), got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("candidates contain NaN or inf")
        if tuple(cond.shape) != (1, cfg.cond_dim):
            raise ValueError(f"cond must be (1, {cfg.cond_dim}) (the policy's token), got {tuple(cond.shape)}")
        return self(cond.expand(len(c), -1), torch.from_numpy(c)).double().numpy()

    def save_pretrained(self, out_dir: str | Path, model_card: str = "") -> Path:
        """config.json + model.safetensors + normalization.json (+ README.md), atomically."""
        return write_checkpoint(out_dir, {"type": CONFIG_TYPE, **asdict(self.config)}, self.normalizer.to_dict(),
                                self.state_dict(), model_card)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path) -> ActionVerifier:
        path = Path(ckpt_dir)
        require_files(path, FILES, "verifier")
        config = read_typed_config(path, CONFIG_TYPE, VerifierConfig, "action-verifier")
        model = cls(config, Normalizer.from_dict(read_json(path / "normalization.json")))
        load_weights(model, path / "model.safetensors")
        return model.eval()
