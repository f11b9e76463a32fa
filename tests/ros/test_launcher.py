"""`ros_nodes.launcher`: a graph file brought up as real processes over DDS, and stopped cleanly.

The graph is a one-node graph (the simulated robot) written into tmp_path, so this tests the launcher
(argv, environment, process groups, stop signals, the CLI) rather than the full sim + policy loop.
Each test runs on its own ROS domain with localhost discovery; waits are deadlines on conditions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed (the `ros` extra)")

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from ros_nodes.launcher import DOMAIN_RANGE, GraphProcesses, isolated_ros_env

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # a cold start imports torch-free sim code and builds the PyBullet world: seconds


def one_node_graph(tmp_path: Path) -> Path:
    if not (ROOT / "ros_nodes" / "sim_robot_node.py").is_file():
        pytest.skip("ros_nodes/sim_robot_node.py is not there yet")
    path = tmp_path / "launch" / "sim_only.graph.yaml"
    path.parent.mkdir()
    path.write_text(f"""
arguments:
  seed: {{default: "0"}}
nodes:
  - name: sim_robot
    executable: sim_robot_node
    parameters: [{ROOT / "config" / "sim_robot.yaml"}]
    overrides: {{seed: "${{seed}}", image_size: [32, 32], depth: false, camera_hz: 5.0}}
""")
    return path


class JointStateProbe:
    """The test's own rclpy context on `domain`, counting joint_states messages."""

    def __init__(self, domain: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("launcher_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.names: list[list[str]] = []
        self.trajectories: list[JointTrajectory] = []
        self.node.create_subscription(JointState, "joint_states", lambda m: self.names.append(list(m.name)), 10)
        self.node.create_subscription(JointTrajectory, "joint_trajectory", self.trajectories.append, 10)

    def wait(self, received: list, count: int, timeout: float, alive=lambda: True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(received) < count and alive():
            self.executor.spin_once(timeout_sec=0.1)
        return len(received) >= count

    def wait_for_joint_states(self, count: int, timeout: float, alive=lambda: True) -> bool:
        return self.wait(self.names, count, timeout, alive)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def probe(request, monkeypatch) -> Iterator[JointStateProbe]:
    domain = request.param
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # read by rmw at init
    p = JointStateProbe(domain)
    yield p
    p.close()


def test_isolated_ros_env():
    env = isolated_ros_env()
    assert DOMAIN_RANGE[0] <= int(env["ROS_DOMAIN_ID"]) < DOMAIN_RANGE[1]
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert isolated_ros_env(51)["ROS_DOMAIN_ID"] == "51"
    with pytest.raises(ValueError, match="0..232, got 300"):
        isolated_ros_env(300)


@pytest.mark.parametrize("probe", [51], indirect=True)
def test_graph_processes_run_and_stop_cleanly(tmp_path, probe):
    graph = GraphProcesses(one_node_graph(tmp_path), {"seed": "2"}, env=isolated_ros_env(51), log_dir=tmp_path / "log")
    with graph:
        assert set(graph.pids) == {"sim_robot"}
        alive = lambda: graph.poll()["sim_robot"] is None  # noqa: E731
        got = probe.wait_for_joint_states(3, START_TIMEOUT_S, alive)
        assert got, f"no joint_states from the launched sim_robot; its log:\n{graph.log('sim_robot')}"
        assert "panda_joint1" in probe.names[-1]
        assert graph.poll() == {"sim_robot": None}
        codes = graph.stop(timeout=15.0)
    assert codes == {"sim_robot": 0}, f"SIGINT should end a node cleanly; log:\n{graph.log('sim_robot')}"
    assert "seed" in " ".join(graph.specs[0].argv()) and (tmp_path / "log" / "sim_robot.log").is_file()


@pytest.mark.parametrize("probe", [52], indirect=True)
def test_launcher_cli_runs_until_ctrl_c(tmp_path, probe):
    """`python -m ros_nodes.launcher graph name:=value` runs the nodes until SIGINT, then exits 0."""
    log = tmp_path / "launcher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ros_nodes.launcher", str(one_node_graph(tmp_path)), "seed:=1",
             "--log-dir", str(tmp_path / "log")],
            cwd=ROOT, env=isolated_ros_env(52), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            got = probe.wait_for_joint_states(3, START_TIMEOUT_S, lambda: proc.poll() is None)
            assert got, f"no joint_states; launcher output:\n{log.read_text()}"
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does: the launcher's group only
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text()
    assert "exit codes {'sim_robot': 0}" in text, text
