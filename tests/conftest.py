"""Shared builders for unit tests: tiny on-disk datasets in the collection format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vla_runtime.dataset import Episode, write_dataset_header, write_episode
from vla_runtime.types import PROPRIO_NAMES, ActionSpec, CameraInfo


@pytest.fixture
def write_tiny_episodes() -> Callable[..., None]:
    """`write(root, metas, t=6, seed=0, cameras=("static",))`: one random 16x16 episode of T steps per
    meta dict, with images from each named camera.

    Each meta gives the episode-specific keys (task, quality, seed, instruction, scene, ...); the
    camera, action spec, variation, arm and success are filled in.
    """

    def write(root: Path, metas: list[dict], t: int = 6, seed: int = 0,
              cameras: tuple[str, ...] = ("static",)) -> None:
        rng = np.random.default_rng(seed)
        spec = ActionSpec()
        cam = CameraInfo(width=16, height=16, fx=20.0, fy=20.0, cx=8.0, cy=8.0, pose_base_cam=np.eye(4))
        write_dataset_header(root, {"tasks": sorted({m["task"] for m in metas})})
        for i, extra in enumerate(metas):
            meta = {"variation": "id", "arm": "panda", "success": True,
                    "cameras": {c: cam.to_dict() for c in cameras},
                    "action_spec": spec.to_dict(), **extra}
            write_episode(root, i, Episode(
                images={c: rng.integers(0, 256, (t + 1, 16, 16, 3), dtype=np.uint8) for c in cameras}, depth={},
                proprio=rng.normal(size=(t + 1, len(PROPRIO_NAMES))).astype(np.float32),
                actions=rng.uniform(spec.low_array(), spec.high_array(), (t, spec.dim)).astype(np.float32),
                rewards=np.zeros(t, np.float32), successes=np.zeros(t, bool), meta=meta))

    return write
