"""ArmEnv's real-time joint interface (what the ROS sim node drives): joint targets, physics advance, names."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from sim.arms import DOWN_QUAT
from sim.env import ArmEnv, EnvConfig

pytestmark = pytest.mark.sim

PANDA_ARM = [f"panda_joint{i}" for i in range(1, 8)]
PANDA_FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]


@pytest.fixture
def env() -> Iterator[ArmEnv]:
    e = ArmEnv(EnvConfig(task="pick_lift", image_size=(32, 32), render_images=False))
    e.reset(seed=0)
    yield e
    e.close()


def test_joint_targets_move_the_tcp_where_ik_says(env: ArmEnv) -> None:
    start, _ = env.arm.tcp_pose()
    goal = start + np.array([0.05, 0.0, 0.0])
    q, err = env.ik.solve(goal, DOWN_QUAT, env.arm.joint_positions())
    assert err < 1e-3
    env.command_joints(q, gripper=1.0)
    env.advance(48)
    reached, _ = env.arm.tcp_pose()
    assert np.linalg.norm(reached - goal) < 0.01, (reached, goal)


def test_gripper_command_closes_the_fingers(env: ArmEnv) -> None:
    q = env.arm.joint_positions()
    opened = env.arm.gripper_width()
    env.command_joints(q, gripper=0.0)
    assert env.advance(48) is False  # nothing grasped or lifted
    assert env.arm.gripper_width() < opened - 0.05


def test_joint_names_and_state_are_the_pandas(env: ArmEnv) -> None:
    arm, fingers = env.joint_names()
    assert (arm, fingers) == (PANDA_ARM, PANDA_FINGERS)
    names, pos = env.joint_state()
    assert names == PANDA_ARM + PANDA_FINGERS
    np.testing.assert_allclose(pos[:7], env.arm.joint_positions())
    np.testing.assert_allclose(pos[7:], [0.04, 0.04], atol=2e-3)  # reset opens the gripper


def test_observe_renders_without_counting_steps(env: ArmEnv) -> None:
    obs = env.observe()
    assert obs.images["static"].shape == (32, 32, 3) and obs.depth["static"].shape == (32, 32)
    assert env.steps == 0


@pytest.mark.parametrize("q, gripper, match", [
    (np.zeros(6), 1.0, "7 finite joint positions"),
    (np.zeros((1, 7)), 1.0, "7 finite joint positions"),
    (np.array([0.0, np.nan, 0, 0, 0, 0, 0]), 1.0, "nan"),
    (np.zeros(7), float("nan"), "gripper command must be finite"),
])
def test_bad_joint_commands_are_rejected_with_the_value(env: ArmEnv, q, gripper, match) -> None:
    with pytest.raises(ValueError, match=match):
        env.command_joints(q, gripper)


def test_bad_substeps_and_calls_before_reset_raise() -> None:
    e = ArmEnv(EnvConfig(image_size=(32, 32), render_images=False))
    try:
        with pytest.raises(RuntimeError, match="before reset"):
            e.advance(1)
        e.reset(seed=0)
        for bad in (0, -3, 2.5):
            with pytest.raises(ValueError, match="substeps must be a positive integer"):
                e.advance(bad)
    finally:
        e.close()
