"""`sim_robot` as a real process over DDS: sensors out, commands in, reset and parameter checks.

The node runs as a subprocess on its own ROS domain (localhost discovery only), the test talks to it from
its own rclpy context. Every wait is a deadline on a condition, never a fixed sleep.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed (the `ros` extra)")

from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros_nodes import convert
from ros_nodes.launcher import isolated_ros_env
from ros_nodes.probe import Probe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = int(isolated_ros_env()["ROS_DOMAIN_ID"])  # this run's own (pid-derived): concurrent runs never mix
ROS_ENV = {"ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
H, W = 48, 64
ARM = [f"panda_joint{i}" for i in range(1, 8)]
JOINTS = ARM + ["panda_finger_joint1", "panda_finger_joint2"]
INSTRUCTION = "pick up the green cube"  # pick_lift, variation id, seed 0
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
NODE_ARGS = ["--ros-args", "-p", "task:=pick_lift", "-p", "seed:=0", "-p", f"image_size:=[{H},{W}]",
             "-p", "physics_hz:=60.0", "-p", "camera_hz:=10.0"]


def node_command(*ros_args: str) -> list[str]:
    return [sys.executable, "-m", "ros_nodes.sim_robot_node", *ros_args]


TOPICS = {"image": (Image, "camera/image_raw", 5), "depth": (Image, "camera/depth", 5),
          "info": (CameraInfo, "camera/camera_info", 5), "joints": (JointState, "joint_states", 10),
          "instruction": (String, "sim_robot/instruction", LATCHED), "success": (Bool, "sim_robot/success", LATCHED)}
RESET = (Trigger, "sim_robot/reset")
SET_PARAMS = (SetParameters, "sim_robot/set_parameters")


class Received:
    """A live view: `got["image"]` is every image that has arrived so far (read at each lookup)."""

    def __init__(self, ros: Probe) -> None:
        self.ros = ros

    def __getitem__(self, key: str) -> list:
        return self.ros.received(TOPICS[key][1])


class SimRobot:
    """The node under test and the test's side of the graph (a `ros_nodes.probe.Probe`): what arrived per
    topic, publishers, services; every wait fails at once with the node's log if the node died."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log = proc, log
        self.ros = Probe("sim_robot_probe")
        for typ, topic, qos in TOPICS.values():
            self.ros.subscribe(typ, topic, qos)
        self.trajectory_pub = self.ros.publisher(JointTrajectory, "joint_trajectory", 10)
        self.gripper_pub = self.ros.publisher(Float64, "gripper_command", 10)

    @property
    def got(self) -> Received:
        return Received(self.ros)

    def close(self) -> None:
        self.ros.close()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str,
             repeat: Callable[[], None] | None = None) -> None:
        """Until `predicate()` holds; `repeat` (e.g. republish a command) runs every 0.5 s meanwhile."""
        try:
            self.ros.wait_for(predicate, timeout, what, repeat=repeat, alive=lambda: self.proc.poll() is None)
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"{e} (node exit code {self.proc.poll()}); node log:\n{self.log.read_text()[-3000:]}")

    def call(self, service: tuple, request, timeout: float = 10.0):
        return self.ros.call(*service, request, timeout)

    def measured(self) -> np.ndarray:
        return convert.joint_positions(self.ros.received("joint_states")[-1], JOINTS)

    def new_joint_states(self, n: int, timeout: float = 5.0) -> None:
        start = len(self.ros.received("joint_states"))
        self.wait(lambda: len(self.ros.received("joint_states")) >= start + n, timeout, f"{n} more joint_states")


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Iterator[SimRobot]:
    log = tmp_path_factory.mktemp("sim_robot") / "node.log"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ROS_ENV.items():
            mp.setenv(k, v)  # read by rcl when the contexts (the node's and ours) initialise
        with log.open("w") as out:
            proc = subprocess.Popen(node_command(*NODE_ARGS), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        probe = SimRobot(proc, log)
        try:
            yield probe
        finally:
            probe.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    pytest.fail(f"sim_robot ignored SIGINT; log:\n{log.read_text()[-3000:]}")
            assert proc.returncode == 0, f"sim_robot exited {proc.returncode}; log:\n{log.read_text()[-3000:]}"


def trajectory(names: list[str], points: list[list[float]]) -> JointTrajectory:
    return JointTrajectory(header=Header(), joint_names=names,
                           points=[JointTrajectoryPoint(positions=q) for q in points])


def test_sensors_arrive_with_sizes_names_and_shared_stamps(probe: SimRobot) -> None:
    g = probe.got
    probe.wait(lambda: all(len(g[k]) >= 3 for k in ("image", "depth", "info")) and g["joints"], 30.0,
               "camera, depth, camera_info and joint_states")
    image, depth, info = g["image"][-1], g["depth"][-1], g["info"][-1]
    assert convert.image_to_rgb(image).shape == (H, W, 3) and image.encoding == "rgb8"
    d = convert.image_to_depth(depth)
    assert d.shape == (H, W) and depth.encoding == "32FC1" and 0.3 < np.median(d[d > 0]) < 3.0
    assert (info.width, info.height) == (W, H) and info.k[0] > 0
    assert image.header.frame_id == depth.header.frame_id == info.header.frame_id == "camera_optical"
    image_stamps = {convert.stamp_seconds(m.header.stamp) for m in g["image"]}
    assert image_stamps & {convert.stamp_seconds(m.header.stamp) for m in g["depth"]} \
        & {convert.stamp_seconds(m.header.stamp) for m in g["info"]}
    js = g["joints"][-1]
    assert list(js.name) == JOINTS and js.header.frame_id == "panda_link0"
    assert np.all(np.isfinite(probe.measured()))
    probe.wait(lambda: len(g["instruction"]) >= 1 and len(g["success"]) >= 1, 5.0, "latched episode topics")
    assert g["instruction"][-1].data == INSTRUCTION and g["success"][-1].data is False


def test_joint_trajectory_moves_the_measured_joint(probe: SimRobot) -> None:
    probe.new_joint_states(1)
    target = probe.measured()[:7]
    target[0] += 0.3
    msg = convert.joint_trajectory(ARM, target[None], 0.1, Header())
    probe.wait(lambda: abs(probe.measured()[0] - target[0]) < 0.02, 15.0, "panda_joint1 to reach its target",
               repeat=lambda: probe.trajectory_pub.publish(msg))
    np.testing.assert_allclose(probe.measured()[1:7], target[1:], atol=0.05)
    probe.gripper_pub.publish(Float64(data=5.0))  # clipped to fully open: the fingers stay apart
    probe.new_joint_states(10)
    assert probe.measured()[7:].min() > 0.03


def test_malformed_commands_are_dropped_and_the_node_keeps_publishing(probe: SimRobot) -> None:
    probe.new_joint_states(1)
    before = probe.measured()
    good = before[:7].tolist()
    bad = [trajectory(ARM[:6] + ["elbow_of_doom"], [good]),                   # unknown joint name
           trajectory(ARM, [good[:3] + [math.nan] + good[4:]]),                # NaN
           trajectory(ARM, [good[:5]]),                                        # fewer positions than names
           trajectory(ARM, [])]                                                # no points
    for msg in bad:
        probe.trajectory_pub.publish(msg)
    probe.gripper_pub.publish(Float64(data=math.nan))
    probe.wait(lambda: "dropped joint_trajectory" in probe.log.read_text(), 10.0, "the drop to be logged")
    probe.new_joint_states(30)
    assert probe.proc.poll() is None
    after = probe.measured()
    assert np.all(np.isfinite(after))
    np.testing.assert_allclose(after, before, atol=0.02)  # still holding the last good target


def test_bad_parameters_are_rejected_with_a_reason(probe: SimRobot) -> None:
    request = SetParameters.Request(parameters=[
        Parameter("physics_hz", value=7.0).to_parameter_msg(),
        Parameter("task", value="juggle").to_parameter_msg(),
        Parameter("image_size", value=[48, 0]).to_parameter_msg(),
        Parameter("camera_hz", value=20.0).to_parameter_msg()])
    results = probe.call(SET_PARAMS, request).results
    reasons = [(r.successful, r.reason) for r in results]
    assert [ok for ok, _ in reasons] == [False, False, False, True], reasons
    assert "physics_hz must divide 240" in reasons[0][1] and "7.0" in reasons[0][1]
    assert "juggle" in reasons[1][1]
    assert "image_size" in reasons[2][1]


def test_reset_applies_parameters_returns_the_instruction_and_rehomes_the_arm(probe: SimRobot) -> None:
    g = probe.got
    probe.wait(lambda: len(g["instruction"]) >= 1, 5.0, "the start-up instruction")
    n_instr, n_success = len(g["instruction"]), len(g["success"])
    home = convert.joint_positions(g["joints"][0], JOINTS)
    probe.trajectory_pub.publish(trajectory(ARM, [(home[:7] + 0.2).tolist()]))
    probe.wait(lambda: abs(probe.measured()[0] - home[0]) > 0.1, 15.0, "the arm to leave home")
    resize = SetParameters.Request(parameters=[Parameter("image_size", value=[32, 40]).to_parameter_msg()])
    assert probe.call(SET_PARAMS, resize).results[0].successful
    response = probe.call(RESET, Trigger.Request())
    assert response.success and response.message == INSTRUCTION
    probe.wait(lambda: (g["image"][-1].height, g["image"][-1].width) == (32, 40), 5.0,
               "images of the new size after the reset rebuilt the env")
    probe.wait(lambda: len(g["instruction"]) > n_instr and len(g["success"]) > n_success, 5.0,
               "instruction and success to be republished")
    assert g["instruction"][-1].data == INSTRUCTION and g["success"][-1].data is False
    probe.new_joint_states(5)
    np.testing.assert_allclose(probe.measured()[:7], home[:7], atol=0.02)


def test_an_unbuildable_start_up_configuration_exits_with_the_reason() -> None:
    done = subprocess.run(node_command("--ros-args", "-p", "physics_hz:=7.0"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, **ROS_ENV))
    assert done.returncode != 0
    assert "physics_hz must divide 240" in done.stderr, done.stderr[-2000:]
