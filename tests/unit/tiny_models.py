"""Shared builders for unit tests: the tiny policy config and a normaliser fitted on in-bound actions."""

from __future__ import annotations

import numpy as np

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.normalize import Normalizer

TINY = PolicyConfig(image_size=(16, 16), vision_channels=(8, 8, 8), vision_groups=4, keypoints=4, d_model=32,
                    dit_layers=2, dit_heads=2, train_timesteps=20, inference_steps=4)


def uniform_normalizer(n: int = 64, seed: int = 0) -> Normalizer:
    """Fitted on n actions uniform within the ActionSpec bounds and n standard-normal proprio vectors."""
    spec = TINY.action_spec
    rng = np.random.default_rng(seed)
    return Normalizer.fit(rng.uniform(spec.low_array(), spec.high_array(), (n, spec.dim)).astype(np.float32),
                          rng.normal(size=(n, TINY.proprio_dim)).astype(np.float32))
