"""The policy node's pure parts: watchdog states, parameter validation, joint commands from actions."""

from __future__ import annotations

import numpy as np
import pytest

from ros_nodes.arm_commander import ArmCommander, CommanderConfig
from ros_nodes.policy_params import PARAMS, check, defaults, parse_pose
from ros_nodes.watchdog import ESTOP, OK, STALE_IMAGE, STALE_JOINTS, WAITING, Watchdog, WatchdogConfig
from sim.arms import DOWN_QUAT

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- watchdog


def test_watchdog_states_in_priority_order() -> None:
    w = Watchdog(WatchdogConfig(image_timeout_s=0.5, joint_state_timeout_s=0.2))
    assert w.state(10.0, None, 9.9, "pick")[0] == WAITING
    assert w.state(10.0, 9.9, 9.9, "")[0] == WAITING
    assert w.state(10.0, 9.6, 9.9, "pick")[0] == OK
    state, reason = w.state(10.0, 9.4, 9.9, "pick")
    assert state == STALE_IMAGE and "0.60 s old" in reason
    assert w.state(10.0, 9.9, 9.7, "pick")[0] == STALE_JOINTS
    assert w.state(10.0, 9.95, 9.95, "pick")[0] == OK  # fresh data clear a stale state by themselves
    w.estop(True)
    assert w.state(10.0, 9.95, 9.95, "pick")[0] == ESTOP


def test_estop_latches_until_reset() -> None:
    w = Watchdog(WatchdogConfig())
    w.estop(True)
    w.estop(False)  # releasing the button does not restart motion
    assert w.state(1.0, 1.0, 1.0, "x")[0] == ESTOP
    w.estop(True)
    assert w.estop_count == 1
    w.reset()
    assert w.state(1.0, 1.0, 1.0, "x")[0] == OK


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_watchdog_config_rejects_bad_timeouts(bad) -> None:
    with pytest.raises(ValueError, match="image_timeout_s"):
        WatchdogConfig(image_timeout_s=bad)


# --------------------------------------------------------------------------- parameters


def test_defaults_pass_their_own_checks(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "policy").mkdir(parents=True)
    values = defaults()
    assert {name: check(name, v, values) for name, v in values.items()} == dict.fromkeys(values)


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("n", 0, "within [1, 256]"),
    ("n", 2.5, "must be a int"),
    ("temperature", float("nan"), "finite"),
    ("steering", "beam", "one of"),
    ("backend", "cuda", "one of"),
    ("control_rate_hz", 500.0, "within"),
    ("policy", "/no/such/folder", "does not exist"),
    ("urdf", "/no/such.urdf", "not a file"),
    ("camera_pose", "1 2 3", "7 finite numbers"),
    ("image_topic", "", "must not be empty"),
    ("use_depth", "yes", "must be a bool"),
    ("nonsense", 1, "unknown parameter"),
])
def test_bad_parameters_are_rejected_with_the_value(name, value, needle) -> None:
    reason = check(name, value, defaults())
    assert reason is not None and needle in reason


def test_vgps_needs_m_at_most_n_whichever_is_set() -> None:
    values = {**defaults(), "steering": "vgps", "n": 8}
    assert "m=16 must be <= n=8" in check("m", 16, values)
    assert check("steering", "vgps", {**defaults(), "n": 8, "m": 16}) is not None
    assert check("m", 8, values) is None


def test_every_parameter_has_a_description() -> None:
    assert all(p.description for p in PARAMS.values())


def test_parse_pose_builds_a_transform() -> None:
    pose = parse_pose("0.1 0.2 0.3 0 0 0.7071068 0.7071068")
    np.testing.assert_allclose(pose[:3, 3], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(pose[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-6)


# --------------------------------------------------------------------------- arm commander


@pytest.fixture(scope="module")
def commander():
    c = ArmCommander(CommanderConfig(max_joint_step=0.15))
    yield c
    c.close()


def test_commander_reads_the_urdf_joint_names(commander) -> None:
    assert commander.arm_joints == [f"panda_joint{i}" for i in range(1, 8)]
    assert commander.finger_joints == ["panda_finger_joint1", "panda_finger_joint2"]


def test_proprio_from_joint_states_matches_the_simulator() -> None:
    from sim.env import ArmEnv, EnvConfig

    env = ArmEnv(EnvConfig(task="pick_lift", render_images=False))
    try:
        env.reset(seed=1)
        for _ in range(3):
            env.step(np.array([0.02, -0.01, -0.02, 0, 0, 0.1, 0.0], np.float32))
        import pybullet as p

        q = env.arm.joint_positions()
        fingers = np.array([p.getJointState(env.arm.body, j, physicsClientId=env.client)[0]
                            for j in env.arm_spec.gripper.joints])
        c = ArmCommander(CommanderConfig())
        try:
            np.testing.assert_allclose(c.proprio(q, fingers), env.proprio(), atol=1e-5)
        finally:
            c.close()
    finally:
        env.close()


def _home(commander) -> np.ndarray:
    rest = np.asarray(commander.spec.rest_pose)
    return commander.ik.solve(np.array([0.5, 0.0, 0.25]), np.asarray(DOWN_QUAT), rest)[0]


def test_step_moves_the_target_and_ik_reaches_it(commander) -> None:
    home = _home(commander)
    commander.sync(home)
    start = commander.target.pos.copy()
    q, gripper, err = commander.step(np.array([0.02, 0.0, -0.01, 0, 0, 0, 0.0]), home)
    np.testing.assert_allclose(commander.target.pos, start + [0.02, 0, -0.01], atol=1e-9)
    assert gripper == 0.0 and err < 1e-3
    np.testing.assert_allclose(commander.ik.fk(q)[0], commander.target.pos, atol=1e-3)


def test_joint_step_and_limits_are_clamped(commander) -> None:
    home = _home(commander)
    commander.sync(home)
    # A target far away (the workspace clamp keeps it reachable) needs more than one joint step.
    q, _, _ = commander.step(np.array([0.25, 0.3, 0.0, 0, 0, 0, 1.0]), home)
    assert np.max(np.abs(q - home)) == pytest.approx(0.15)
    assert np.all(q >= commander.lower) and np.all(q <= commander.upper)


def test_chunk_path_accumulates_deltas_inside_the_workspace(commander) -> None:
    home = _home(commander)
    commander.sync(home)
    chunk = np.zeros((4, 7))
    chunk[:, 2] = 0.2  # up, beyond the workspace ceiling
    path = commander.chunk_path(chunk)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[0], commander.target.pos)
    assert path[-1, 2] == pytest.approx(0.35)


def test_commander_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="not a file"):
        CommanderConfig(urdf="/nope.urdf")
    with pytest.raises(ValueError, match="max_joint_step"):
        CommanderConfig(max_joint_step=0.0)
    with pytest.raises(ValueError, match="unknown arm"):
        CommanderConfig(arm="ur5")
