"""Agents the simulator runner can drive: a policy checkpoint behind a chunk executor.

Factories are small picklable values; the (heavy) policy is loaded once per
worker process and cached, so many episodes share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_runtime.execution import ChunkExecutor, ExecutorConfig, average_chunks

_POLICIES: dict[str, object] = {}


def load_policy_cached(path: str, backend: str = "torch"):
    from vla_runtime.backends import load_policy_on

    key = f"{Path(path).resolve()}:{backend}"
    if key not in _POLICIES:
        _POLICIES[key] = load_policy_on(backend, path, threads=1)
    return _POLICIES[key]


def read_policy_config(path: str):
    """A checkpoint's `PolicyConfig` without its weights (what the simulator must render depends on it)."""
    from vla_runtime.checkpoint import parse_json_file
    from vla_runtime.policy.config import PolicyConfig

    return parse_json_file(Path(path) / "config.json", PolicyConfig.from_dict)


class PolicyAgent:
    """Encode once per plan, draw `samples` chunks in one batched run, execute one (the draw itself, or
    for samples > 1 their mean with a voted gripper: `average_chunks`) through `ChunkExecutor`. Encoding
    goes through `EpisodeEncoder` (an anchor policy's anchor is latched per episode)."""

    needs_images = True

    def __init__(self, policy, executor: ChunkExecutor, seed: int, samples: int = 1) -> None:
        import torch

        from vla_runtime.policy.model import EpisodeEncoder

        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.policy = policy
        self.executor = executor
        self.samples = samples
        self.generator = torch.Generator().manual_seed(seed)
        self.episode = EpisodeEncoder(policy)

    def reset(self, env) -> None:
        self.executor.reset()
        self.episode.reset()

    def act(self, env) -> np.ndarray:
        if self.executor.needs_plan:
            ctx = self.episode.encode(env.last_observation)
            chunks = self.policy.sample(ctx, self.samples, self.generator)  # (samples, H, A)
            self.executor.add_chunk(chunks[0] if self.samples == 1
                                    else average_chunks(chunks, self.policy.config.action_spec.gripper_index))
        return self.executor.next_action()


@dataclass(frozen=True)
class PolicyAgentFactory:
    policy_dir: str
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    samples: int = 1  # chunks drawn per plan; > 1 executes their mean (see `PolicyAgent`)
    backend: str = "torch"  # vla_runtime.backends.BACKENDS

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    def __call__(self, seed: int) -> PolicyAgent:
        import torch

        torch.set_num_threads(1)  # one worker per core
        policy = load_policy_cached(self.policy_dir, self.backend)
        return PolicyAgent(policy, ChunkExecutor(policy.config.action_spec, self.executor), seed, self.samples)

    def env_options(self) -> dict:
        """What the simulator must render for this policy (`EnvConfig` fields): the main camera's size and
        the wrist camera when the policy reads one (rendered at the same size, resized by the policy)."""
        cfg = read_policy_config(self.policy_dir)  # the config alone: no weights loaded here
        if cfg.camera != "static" or cfg.wrist_camera not in ("", "wrist"):
            raise ValueError(f"the simulator renders cameras 'static' and 'wrist'; policy {self.policy_dir} "
                             f"reads {list(cfg.cameras)}")
        return {"image_size": tuple(cfg.image_size), "wrist_camera": bool(cfg.wrist_camera)}
