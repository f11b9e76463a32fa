"""The policy node driving the arm from a policy served by `vla serve` in another process (backend remote),
over real localhost websockets and real Fast DDS: commands flow; the server killed mid-episode -> the node
holds the arm and reports ERROR; the server back on the same port -> commands resume and the error clears."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (extra `ros`) are not installed")
pytest.importorskip("openpi_client", reason="openpi-client is not installed")

from test_ros2_control import NODE, launch_file, simulated_robot, trajectories

from ros_nodes.launcher import GraphProcesses, isolated_ros_env
from ros_nodes.probe import Probe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
START_S = 90.0  # a cold start: torch import, model load, warm-up decisions


def diagnosis(probe: Probe, since: float, want, timeout: float) -> tuple[int, str]:
    """The first (level, message) of the node's diagnostics since `since` for which want(level, message)."""
    def find():
        for msg in probe.received("/diagnostics", since):
            for s in msg.status:
                level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                if s.name.startswith("vla_policy") and want(level, s.message):
                    return level, s.message
        return None

    return probe.wait_for(find, timeout, "a matching diagnostics status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vla serve` as its own process."""

    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    def start(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, "-m", "vla_app.cli", "serve", "--policy",
                                      str(ROOT / "models" / "policy"), "--port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:  # it prints its URL once the socket listens
            line = self.proc.stdout.readline()
            if "serving" in line:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"vla serve exited: {self.proc.stdout.read()}")
        raise TimeoutError("vla serve did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def robot():
    with simulated_robot("push_to", 10002, "remote_policy_robot") as r:
        yield r


def test_the_node_holds_while_the_server_is_gone_and_resumes_when_it_returns(robot, tmp_path) -> None:
    server = Server(free_port()).start()
    graph = GraphProcesses(launch_file(tmp_path, backend="remote", policy=f"ws://127.0.0.1:{server.port}",
                                       steering="mean", n=4, urdf="", output_mode="chunk",
                                       gripper_interface="forward_command", image_transport="compressed"),
                           env=isolated_ros_env(), log_dir=tmp_path / "logs").start()
    probe = robot.probe
    try:
        alive = lambda: graph.poll()["vla_policy"] is None  # noqa: E731
        probe.wait_for(lambda: "vla_policy" in probe.node.get_node_names(), START_S, "the policy node", alive=alive)
        probe.wait_matched(robot.description_pub)
        probe.bring_up(NODE)
        t = time.monotonic()
        probe.wait_for(lambda: len([x for x in trajectories(probe, t) if len(x[0]) > 1]) >= 2, 40.0,
                       "chunks planned by the served policy")
        down = time.monotonic()
        server.kill()
        level, message = diagnosis(probe, down, lambda lv, m: "policy server unavailable" in m, 15.0)
        assert level == 2 and f"127.0.0.1:{server.port}" in message  # ERROR, naming the server
        sent = trajectories(probe, down)
        assert sent, f"no hold when the server went away:\n{graph.log('vla_policy')[-2500:]}"
        _, q, _ = sent[-1]  # the hold: a braking trajectory that ends at rest
        assert len(q) == 1 or np.allclose(q[-1], q[-2], atol=1e-9)
        quiet = time.monotonic() + 1.0
        time.sleep(2.0)
        assert not trajectories(probe, quiet), "commands while the server was gone"
        server = Server(server.port).start()
        back = time.monotonic()
        probe.wait_for(lambda: len([x for x in trajectories(probe, back) if len(x[0]) > 1]) >= 2, 40.0,
                       "chunks again once the server is back")
        diagnosis(probe, time.monotonic(), lambda lv, m: lv == 0, 10.0)  # the error clears
        assert alive(), graph.log("vla_policy")[-3000:]
    finally:
        graph.stop()
        server.kill()
