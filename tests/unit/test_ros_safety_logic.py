"""The policy node's pure parts: watchdog states, stamp ordering, parameter validation, joint targets from
actions (IK steps and paths, joint-limit checks). The limits every command passes are the safety stage's
(tests/unit/test_safety_stage.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ros_nodes.arm_commander import ArmCommander, CommanderConfig
from ros_nodes.policy_params import PARAMS, check, defaults, missing_folders, parse_pose
from ros_nodes.watchdog import (
    ESTOP,
    FUTURE,
    IN_ORDER,
    OK,
    OUT_OF_ORDER,
    PAST,
    STALE_IMAGE,
    STALE_JOINTS,
    WAITING,
    Watchdog,
    WatchdogConfig,
    judge_stamp,
)
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
    w.estop(False)  # released: now a reset may clear it
    assert w.reset() is None
    assert w.state(1.0, 1.0, 1.0, "x")[0] == OK


def test_an_image_stamped_in_the_future_goes_stale_by_arrival() -> None:
    """Camera clock 3 s ahead: by stamp the frame stays fresh for 3.5 s after the camera stops; by arrival
    it is stale after the timeout."""
    w = Watchdog(WatchdogConfig(image_timeout_s=0.5))
    assert w.state(10.0, 13.0, 9.99, "pick", image_received=9.7)[0] == OK
    state, reason = w.state(10.3, 13.0, 10.29, "pick", image_received=9.7)
    assert state == STALE_IMAGE and "0.60 s old by arrival" in reason and "2.70 s in the future" in reason
    assert w.state(10.0, 9.4, 9.99, "pick", image_received=9.99)[0] == STALE_IMAGE  # old stamp: still stale


def test_reset_is_refused_while_the_estop_reads_pressed() -> None:
    w = Watchdog(WatchdogConfig())
    w.estop(True)
    reason = w.reset()
    assert reason is not None and "pressed" in reason and w.estopped
    w.config = WatchdogConfig(image_timeout_s=1.0)  # what configure does: the latch survives
    assert w.state(1.0, 1.0, 1.0, "x")[0] == ESTOP
    w.estop(False)
    assert w.reset() is None and not w.estopped


@pytest.mark.parametrize(("stamp", "received", "newest", "verdict"), [
    (10.0, 10.01, None, IN_ORDER),
    (10.1, 10.11, (10.0, 10.01), IN_ORDER),
    (5.0, 10.11, (10.0, 10.01), OUT_OF_ORDER),  # a late frame between fresh ones
    (10.0, 10.11, (10.0, 10.01), OUT_OF_ORDER),  # the same frame again
    (5.0, 11.0, (10.0, 10.01), PAST),  # the newest kept is stale by arrival: a clock that jumped back recovers
    (13.0, 10.0, None, FUTURE),
    (10.05, 10.0, None, IN_ORDER),  # within max_clock_skew_s
    (9.0, 10.0, None, PAST),
])
def test_judge_stamp(stamp, received, newest, verdict) -> None:
    assert judge_stamp(stamp, received, newest, timeout_s=0.5, max_skew_s=0.1) == verdict


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


def test_relative_model_paths_resolve_outside_the_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no models/ here: the package share root (this checkout) has them
    assert check("policy", "models/policy", defaults()) is None
    assert missing_folders(defaults()) == []


@pytest.mark.parametrize(("steering", "name"), [("robomonkey", "verifier"), ("vgps", "value"), ("both", "value")])
def test_configure_needs_the_scorer_folders_of_the_steering(steering, name) -> None:
    values = {**defaults(), "steering": steering, name: "/no/such/folder"}
    reasons = missing_folders(values)
    assert len(reasons) == 1 and reasons[0].startswith(f"{name} checkpoint folder '/no/such/folder' does not exist")
    other = "value" if name == "verifier" else "verifier"
    assert missing_folders({**defaults(), "steering": "none", name: "/no/such", other: "/no/such"}) == []


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
    c = ArmCommander(CommanderConfig())
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


IK_TOL = 1e-9  # rad: the same IK solves from the same seeds agree up to float noise


def test_path_equals_successive_steps_without_moving_the_target(commander) -> None:
    """K actions -> K joint targets, the ones K successive `step` calls give from the same start (each seeded
    by the previous solution, as a following arm would be); the commander's own target stays put."""
    home = _home(commander)
    actions = np.array([[0.02, 0.0, -0.01, 0, 0, 0.1, 1.0],
                        [0.01, 0.02, 0.0, 0, 0, 0.0, 1.0],
                        [0.0, -0.03, 0.02, 0, 0, -0.2, 0.0],
                        [-0.02, 0.01, 0.0, 0, 0, 0.05, 0.0]])
    commander.sync(home)
    before = (commander.target.pos.copy(), commander.target.quat.copy(), commander.target.gripper)
    qs, targets = commander.path(actions, home)
    assert qs.shape == (len(actions), len(commander.arm_joints)) and len(targets) == len(actions)
    np.testing.assert_array_equal(commander.target.pos, before[0])
    np.testing.assert_array_equal(commander.target.quat, before[1])
    assert commander.target.gripper == before[2]
    q = home
    for k, action in enumerate(actions):
        q, gripper, err = commander.step(action, q)
        np.testing.assert_allclose(qs[k], q, rtol=0, atol=IK_TOL)
        np.testing.assert_allclose(targets[k].pos, commander.target.pos, rtol=0, atol=IK_TOL)
        np.testing.assert_allclose(targets[k].quat, commander.target.quat, rtol=0, atol=IK_TOL)
        assert targets[k].gripper == gripper == action[6] and err < 1e-3
    assert targets[0] is not targets[1]  # one snapshot per point, not one object moved along


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
    with pytest.raises(ValueError, match="unknown arm"):
        CommanderConfig(arm="ur5")
    with pytest.raises(ValueError, match="joint_limit_margin"):
        CommanderConfig(joint_limit_margin=-0.1)


@pytest.mark.parametrize("bad", [1e6, -1e6, float("nan"), float("inf")])
def test_joint_states_outside_the_limits_are_refused(commander, bad) -> None:
    home = _home(commander)
    q = home.copy()
    q[3] = bad
    with pytest.raises(ValueError, match="panda_joint4"):
        commander.check_joints(q)
    with pytest.raises(ValueError, match="panda_finger_joint2"):
        commander.check_joints(home, np.array([0.04, bad]))


def test_joint_states_within_the_margin_pass(commander) -> None:
    commander.check_joints(commander.upper + 0.09, np.array([0.0, 0.04]))
    commander.check_joints(commander.lower - 0.09, np.array([-0.009, 0.049]))
    with pytest.raises(ValueError, match="margin 0.1"):
        commander.check_joints(commander.upper + 0.11)


def test_the_arm_parameter_offers_every_simulated_arm() -> None:
    from sim.arms import ARMS

    assert set(PARAMS["arm"].choices) == set(ARMS)
