"""The `Policy` contract every backend implements, and what it hands back.

A policy is split in two because steering is: `encode` (expensive, once per decision) turns an
observation into a `Context`; `sample` (cheap, batched) draws any number of action chunks from it.
The torch model (`VLAPolicy`), the onnxruntime and TensorRT runtimes (`vla_runtime.backends`) all
implement it, and every caller (steering, simulator agents, the ROS node, export parity tests) depends
only on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

from vla_runtime.types import ActionSpec, Observation

if TYPE_CHECKING:
    from vla_runtime.policy.config import PolicyConfig


@dataclass
class Context:
    """What `encode` computed once per decision."""

    cond: torch.Tensor  # (1, d_model) conditioning token
    observation: Observation | None = None
    # (4,) metres: the target + goal xy anchor this decision used (anchor policies only); the episode
    # keeps the first one and passes it to every later `encode` (`EpisodeEncoder`).
    anchor: np.ndarray | None = None


@runtime_checkable
class Policy(Protocol):
    """encode once, sample many: `sample(ctx, n, generator, steps=None)` -> (n, H, A) float32 chunks in robot
    units, clipped to `action_spec`, from `steps` DDIM steps (None: `config.inference_steps`); the same
    generator state gives the same chunks on every backend (the noise is drawn on the CPU in one order).
    `reset()` marks an episode boundary."""

    config: PolicyConfig

    @property
    def action_spec(self) -> ActionSpec: ...

    def encode(self, obs: Observation, anchor: np.ndarray | None = None) -> Context: ...

    def sample(self, ctx: Context, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray: ...

    def reset(self) -> None: ...


class EpisodeEncoder:
    """Encodes one episode's observations: an anchor policy's first decision latches its anchor
    (`PolicyConfig.anchor`) for every later one, until `reset()`. Every caller that runs a policy
    over an episode (the steered pipeline, the ROS node) goes through this."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.anchor: np.ndarray | None = None  # (4,) once latched

    def reset(self) -> None:
        self.anchor = None
        self.policy.reset()

    def encode(self, obs: Observation) -> Context:
        ctx = self.policy.encode(obs, anchor=self.anchor)
        if self.anchor is None:
            self.anchor = ctx.anchor
        return ctx
