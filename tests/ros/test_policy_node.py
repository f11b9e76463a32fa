"""The policy node as a real process over Fast DDS, launched from `launch/robot_bringup.launch.yaml`.

The test process plays the robot: it publishes a rendered camera frame and joint states that follow the
node's commands, and checks lifecycle, enable gate, e-stop, the stale-image watchdog, malformed messages
and parameter validation. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (extra `ros`) are not installed")

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from ros_nodes import convert
from ros_nodes.launcher import GraphProcesses, isolated_ros_env
from ros_nodes.probe import Probe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
NODE = "/vla_policy"
PERIOD = 0.1  # control_rate_hz 10
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
DELIVERY = 0.05  # s: DDS delivery + executor slack on a loaded 2-core machine


class FakeArm:
    """A kinematic robot: publishes a real rendered frame at 10 Hz and joint states at 50 Hz that jump to
    every commanded target."""

    def __init__(self, probe: Probe, rgb: np.ndarray, home: np.ndarray) -> None:
        self.probe, self.rgb, self.q, self.home = probe, rgb, home.copy(), home.copy()
        self.images_on = self.joints_on = True
        # reliable, as the node subscribes (best effort loses large frames: see ros_nodes/policy_node.py)
        self.image_pub = probe.publisher(Image, "camera/image_raw", QoSProfile(depth=2))
        self.joint_pub = probe.publisher(JointState, "joint_states", qos_profile_sensor_data)
        probe.subscribe(JointTrajectory, "joint_trajectory", callback=self._follow)
        probe.node.create_timer(0.1, self._publish_image)
        probe.node.create_timer(0.02, self._publish_joints)

    def header(self) -> Header:
        return Header(stamp=self.probe.node.get_clock().now().to_msg(), frame_id="camera_optical")

    def _follow(self, msg: JointTrajectory) -> None:
        self.q = convert.trajectory_targets(msg, ARM)[1][-1]

    def _publish_image(self) -> None:
        if self.images_on:
            self.image_pub.publish(convert.rgb_to_image(self.rgb, self.header()))

    def _publish_joints(self) -> None:
        if self.joints_on:
                self.joint_pub.publish(convert.joint_state(ARM + FINGERS, np.concatenate([self.q, [0.04, 0.04]]),
                                                       self.header()))


def publish_description(probe: Probe):
    """The Panda's URDF, latched on /robot_description as robot_state_publisher does (urdf is empty)."""
    import pybullet_data

    pub = probe.publisher(String, "/robot_description", LATCHED)
    pub.publish(String(data=Path(pybullet_data.getDataPath(), "franka_panda", "panda.urdf").read_text()))
    return pub


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    from sim.env import ArmEnv, EnvConfig

    env = ArmEnv(EnvConfig(task="pick_lift", image_size=(64, 64), depth=False))
    try:
        env.reset(seed=10001)
        rgb, home, instruction = env.last_observation.images["static"], env.arm.joint_positions(), \
            env.instance.instruction
    finally:
        env.close()
    ros_env = isolated_ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ[key] = ros_env[key]  # the probe in this process joins the graph's domain
    args = {"models_dir": str(ROOT / "models"), "n": "4", "m": "4", "image_topic": "camera/image_raw",
            "joint_states_topic": "joint_states", "trajectory_topic": "joint_trajectory",
            "gripper_topic": "gripper_command", "depth_topic": "camera/depth",
            "camera_info_topic": "camera/camera_info", "output_mode": "stream"}
    logs = tmp_path_factory.mktemp("logs")
    with GraphProcesses(ROOT / "launch" / "robot_bringup.launch.yaml", args, env=ros_env, log_dir=logs) as graph, \
            Probe("fake_robot") as probe:
        arm = FakeArm(probe, rgb, home)
        arm.description_pub = publish_description(probe)
        probe.subscribe(DiagnosticArray, "/diagnostics")
        probe.subscribe(PoseStamped, "ee_target")
        instruction_pub = probe.publisher(String, "instruction", LATCHED)
        instruction_pub.publish(String(data=instruction))
        arm.instruction_pub, arm.instruction = instruction_pub, instruction
        arm.graph, arm.logs = graph, logs
        yield arm
        assert graph.poll()["vla_policy"] is None, f"the node died:\n{graph.log('vla_policy')[-3000:]}"


def diagnostics(probe: Probe, since: float, timeout: float = 10.0, where=None, repeat=None) -> dict:
    """The first /diagnostics status from the policy node after `since` that satisfies `where`; `repeat` is
    called every second meanwhile (republish best-effort input until the node counts it)."""
    def status():
        for msg in probe.received("/diagnostics", since):
            for s in msg.status:
                values = {kv.key: kv.value for kv in s.values}
                if s.name.startswith("vla_policy") and (where is None or where(s, values)):
                    level = s.level[0] if isinstance(s.level, bytes) else int(s.level)  # a `byte` field
                    return {"level": level, "message": s.message, **values}
        return None

    return probe.wait_for(status, timeout, "a matching diagnostics status", repeat=repeat, every=1.0)


def commands_after(probe: Probe, t: float) -> list[float]:
    """Header stamps (the node's publish time) of the commands published after `t` (time.monotonic()).
    Publish stamps, not arrival times: a late delivery to this process must not count as a late command."""
    offset = probe.node.get_clock().now().nanoseconds * 1e-9 - time.monotonic()  # ROS (system) - monotonic
    stamps = [convert.stamp_seconds(m.header.stamp) for m in probe.received("joint_trajectory")]
    return [s for s in stamps if s > t + offset]


def ensure_running(robot) -> None:
    """Active and enabled with commands flowing (the state every test after the lifecycle one starts in)."""
    robot.probe.bring_up(NODE)
    t = time.monotonic()
    robot.probe.wait_for(lambda: commands_after(robot.probe, t), 20.0, "joint trajectory commands")


def ensure_unconfigured(robot: FakeArm) -> None:
    """Unconfigured with the enable gate closed: how robot_bringup starts the node (it never starts
    itself), whatever an earlier test left."""
    probe = robot.probe
    state = probe.lifecycle_state(NODE)
    if state == "active":
        assert probe.change_state(NODE, "deactivate")
        state = "inactive"
    if state == "inactive":
        assert probe.change_state(NODE, "cleanup")
    assert probe.lifecycle_state(NODE) == "unconfigured"
    assert probe.call(SetBool, f"{NODE}/enable", SetBool.Request(data=False)).success


def test_lifecycle_transitions_and_the_enable_gate(robot) -> None:
    probe = robot.probe
    ensure_unconfigured(robot)
    # A folder that holds no verifier checkpoint: configure fails (the log says why), nothing is half-built.
    assert probe.set_parameters(NODE, verifier=str(ROOT / "config"))[0].successful
    assert not probe.change_state(NODE, "configure")
    assert probe.lifecycle_state(NODE) == "unconfigured"
    assert "configure failed" in robot.graph.log("vla_policy")
    assert probe.set_parameters(NODE, verifier=str(ROOT / "models" / "verifier"))[0].successful
    assert probe.change_state(NODE, "configure")
    assert probe.lifecycle_state(NODE) == "inactive"
    assert probe.change_state(NODE, "activate")
    t = time.monotonic()
    # Dry run: the node decides and publishes its end-effector target, but commands nothing.
    probe.wait_message("ee_target", 20.0, since=t)
    time.sleep(3 * PERIOD)  # a window in which a command would have been published
    assert commands_after(probe, t) == []
    assert probe.call(SetBool, f"{NODE}/enable", SetBool.Request(data=True)).success
    first = probe.wait_message("joint_trajectory", 10.0, since=t)
    assert list(first.joint_names) == ARM and len(first.points) == 1
    assert first.points[0].time_from_start.nanosec == int(PERIOD * 1e9)

    # Deactivate: one hold command at the measured joints, then nothing.
    measured = robot.q.copy()
    t = time.monotonic()
    assert probe.change_state(NODE, "deactivate")
    assert probe.lifecycle_state(NODE) == "inactive"
    held = probe.wait_message("joint_trajectory", 5.0, since=t)
    np.testing.assert_allclose(convert.trajectory_targets(held, ARM)[1][-1], measured, atol=0.16)
    t_quiet = time.monotonic() + PERIOD + DELIVERY
    time.sleep(5 * PERIOD)
    assert commands_after(probe, t_quiet) == []

    assert probe.change_state(NODE, "cleanup")
    assert probe.lifecycle_state(NODE) == "unconfigured"
    ensure_running(robot)


def test_estop_stops_commands_within_one_control_period_and_latches(robot) -> None:
    probe = robot.probe
    ensure_running(robot)
    estop = probe.publisher(Bool, "estop")
    probe.wait_matched(estop)
    t = time.monotonic()
    estop.publish(Bool(data=True))
    status = diagnostics(probe, t, where=lambda s, v: v["state"] == "ESTOP")
    assert status["level"] == 2 and "e-stop" in status["message"]  # ERROR
    late = commands_after(probe, t + PERIOD + DELIVERY)
    assert late == [], f"{len(late)} commands more than one control period after the e-stop"
    estop.publish(Bool(data=False))  # releasing the button does not restart motion
    t_release = time.monotonic()
    time.sleep(5 * PERIOD)
    assert commands_after(probe, t_release) == []
    reply = probe.call(Trigger, f"{NODE}/reset", Trigger.Request())
    assert reply.success and "e-stop cleared" in reply.message
    t = time.monotonic()
    probe.wait_for(lambda: commands_after(probe, t), 10.0, "commands after ~/reset")


def test_stale_images_hold_until_fresh_ones_arrive(robot) -> None:
    probe = robot.probe
    ensure_running(robot)
    robot.images_on = False
    t_stop = time.monotonic()
    try:
        status = diagnostics(probe, t_stop, where=lambda s, v: v["state"] == "STALE_IMAGE")
        assert status["level"] == 2 and "old" in status["message"]
        # image_timeout_s 0.5 + one period, then at most the hold command (the measured joints)
        late = commands_after(probe, t_stop + 0.5 + PERIOD + DELIVERY)
        assert len(late) <= 1
        t_quiet = time.monotonic()
        time.sleep(3 * PERIOD)
        assert commands_after(probe, t_quiet) == []
    finally:
        robot.images_on = True
    t = time.monotonic()
    probe.wait_for(lambda: commands_after(probe, t), 10.0, "commands once images are fresh again")
    assert diagnostics(probe, t, where=lambda s, v: v["state"] == "OK")["level"] == 0


def test_after_a_reset_commands_start_from_joints_measured_after_it(robot) -> None:
    """A simulator reset teleports the arm while the node still holds a joint state from before (fresh by
    its arrival): the first command of the new episode must start from the arm where it now is. (It used
    to start from the old state, commanding the arm back to where the last episode ended.)"""
    probe = robot.probe
    ensure_running(robot)
    old = robot.q.copy()
    robot.joints_on = False  # the newest joint state the node holds now shows the old pose
    assert probe.call(SetBool, f"{NODE}/enable", SetBool.Request(data=False)).success
    moved = robot.home + np.array([0.3, -0.25, 0.2, 0.25, -0.2, 0.3, -0.3])  # the arm, teleported
    robot.q = moved.copy()
    assert np.max(np.abs(moved - old)) > 0.2
    try:
        assert probe.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
        t = time.monotonic()
        assert probe.call(SetBool, f"{NODE}/enable", SetBool.Request(data=True)).success
        # no joint state since the reset: nothing is commanded, although the old one is younger than the
        # joint-state timeout (0.5 s)
        with pytest.raises(TimeoutError):
            probe.wait_for(lambda: commands_after(probe, t), 0.3, "no command before fresh joint states")
    finally:
        robot.joints_on = True
    probe.wait_for(lambda: commands_after(probe, t), 10.0, "commands once joint states are fresh")
    offset = probe.node.get_clock().now().nanoseconds * 1e-9 - time.monotonic()
    first = next(m for m in probe.received("joint_trajectory")
                 if convert.stamp_seconds(m.header.stamp) > t + offset)
    q_first = convert.trajectory_targets(first, ARM)[1][0]
    # one safety-limited step (max_joint_step 0.15 rad) from where the arm is now, not from the old pose
    assert np.max(np.abs(q_first - moved)) <= 0.15 + 1e-6, (q_first, moved, old)


def test_malformed_messages_are_dropped_with_a_diagnostic(robot) -> None:
    probe = robot.probe
    ensure_running(robot)
    image_pub, joint_pub = robot.image_pub, robot.joint_pub
    header = robot.header()
    mono = Image(header=header, height=4, width=4, encoding="mono8", step=4, data=bytes(16))
    short = Image(header=header, height=64, width=64, encoding="rgb8", step=192, data=bytes(100))
    nan_joints = JointState(header=header, name=ARM, position=[float("nan")] * 7)
    strangers = JointState(header=header, name=[f"ur_joint{i}" for i in range(7)], position=[0.0] * 7)

    def publish_malformed() -> None:
        # Joint states are best effort and the good stream keeps flowing, so a malformed message can be
        # lost in transit or overwritten in a depth-limited queue under load: republish until counted.
        for msg in (mono, short):
            image_pub.publish(msg)
        for msg in (nan_joints, strangers):
            joint_pub.publish(msg)
        robot.instruction_pub.publish(String(data="   "))

    def dropped(s, v) -> bool:
        return all(int(v.get(f"dropped_{k}", 0)) >= n for k, n in
                   (("image", 2), ("joint_states", 2), ("instruction", 1)))

    t = time.monotonic()
    status = diagnostics(probe, t, 20.0, where=dropped, repeat=publish_malformed)
    assert status["state"] == "OK"
    warned = diagnostics(probe, t, where=lambda s, v: s.message.startswith("dropped"))
    assert warned["level"] == 1  # WARN, with the reason of the latest drop
    # Still alive and commanding with the good messages that keep coming.
    t = time.monotonic()
    probe.wait_for(lambda: commands_after(probe, t), 10.0, "commands after the malformed messages")
    robot.instruction_pub.publish(String(data=robot.instruction))  # the latched value late joiners get


def test_bad_parameters_are_rejected_with_a_reason_and_good_ones_apply_live(robot) -> None:
    probe = robot.probe
    ensure_running(robot)
    for name, value, needle in (("n", 0, "n out of range"), ("steering", "beam", "'beam'"),
                                ("backend", "cuda", "'cuda'"), ("temperature", -1.0, "temperature"),
                                ("image_timeout_s", "fast", "type"), ("replan_every", 20, "chunk length 8")):
        result = probe.set_parameters(NODE, **{name: value})[0]
        assert not result.successful, f"{name}={value!r} was accepted"
        assert needle in result.reason, (name, result.reason)
    assert probe.set_parameters(NODE, n=8, m=8)[0].successful
    try:
        t = time.monotonic()
        status = diagnostics(probe, t, where=lambda s, v: v["n"] == "8" and int(v["decisions"]) > 0)
        assert status["m"] == "8"
        # image_to_command = the image's age when the decision took it + the decision + the hand-over (ms)
        assert 0.0 < float(status["plan_image_age_p50_ms"]) < float(status["image_to_command_p50_ms"])
        assert float(status["image_arrival_age_p50_ms"]) > 0.0
        # command_on_landing: a landed plan's first command leaves at once, not at the next tick (up to 100 ms)
        assert float(status["landing_to_command_p50_ms"]) < 50.0
        assert 8.0 < float(status["control_rate_hz"]) < 12.0
    finally:  # the fixture's values, for whichever test runs next
        assert probe.set_parameters(NODE, n=4, m=4)[0].successful
