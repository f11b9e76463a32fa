"""The two diagnostics that emulate parts of the ROS graph inside the simulator loop (`benchmarks/diagnostics/
ros_path_in_sim.py`, `ros_timing_in_sim.py`): each must change only what it claims to."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sim.env import ArmEnv, EnvConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "diagnostics"))

import ros_path_in_sim
import ros_timing_in_sim

pytestmark = pytest.mark.sim

MOVE = np.array([0.03, -0.02, -0.03, 0.0, 0.0, 0.1, 1.0], np.float32)


@pytest.fixture
def env():
    e = ArmEnv(EnvConfig(task="push_to", image_size=(32, 32), depth=True))
    yield e
    e.close()


def test_the_node_path_without_its_safety_stage_moves_the_arm_as_the_simulator_does(env) -> None:
    env.reset(seed=4)
    env.step(MOVE)
    tcp_sim = env.proprio()[:3]
    env.reset(seed=4)
    ros_path_in_sim.install(env, ros_path_in_sim.NodePath(safety=False))
    env.step(MOVE)
    assert np.allclose(env.proprio()[:3], tcp_sim, atol=2e-3)  # a separate IK model of the same arm


def test_the_node_path_limits_a_joint_jump_and_counts_it(env) -> None:
    env.reset(seed=4)
    counts = ros_path_in_sim.install(env, ros_path_in_sim.NodePath(max_joint_step=0.01))
    env.step(MOVE)
    assert counts["commands"] == 1 and counts.get("clamped_velocity", 0) == 1


def test_the_early_observation_is_taken_that_long_before_the_step_ends(env) -> None:
    env.reset(seed=4)
    early = ros_timing_in_sim.install(env, ros_timing_in_sim.ObservationTiming(image_ms=0.0, proprio_ms=0.0))
    env.step(MOVE)
    assert np.array_equal(early["images"]["static"], env.last_observation.images["static"])
    assert np.allclose(early["proprio"], env.last_observation.proprio)
    env.reset(seed=4)
    start = env.proprio()[:3]
    early = ros_timing_in_sim.install(env, ros_timing_in_sim.ObservationTiming(image_ms=50.0, proprio_ms=50.0))
    env.step(MOVE)
    # 50 ms before the boundary the arm was still on its way: less of the move shows in the proprio
    moved_early = np.linalg.norm(early["proprio"][:3] - start)
    moved_end = np.linalg.norm(env.last_observation.proprio[:3] - start)
    assert 0 < moved_early < moved_end


@pytest.mark.parametrize("kwargs", [{"image_ms": 100.0}, {"proprio_ms": -1.0}, {"index_back": 2}])
def test_bad_timings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        ros_timing_in_sim.ObservationTiming(**kwargs)
