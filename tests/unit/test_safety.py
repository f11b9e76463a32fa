"""The geometric safety scorer on a synthetic depth image: a block on a table seen from above."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from verifiers.safety import SafetyConfig, SafetyScorer
from vla_runtime.types import ActionSpec, CameraInfo, Observation

pytestmark = pytest.mark.unit

SPEC = ActionSpec()
H, A = SPEC.chunk_length, SPEC.dim
# A camera 1 m above (0.5, 0) looking straight down; optical axes in the base frame: x -> -y, y -> -x, z -> -z.
POSE = np.array([[0, -1, 0, 0.5], [-1, 0, 0, 0.0], [0, 0, -1, 1.0], [0, 0, 0, 1]], dtype=float)
CAM = CameraInfo(width=64, height=64, fx=64.0, fy=64.0, cx=32.0, cy=32.0, pose_base_cam=POSE)


def scene() -> Observation:
    depth = np.full((64, 64), 1.0, np.float32)  # the table, z = 0
    depth[28:36, 28:36] = 0.9  # a block whose top is at z = 0.1, about 6 cm wide, centred under the camera
    return Observation(images={"static": np.zeros((64, 64, 3), np.uint8)}, instruction="x",
                       proprio=np.zeros(12, np.float32), depth={"static": depth}, cameras={"static": CAM})


def chunk(dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> np.ndarray:
    c = np.zeros((H, A), np.float32)
    c[:, :3] = (dx, dy, dz)
    c[:, SPEC.gripper_index] = 1.0
    return c


def test_obstacle_cloud_is_the_block_without_the_table() -> None:
    pts = SafetyScorer(SPEC).obstacles(scene())
    assert len(pts) > 10
    np.testing.assert_allclose(pts[:, 2], 0.1, atol=0.005)
    assert np.abs(pts[:, :2] - [0.5, 0.0]).max() < 0.07


def test_paths_through_the_block_or_out_of_the_workspace_are_rejected() -> None:
    above = chunk(dx=0.03)  # from (0.4, 0, 0.15): 5 cm over the block top
    through = chunk(dx=0.03, dz=-0.01)  # descends into the block on the way
    too_high = chunk(dz=0.03)  # z reaches 0.39 > 0.35
    scores = SafetyScorer(SPEC).score_path(scene(), np.stack([above, through, too_high]), np.array([0.4, 0.0, 0.15]))
    assert np.isfinite(scores[0]) and 0.03 < scores[0] <= 0.1
    assert np.isneginf(scores[1]) and np.isneginf(scores[2])


def test_the_object_a_chunk_ends_at_is_its_target_not_an_obstacle() -> None:
    descend = chunk(dz=-0.01)[None]  # from (0.5, 0, 0.19) down onto the block's top centre
    ee = np.array([0.5, 0.0, 0.19])
    assert np.isfinite(SafetyScorer(SPEC).score_path(scene(), descend, ee)[0])
    strict = SafetyScorer(SPEC, SafetyConfig(target_radius=0.001))
    assert strict.score_path(scene(), np.concatenate([descend, chunk(dx=-0.03)[None]]), ee)[0] == -np.inf


def test_rejecting_everything_rejects_everything_and_warns(caplog) -> None:
    """No least-bad unsafe pick: the pipeline falls back to the policy's mean (tests/unit/test_pipeline.py)."""
    through, too_high = chunk(dx=0.03, dz=-0.01), chunk(dz=0.03)
    with caplog.at_level(logging.WARNING, logger="verifiers.safety"):
        scores = SafetyScorer(SPEC).score_path(scene(), np.stack([too_high, through]), np.array([0.4, 0.0, 0.15]))
    assert np.all(np.isneginf(scores))
    assert "all 2 candidates" in caplog.text


def test_bad_inputs_are_rejected() -> None:
    obs = scene()
    no_depth = Observation(images=obs.images, instruction="x", proprio=obs.proprio)
    with pytest.raises(ValueError, match="needs depth and CameraInfo for camera 'static'"):
        SafetyScorer(SPEC).score_path(no_depth, chunk()[None], np.zeros(3))
    with pytest.raises(ValueError, match=r"candidates must be finite \(m, 8, 7\)"):
        SafetyScorer(SPEC).score_path(obs, chunk(), np.zeros(3))
    with pytest.raises(ValueError, match="ee_position"):
        SafetyScorer(SPEC).score_path(obs, chunk()[None], np.array([0.4, np.nan, 0.1]))
    with pytest.raises(ValueError, match="margin must be a positive number of metres, got 0"):
        SafetyConfig(margin=0)
    with pytest.raises(ValueError, match="workspace_low must be below"):
        SafetyConfig(workspace_low=(0.8, -0.3, 0.0))


def test_scorer_contract_reads_the_end_effector_from_proprio() -> None:
    from vla_runtime.policy.protocol import Context

    base = scene()
    proprio = np.zeros(12, np.float32)
    proprio[:3] = (0.4, 0.0, 0.15)
    obs = Observation(images=base.images, instruction="x", proprio=proprio, depth=base.depth, cameras=base.cameras)
    cand = np.stack([chunk(dx=0.03), chunk(dx=0.03, dz=-0.01)])
    np.testing.assert_allclose(SafetyScorer(SPEC).score(Context(cond=None, observation=obs), cand),
                               SafetyScorer(SPEC).score_path(obs, cand, np.array([0.4, 0.0, 0.15])), atol=1e-6)
