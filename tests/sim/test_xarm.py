"""The xArm6 training arm: reaches the workspace, reports 7 proprio joints, grips with parallel pads, and
the scripted expert solves every task with it."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from sim.arms import DOWN_QUAT, IKSolver, get_arm_spec, proprio_joints
from sim.env import ArmEnv, EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS
from vla_app.runner import EpisodeJob, run_episode

pytestmark = pytest.mark.sim


def test_proprio_joints_pads_short_arms_and_cuts_long_ones() -> None:
    np.testing.assert_array_equal(proprio_joints(np.arange(6.0)), [0, 1, 2, 3, 4, 5, 0])
    np.testing.assert_array_equal(proprio_joints(np.arange(8.0)), np.arange(7.0))


def test_xarm_reaches_the_whole_placement_area_pointing_down() -> None:
    spec = get_arm_spec("xarm")
    ik = IKSolver(spec)
    try:
        home, _ = ik.solve(spec.home_tcp, DOWN_QUAT, np.asarray(spec.rest_pose))
        for x in (0.34, 0.5, 0.68):
            for y in (-0.24, 0.0, 0.24):
                for z in (0.018, 0.15, 0.3):
                    for yaw in (0.0, 1.2, -1.5):
                        quat = p.getQuaternionFromEuler([np.pi, 0.0, yaw])
                        q, err = ik.solve((x, y, z), quat, home)
                        _, got = ik.fk(q)
                        assert err < 1e-3, (x, y, z, yaw, err)
                        assert abs(abs(float(np.dot(got, quat))) - 1.0) < 1e-4, (x, y, z, yaw)
    finally:
        ik.close()


def test_xarm_proprio_has_seven_joints_with_q6_zero_and_an_honest_width() -> None:
    env = ArmEnv(EnvConfig(arm="xarm", image_size=(32, 32), render_images=False))
    try:
        obs, _ = env.reset(seed=0)
        assert obs["proprio"].shape == (12,) and obs["proprio"][-1] == 0.0
        np.testing.assert_allclose(obs["proprio"][5:11], env.arm.joint_positions(), atol=1e-6)
        assert obs["proprio"][4] == pytest.approx(get_arm_spec("xarm").max_width, abs=0.003)  # open at reset
        for _ in range(6):
            obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 0.0], np.float32))
        assert obs["proprio"][4] < 0.003  # closed on nothing
    finally:
        env.close()


def test_xarm_fingers_stay_parallel_while_gripping() -> None:
    """The gear constraints stand in for the linkage: without them (or with too strong a drive) the fingers
    tilt against the knuckles and the cube slides down in the grasp."""
    env = ArmEnv(EnvConfig(task="pick_lift", arm="xarm", image_size=(32, 32), render_images=False))
    try:
        env.reset(seed=1009)
        expert = ExpertFactory("expert")(1009)
        expert.reset(env)
        spec = env.arm_spec
        obj = env.world.objects[0]
        lifted = False
        for _ in range(40):
            _, _, term, trunc, _ = env.step(expert.act(env))
            if env.arm.in_contact_with(obj):
                q = {j: s[0] for j, s in zip(range(8, 14), p.getJointStates(env.arm.body, range(8, 14),
                                                                               physicsClientId=env.client))}
                for lead, follower in spec.gripper.mimic:
                    assert abs(q[lead] - q[follower]) < 0.05, (lead, follower, q)
                tcp = env.arm.tcp_pose()[0]
                z = p.getBasePositionAndOrientation(obj, physicsClientId=env.client)[0][2]
                if tcp[2] > 0.06:
                    lifted = True
                    assert abs(tcp[2] - z) < 0.006, (tcp, z)  # held at the TCP, not slipping
            if term or trunc:
                break
        assert lifted and env.succeeded()
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_expert_solves_every_task_with_the_xarm(task: str) -> None:
    factory = ExpertFactory("expert")
    for seed in (1003, 1009, 1011):  # stack seeds that failed before the gripper was made parallel
        job = EpisodeJob(index=seed, seed=seed, env=EnvConfig(task=task, arm="xarm", image_size=(32, 32),
                                                               depth=False, render_images=False))
        summary = run_episode(job, factory)
        assert summary.success and summary.arm == "xarm", (task, seed)
