"""`ros_nodes.launcher`: a YAML launch file brought up as real processes over DDS, and stopped cleanly.

The launch file is a one-node file (the simulated robot, in the ROS 2 YAML launch format the shipped
files use) written into tmp_path, so this tests the launcher (argv, environment, process groups, stop
signals, the CLI) rather than the full sim + policy loop (tests/ros/test_sim_bringup.py runs that).
Each run uses its own ROS domain with localhost discovery; waits are deadlines on conditions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed (the `ros` extra)")

from sensor_msgs.msg import JointState

from ros_nodes.launcher import DOMAIN_RANGE, GraphProcesses, isolated_ros_env
from ros_nodes.probe import Probe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # a cold start imports torch-free sim code and builds the PyBullet world: seconds


def one_node_graph(tmp_path: Path) -> Path:
    if not (ROOT / "ros_nodes" / "sim_robot_node.py").is_file():
        pytest.skip("ros_nodes/sim_robot_node.py is not there yet")
    path = tmp_path / "launch" / "sim_only.launch.yaml"
    path.parent.mkdir()
    path.write_text(f"""
launch:
  - arg: {{name: seed, default: "0"}}
  - node:
      pkg: vla_steering
      exec: sim_robot_node
      name: sim_robot
      param:
        - {{from: "{ROOT / "config" / "sim_robot.yaml"}"}}
        - {{name: seed, value: "$(var seed)"}}
        - {{name: image_size, value: [32, 32]}}
        - {{name: depth, value: false}}
        - {{name: camera_hz, value: 5.0}}
""")
    return path


@pytest.fixture
def ros_env(monkeypatch) -> dict[str, str]:
    """This run's own domain (derived from the pid, so concurrent test runs never hear each other)."""
    env = isolated_ros_env()
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):  # read by rmw when the probe inits
        monkeypatch.setenv(key, env[key])
    return env


@pytest.fixture
def probe(ros_env) -> Iterator[Probe]:
    with Probe("launcher_probe") as p:
        p.subscribe(JointState, "joint_states")
        yield p


def joint_states_arrive(probe: Probe, alive) -> JointState:
    """The first joint_states message; fails at once if the process under test died."""
    def check():
        if not alive():
            raise AssertionError("the launched process exited")
        msgs = probe.received("joint_states")
        return msgs[-1] if msgs else None

    return probe.wait_for(check, START_TIMEOUT_S, "joint_states from the launched sim_robot")


def test_isolated_ros_env():
    env = isolated_ros_env()
    assert DOMAIN_RANGE[0] <= int(env["ROS_DOMAIN_ID"]) < DOMAIN_RANGE[1]
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert isolated_ros_env(51)["ROS_DOMAIN_ID"] == "51"
    with pytest.raises(ValueError, match="0..232, got 300"):
        isolated_ros_env(300)


def test_graph_processes_run_and_stop_cleanly(tmp_path, probe, ros_env):
    graph = GraphProcesses(one_node_graph(tmp_path), {"seed": "2"}, env=ros_env, log_dir=tmp_path / "log")
    with graph:
        assert set(graph.pids) == {"sim_robot"}
        try:
            msg = joint_states_arrive(probe, lambda: graph.poll()["sim_robot"] is None)
        except (TimeoutError, AssertionError) as e:
            raise AssertionError(f"{e}; its log:\n{graph.log('sim_robot')}") from e
        assert "panda_joint1" in msg.name
        assert graph.poll() == {"sim_robot": None}
        codes = graph.stop(timeout=15.0)
    assert codes == {"sim_robot": 0}, f"SIGINT should end a node cleanly; log:\n{graph.log('sim_robot')}"
    assert "seed:=2" in " ".join(graph.specs[0].argv()) and (tmp_path / "log" / "sim_robot.log").is_file()


def test_launcher_cli_runs_until_ctrl_c(tmp_path, probe, ros_env):
    """`python -m ros_nodes.launcher FILE name:=value` runs the nodes until SIGINT, then exits 0."""
    log = tmp_path / "launcher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ros_nodes.launcher", str(one_node_graph(tmp_path)), "seed:=1",
             "--log-dir", str(tmp_path / "log")],
            cwd=ROOT, env=ros_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                joint_states_arrive(probe, lambda: proc.poll() is None)
            except (TimeoutError, AssertionError) as e:
                raise AssertionError(f"{e}; launcher output:\n{log.read_text()}") from e
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does: the launcher's group only
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text()
    assert "exit codes {'sim_robot': 0}" in text, text
