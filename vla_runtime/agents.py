"""Agents the simulator runner can drive: a policy checkpoint behind a chunk executor.

Factories are small picklable values; the (heavy) policy is loaded once per
worker process and cached, so many episodes share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_runtime.execution import ChunkExecutor, ExecutorConfig

_POLICIES: dict[str, object] = {}


def load_policy_cached(path: str):
    from vla_runtime.policy.model import VLAPolicy

    key = str(Path(path).resolve())
    if key not in _POLICIES:
        _POLICIES[key] = VLAPolicy.from_pretrained(path)
    return _POLICIES[key]


class PolicyAgent:
    """Encode once per plan, draw one chunk, execute it through `ChunkExecutor`."""

    needs_images = True

    def __init__(self, policy, executor: ChunkExecutor, seed: int) -> None:
        import torch

        self.policy = policy
        self.executor = executor
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self, env) -> None:
        self.executor.reset()

    def act(self, env) -> np.ndarray:
        if self.executor.needs_plan:
            ctx = self.policy.encode(env.last_observation)
            self.executor.add_chunk(self.policy.sample(ctx, 1, self.generator)[0])
        return self.executor.next_action()


@dataclass(frozen=True)
class PolicyAgentFactory:
    policy_dir: str
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __call__(self, seed: int) -> PolicyAgent:
        import torch

        torch.set_num_threads(1)  # one worker per core
        policy = load_policy_cached(self.policy_dir)
        return PolicyAgent(policy, ChunkExecutor(policy.config.action_spec, self.executor), seed)

    def env_options(self) -> dict:
        """What the simulator must render for this policy (`EnvConfig` fields): the main camera's size and
        the wrist camera when the policy reads one (rendered at the same size, resized by the policy)."""
        cfg = load_policy_cached(self.policy_dir).config
        if cfg.camera != "static" or cfg.wrist_camera not in ("", "wrist"):
            raise ValueError(f"the simulator renders cameras 'static' and 'wrist'; policy {self.policy_dir} "
                             f"reads {list(cfg.cameras)}")
        return {"image_size": tuple(cfg.image_size), "wrist_camera": bool(cfg.wrist_camera)}
