"""Safety holes of `policy_node` found by a probe playing camera and arm, checked on the real process over
Fast DDS: clock skew and late frames, the e-stop latch across lifecycle transitions and late starts,
missing scorer folders, holds that jump, absurd joint states, relative model paths outside the repository,
Ctrl-C at random moments, and a 640x480 camera at 30 Hz.

The module's node runs with its working directory in a temporary folder (not the repository) on the
repository's `config/policy_node.yaml`, so its relative model paths must resolve through the package share
root. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="the ROS 2 wheels (extra `ros`) are not installed")

from builtin_interfaces.msg import Time
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
STEP = 0.02  # max_joint_step of the module's node: small, so any motion saturates it
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
DELIVERY = 0.05  # s: DDS delivery + executor slack on a loaded 2-core machine
START_S = 90.0  # a cold node start: imports torch, loads the models, one warm-up decision


class FakeRobot:
    """Camera (10 Hz, reliable as the node subscribes) and arm (joint states at 50 Hz that jump to every
    commanded target). `image_skew` shifts image stamps (a camera clock that runs ahead)."""

    def __init__(self, probe: Probe, rgb: np.ndarray, home: np.ndarray, instruction: str) -> None:
        self.probe, self.rgb, self.home, self.q = probe, rgb, home.copy(), home.copy()
        self.images_on = self.joints_on = True
        self.image_skew = 0.0
        self.image_pub = probe.publisher(Image, "camera/image_raw", QoSProfile(depth=2))
        self.joint_pub = probe.publisher(JointState, "joint_states", qos_profile_sensor_data)
        self.instruction_pub = probe.publisher(String, "instruction", LATCHED)
        self.instruction_pub.publish(String(data=instruction))
        import pybullet_data  # the Panda's URDF, latched as robot_state_publisher does (urdf is empty)

        self.description_pub = probe.publisher(String, "/robot_description", LATCHED)
        self.description_pub.publish(String(data=Path(pybullet_data.getDataPath(), "franka_panda",
                                                      "panda.urdf").read_text()))
        probe.subscribe(JointTrajectory, "joint_trajectory", callback=self._follow)
        probe.subscribe(DiagnosticArray, "/diagnostics")
        probe.subscribe(PoseStamped, "ee_target")
        probe.node.create_timer(0.1, self._publish_image)
        probe.node.create_timer(0.02, self._publish_joints)

    def header(self, offset: float = 0.0) -> Header:
        ns = self.probe.node.get_clock().now().nanoseconds + int(offset * 1e9)
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id="camera_optical")

    def _follow(self, msg: JointTrajectory) -> None:
        self.q = convert.trajectory_targets(msg, ARM)[1][-1]

    def _publish_image(self) -> None:
        if self.images_on:
            self.image_pub.publish(convert.rgb_to_image(self.rgb, self.header(self.image_skew)))

    def _publish_joints(self) -> None:
        if self.joints_on:
            self.joint_pub.publish(self.joint_state(np.concatenate([self.q, [0.04, 0.04]])))

    def joint_state(self, positions) -> JointState:
        return JointState(header=self.header(), name=ARM + FINGERS, position=[float(v) for v in positions])


def render_scene() -> tuple[np.ndarray, np.ndarray, str]:
    """A real rendered frame, the arm's home joints and the task's instruction: the policy moves on it."""
    from sim.env import ArmEnv, EnvConfig

    env = ArmEnv(EnvConfig(task="pick_lift", image_size=(64, 64), depth=False))
    try:
        env.reset(seed=10001)
        return env.last_observation.images["static"], env.arm.joint_positions(), env.instance.instruction
    finally:
        env.close()


def graph_file(folder: Path, **overrides) -> Path:
    """A one-node YAML launch file: the policy node on the repository's config/policy_node.yaml (absolute
    path), with `overrides` as literal parameter values."""
    params = [{"from": str(ROOT / "config" / "policy_node.yaml")}]
    params += [{"name": k, "value": v} for k, v in overrides.items()]
    path = folder / "launch" / "policy.launch.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"launch": [{"node": {"pkg": "vla_steering", "exec": "policy_node",
                                                          "name": "vla_policy", "param": params}}]}))
    return path


def start_graph(folder: Path, logs: Path, **overrides) -> GraphProcesses:
    """The node as a process whose working directory is `folder` (not the repository)."""
    here = os.getcwd()
    os.chdir(folder)
    try:
        return GraphProcesses(graph_file(folder, **overrides), env=isolated_ros_env(), log_dir=logs).start()
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def scene():
    return render_scene()


@pytest.fixture(scope="module")
def robot(scene, tmp_path_factory):
    ros_env = isolated_ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ[key] = ros_env[key]  # the probe in this process joins the node's domain
    with Probe("fake_robot") as probe:
        yield FakeRobot(probe, *scene)


@pytest.fixture(scope="module")
def node(robot, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("elsewhere")
    logs = tmp_path_factory.mktemp("logs")
    graph = start_graph(cwd, logs, n=4, m=4, max_joint_step=STEP)
    try:
        robot.probe.wait_for(lambda: on_graph(robot.probe), START_S, "the policy node on the graph",
                             alive=lambda: graph.poll()["vla_policy"] is None)
        yield graph
        assert graph.poll()["vla_policy"] is None, f"the node died:\n{graph.log('vla_policy')[-3000:]}"
    finally:
        graph.stop()


# --------------------------------------------------------------------------- helpers


def diagnostics(probe: Probe, since: float, timeout: float = 10.0, where=None, alive=None) -> dict:
    """The first /diagnostics status of the policy node after `since` that satisfies `where(values)`."""
    def status():
        for msg in probe.received("/diagnostics", since):
            for s in msg.status:
                values = {kv.key: kv.value for kv in s.values}
                if s.name.startswith("vla_policy") and (where is None or where(values)):
                    level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                    return {"level": level, "message": s.message, **values}
        return None

    return probe.wait_for(status, timeout, "a matching diagnostics status", alive=alive)


def on_graph(probe: Probe, name: str = "vla_policy") -> bool:
    return name in probe.node.get_node_names()


def seen_states(probe: Probe, since: float) -> set[str]:
    return {kv.value for msg in probe.received("/diagnostics", since) for s in msg.status for kv in s.values
            if kv.key == "state"}


def counter(values: dict, key: str) -> int:
    return int(values.get(key, 0))


def commands(probe: Probe, since: float) -> list[tuple[float, np.ndarray]]:
    """(publish stamp s on the ROS clock, joint targets) of the commands published after `since`
    (time.monotonic())."""
    offset = probe.node.get_clock().now().nanoseconds * 1e-9 - time.monotonic()
    out = [(convert.stamp_seconds(m.header.stamp), convert.trajectory_targets(m, ARM)[1][-1])
           for m in probe.received("joint_trajectory")]
    return [(t, q) for t, q in out if t > since + offset]


def ensure_running(robot) -> None:
    """Active and enabled with commands flowing."""
    robot.probe.bring_up(NODE)
    t = time.monotonic()
    robot.probe.wait_for(lambda: commands(robot.probe, t), 20.0, "joint trajectory commands")


# --------------------------------------------------------------------------- nodes of their own
# (before the module's node starts: one vla_policy on the domain at a time)


def test_a_node_that_starts_late_sees_a_pressed_latched_estop(robot, tmp_path) -> None:
    probe = robot.probe
    estop = probe.publisher(Bool, "estop", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    estop.publish(Bool(data=True))  # pressed before the node exists
    t0 = time.monotonic()
    graph = start_graph(tmp_path, tmp_path / "logs", n=4, m=4, autostart=True, start_enabled=True)
    try:
        alive = lambda: graph.poll()["vla_policy"] is None  # noqa: E731
        status = diagnostics(probe, t0, START_S, where=lambda v: v["active"] == "True", alive=alive)
        assert status["state"] == "ESTOP" and status["estop_pressed"] == "True"
        time.sleep(10 * PERIOD)
        assert commands(probe, t0) == [], "a late node commanded under a pressed (latched) e-stop"
        t = time.monotonic()
        estop.publish(Bool(data=False))
        diagnostics(probe, t, where=lambda v: v["estop_pressed"] == "False")
        assert probe.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
        t = time.monotonic()
        probe.wait_for(lambda: commands(probe, t), 20.0, "commands after ~/reset", alive=alive)
    finally:
        probe.node.destroy_publisher(estop)
        codes = graph.stop()
    assert codes["vla_policy"] == 0, graph.log("vla_policy")[-3000:]


def interrupt_once(probe: Probe, graph: GraphProcesses, mid_decision: bool, delay: float) -> int | str:
    """SIGINT the node `delay` s after it is on the graph, or after its first decisions; its exit code."""
    t0 = time.monotonic()
    proc = graph.processes["vla_policy"]
    alive = lambda: proc.poll() is None  # noqa: E731
    probe.wait_for(lambda: on_graph(probe), START_S, "the node on the graph", alive=alive)
    if mid_decision:
        probe.wait_for(lambda: probe.received("ee_target", t0), START_S, "decisions", alive=alive)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=30.0)
    except subprocess.TimeoutExpired:
        return "hung"


def test_sigint_at_random_moments_exits_cleanly(robot, tmp_path) -> None:
    """Ctrl-C while configuring, warming up or mid-decision (replan every step keeps inference busy):
    exit code 0 every time, never SIGABRT from a thread left inside torch."""
    rng, runs = random.Random(0), 8
    exits, logs = [], {}
    for k in range(runs):
        mid_decision = k % 2 == 0  # even runs: deciding; odd runs: some time into configure / warm-up
        n = 32 if mid_decision else 4  # decisions of ~0.5 s: a Ctrl-C lands inside one
        graph = start_graph(tmp_path, tmp_path / f"run{k}", n=n, m=n, autostart=True, start_enabled=True,
                            replan_every=1)
        try:
            exits.append(interrupt_once(robot.probe, graph, mid_decision,
                                        rng.uniform(0.0, 0.5 if mid_decision else 3.0)))
            if exits[-1] != 0:
                logs[k] = graph.log("vla_policy")[-2000:]
        finally:
            graph.stop()
    assert exits == [0] * runs, f"exit codes {exits}; logs of the failed runs: {logs}"


# --------------------------------------------------------------------------- configure


def test_configure_fails_naming_a_missing_scorer_folder(robot, node) -> None:
    probe = robot.probe
    assert probe.lifecycle_state(NODE) == "unconfigured"
    assert probe.set_parameters(NODE, verifier="/no/such/verifier")[0].successful  # checked at configure
    try:
        assert not probe.change_state(NODE, "configure")
        assert probe.lifecycle_state(NODE) == "unconfigured"
        assert "verifier checkpoint folder '/no/such/verifier' does not exist" in node.log("vla_policy")
    finally:
        assert probe.set_parameters(NODE, verifier="models/verifier")[0].successful


@pytest.mark.parametrize("content", ["null", "[1, 2]", "3"])
def test_configure_fails_with_a_log_line_naming_a_corrupt_config_file(robot, node, tmp_path, content: str) -> None:
    """Before: `null` or a list in config.json raised a TypeError inside configure, with no log line."""
    probe = robot.probe
    assert probe.lifecycle_state(NODE) == "unconfigured"
    broken = tmp_path / "policy"
    shutil.copytree(ROOT / "models" / "policy", broken)
    (broken / "config.json").write_text(content)
    assert probe.set_parameters(NODE, policy=str(broken))[0].successful
    try:
        assert not probe.change_state(NODE, "configure")
        assert probe.lifecycle_state(NODE) == "unconfigured"
        assert f"configure failed: {broken / 'config.json'} must hold a JSON object" in node.log("vla_policy")
    finally:
        assert probe.set_parameters(NODE, policy="models/policy")[0].successful


def test_relative_model_paths_resolve_outside_the_repository(robot, node) -> None:
    """cwd is a temporary folder; config/policy_node.yaml says models/policy: the share root has it."""
    probe = robot.probe
    assert probe.change_state(NODE, "configure"), node.log("vla_policy")[-2000:]
    assert probe.lifecycle_state(NODE) == "inactive"
    assert f"configured: policy {ROOT / 'models' / 'policy'}" in node.log("vla_policy")


# --------------------------------------------------------------------------- camera stream


def test_a_640x480_camera_at_30hz_arrives_and_oversized_frames_are_reported(robot, node) -> None:
    probe = robot.probe
    if probe.lifecycle_state(NODE) == "inactive":
        assert probe.change_state(NODE, "activate")
    robot.images_on = False
    try:
        before = diagnostics(probe, time.monotonic())
        rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        frames, t_next = 60, time.monotonic()
        for _ in range(frames):  # 2 s at 30 Hz
            robot.image_pub.publish(convert.rgb_to_image(rgb, robot.header()))
            t_next += 1 / 30
            time.sleep(max(0.0, t_next - time.monotonic()))
        need = counter(before, "received_image") + int(0.9 * frames)
        try:
            diagnostics(probe, time.monotonic(), timeout=5.0, where=lambda v: counter(v, "received_image") >= need)
        except TimeoutError:
            got = counter(diagnostics(probe, time.monotonic()), "received_image") - counter(before, "received_image")
            pytest.fail(f"the node received {got} of {frames} 640x480 frames")
        huge = np.zeros((960, 1280, 3), np.uint8)  # 3.7 MB > max_image_bytes 3 MiB
        t = time.monotonic()
        robot.image_pub.publish(convert.rgb_to_image(huge, robot.header()))
        status = diagnostics(probe, t, where=lambda v: counter(v, "dropped_image_oversized") >= 1)
        assert counter(status, "dropped_image_oversized") == 1
    finally:
        robot.images_on = True


def test_images_stamped_in_the_future_stop_commands_within_the_timeout(robot, node) -> None:
    probe = robot.probe
    ensure_running(robot)
    robot.image_skew = 3.0  # the camera's clock runs 3 s ahead
    try:
        t = time.monotonic() + 0.3
        probe.wait_for(lambda: commands(probe, t), 10.0, "commands from future-stamped images")
        robot.images_on = False
        t_stop = time.monotonic()
        time.sleep(1.5)  # the window in which commands must end: timeout 0.5 s + one period (+ the hold)
        late = commands(probe, t_stop + 0.5 + PERIOD + DELIVERY)
        assert len(late) <= 1, f"{len(late)} commands more than {0.5 + PERIOD + DELIVERY} s after the camera " \
                               f"stopped (timeout 0.5 s; at most the hold)"
        status = diagnostics(probe, t_stop, where=lambda v: v["state"] == "STALE_IMAGE")
        assert "old by arrival" in status["message"] and counter(status, "image_stamps_future") > 0
    finally:
        robot.image_skew = 0.0
        robot.images_on = True
    t = time.monotonic()  # a correct clock again: accepted once the future-stamped frame has gone stale
    probe.wait_for(lambda: commands(probe, t), 10.0, "commands once the camera is back")


def test_a_late_frame_is_dropped_and_counted_without_a_hold(robot, node) -> None:
    """Fresh frames at 10 Hz from this thread; one stamped 5 s ago right after a fresh one stays the
    newest for 150 ms, so at least one control tick sees it."""
    probe = robot.probe
    ensure_running(robot)
    before = diagnostics(probe, time.monotonic())
    robot.images_on = False
    try:
        t = time.monotonic()
        for k in range(15):
            robot.image_pub.publish(convert.rgb_to_image(robot.rgb, robot.header()))
            if k == 5:
                time.sleep(0.01)
                robot.image_pub.publish(convert.rgb_to_image(robot.rgb, robot.header(-5.0)))  # the late one
                time.sleep(0.14)
            else:
                time.sleep(0.1)
    finally:
        robot.images_on = True
    stamps = [s for s, _ in commands(probe, t)]
    gaps = np.diff(stamps)
    assert len(stamps) >= 8 and gaps.max() < 2.5 * PERIOD, f"command gaps {np.round(gaps, 3).tolist()}"
    assert "STALE_IMAGE" not in seen_states(probe, t)
    diagnostics(probe, t, where=lambda v: counter(v, "dropped_image_out_of_order")
                > counter(before, "dropped_image_out_of_order"))


# --------------------------------------------------------------------------- joints


def restart_from_home(robot: FakeRobot) -> None:
    """The arm back at its home pose and commands flowing from there (the policy reaches out: it moves)."""
    probe = robot.probe
    assert probe.call(SetBool, f"{NODE}/enable", SetBool.Request(data=False)).success
    robot.q = robot.home.copy()
    time.sleep(2 * PERIOD)  # joint states of the home pose reach the node
    ensure_running(robot)


def test_the_hold_after_stale_joint_states_passes_the_step_clamp(robot, node) -> None:
    probe = robot.probe
    restart_from_home(robot)
    t_start = time.monotonic()
    time.sleep(3 * PERIOD)
    robot.joints_on = False  # the arm goes on following commands; its joint states stop
    stale = robot.q.copy()  # what the node measured last (to within one 20 ms joint-state period)
    try:
        t = time.monotonic()
        diagnostics(probe, t, where=lambda v: v["state"] == "STALE_JOINTS")
        time.sleep(3 * PERIOD)
        sent = commands(probe, t_start)
    finally:
        robot.joints_on = True
    q = np.array([q for _, q in sent])
    steps = np.abs(np.diff(q, axis=0)).max(axis=1)
    drift = np.abs(q[-2] - stale).max()
    assert drift > STEP, f"the arm moved only {drift:.3f} rad while its joint states were stale: no test"
    assert steps.max() <= STEP + 1e-9, f"a command moved {steps.max():.3f} rad (max_joint_step {STEP}); " \
                                       f"the hold moved {steps[-1]:.3f} rad"
    t = time.monotonic()
    probe.wait_for(lambda: commands(probe, t), 10.0, "commands once joint states are back")


def test_absurd_joint_states_are_dropped_and_reported(robot, node) -> None:
    probe = robot.probe
    ensure_running(robot)
    before = diagnostics(probe, time.monotonic())
    good = np.concatenate([robot.q, [0.04, 0.04]])
    robot.joints_on = False  # only absurd joint states now: they must not count as fresh
    try:
        t, end = time.monotonic(), time.monotonic() + 1.0
        while time.monotonic() < end:
            for bad in (1e6, float("nan")):
                for index in (3, 8):  # an arm joint, a finger
                    q = good.copy()
                    q[index] = bad
                    robot.joint_pub.publish(robot.joint_state(q))
            time.sleep(0.02)
        assert "STALE_JOINTS" in seen_states(probe, t), f"states seen: {seen_states(probe, t)}"
    finally:
        robot.joints_on = True
    status = diagnostics(probe, t, where=lambda v: counter(v, "dropped_joint_limits")
                         >= counter(before, "dropped_joint_limits") + 2)  # the 1e6 ones
    assert counter(status, "dropped_joint_states") >= counter(before, "dropped_joint_states") + 2  # the NaN ones
    t = time.monotonic()
    probe.wait_for(lambda: commands(probe, t), 10.0, "commands after the absurd joint states")


# --------------------------------------------------------------------------- e-stop


def test_the_estop_stays_latched_across_cleanup_configure_activate(robot, node) -> None:
    probe = robot.probe
    ensure_running(robot)
    estop = probe.publisher(Bool, "estop")
    probe.wait_matched(estop)
    try:
        estop.publish(Bool(data=True))
        diagnostics(probe, time.monotonic(), where=lambda v: v["state"] == "ESTOP")
        for transition in ("deactivate", "cleanup", "configure", "activate"):
            assert probe.change_state(NODE, transition)
        t = time.monotonic()
        status = diagnostics(probe, t, where=lambda v: v["active"] == "True")
        time.sleep(10 * PERIOD)
        assert commands(probe, t) == [], "commands after cleanup -> configure -> activate without ~/reset"
        assert status["state"] == "ESTOP"
        reply = probe.call(Trigger, f"{NODE}/reset", Trigger.Request())
        assert not reply.success and "pressed" in reply.message  # the last e-stop message said pressed
        t = time.monotonic()
        estop.publish(Bool(data=False))
        diagnostics(probe, t, where=lambda v: v["estop_pressed"] == "False")
        assert probe.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
        t = time.monotonic()
        probe.wait_for(lambda: commands(probe, t), 10.0, "commands after ~/reset")
    finally:
        probe.node.destroy_publisher(estop)
