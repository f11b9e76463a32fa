"""Run a ROS 2 YAML launch file's nodes as real processes: `ros2 launch` for machines without `launch_ros`.

    python -m ros_nodes.launcher launch/sim_bringup.launch.yaml task:=pick_lift seed:=3

reads the launch file the way `ros2 launch` does (`ros_nodes.launch_yaml`), starts every node it
launches as its own process (`python -m ros_nodes.<exec> --ros-args ...`, with the parameter files,
parameter values and remaps `launch_ros` would pass) and runs until Ctrl-C, then stops them the way
`ros2 launch` does: SIGINT, then SIGTERM, then SIGKILL.
The integration tests use `GraphProcesses` to bring the nodes up over real DDS, with
`isolated_ros_env` keeping concurrent test runs on their own domain.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from ros_nodes.launch_yaml import NodeSpec, load_launch

DOMAIN_RANGE = (60, 100)  # default test domains; Fast DDS ports of domains above ~101 collide with ephemeral ports
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def isolated_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """`os.environ` with its own `ROS_DOMAIN_ID` and discovery kept on this machine.

    Several people run ROS tests on one machine at once; a domain of one's own (default: derived
    from the pid, within 60..99) and localhost-only discovery keep their graphs apart.
    """
    if domain_id is None:
        domain_id = DOMAIN_RANGE[0] + os.getpid() % (DOMAIN_RANGE[1] - DOMAIN_RANGE[0])
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..232, got {domain_id}")
    return {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["task:=pick_lift", "seed:=3"]` -> `{"task": "pick_lift", "seed": "3"}` (the `ros2 launch` form)."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch argument {item!r} must be written name:=value")
        values[name] = value
    return values


class GraphProcesses:
    """A launch file's nodes as running processes; a context manager that always stops what it started.

    Each node runs in its own process group (so a Ctrl-C in the terminal reaches the launcher, which
    stops the nodes in order, rather than every node at once) with stdout and stderr in
    `<log_dir>/<node>.log` (or inherited when `log_dir` is None). The package root is put on
    `PYTHONPATH`, so `ros_nodes` imports from any working directory.
    """

    def __init__(self, launch_file: str | Path, values: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None, log_dir: str | Path | None = None,
                 python: str = sys.executable):
        self.env = dict(os.environ if env is None else env)
        # every error before any process starts; `$(env X)` reads the environment the nodes get
        self.launch = load_launch(launch_file, values or {}, environ=self.env)
        self.specs: list[NodeSpec] = list(self.launch.nodes)
        root = str(Path(__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH", "")) if p)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.python = python
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self) -> GraphProcesses:
        """Start every node (in launch order); a node that fails to start stops the ones already running."""
        if self.processes:
            raise RuntimeError("the nodes are already started")
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in self.specs:
                out = None
                if self.log_dir is not None:
                    out = open(self.log_dir / f"{spec.name}.log", "wb")  # noqa: SIM115 (closed in stop)
                    self._logs.append(out)
                self.processes[spec.name] = subprocess.Popen(
                    spec.argv(self.python), env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> dict[str, int]:
        """Node name -> process id."""
        return {name: p.pid for name, p in self.processes.items()}

    def poll(self) -> dict[str, int | None]:
        """Node name -> exit code, or None while it runs."""
        return {name: p.poll() for name, p in self.processes.items()}

    def log(self, name: str) -> str:
        """What node `name` has written so far ("" without a log folder)."""
        path = None if self.log_dir is None else self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path is not None and path.is_file() else ""

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """Stop every node: SIGINT, then SIGTERM, then SIGKILL, each given `timeout` s; node -> exit code.

        Signals go to each node's process group, so anything a node spawned stops with it. Nodes stop
        in reverse start order (the policy before the robot it commands).
        """
        codes = {}
        for name, proc in reversed(list(self.processes.items())):
            for sig in STOP_SIGNALS:
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    continue
            codes[name] = proc.wait()
        for out in self._logs:
            out.close()
        self._logs.clear()
        return dict(reversed(list(codes.items())))

    def __enter__(self) -> GraphProcesses:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the process that started it dies, so a launcher
    or test that is killed outright (SIGKILL) leaves no node running in its own process group."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    """Run a launch file until Ctrl-C (or until a node exits); the exit status is 0 when every node exited 0."""
    parser = argparse.ArgumentParser(prog="python -m ros_nodes.launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("launch_file", type=Path, help="YAML launch file, e.g. launch/sim_bringup.launch.yaml")
    parser.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--show", action="store_true", help="print the arguments and node command lines, run nothing")
    parser.add_argument("--log-dir", type=Path, default=None, help="write each node's output to <dir>/<node>.log")
    parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds per stop signal")
    args = parser.parse_intermixed_args(argv)
    try:
        values = parse_assignments(args.arguments)
        graph = GraphProcesses(args.launch_file, values, log_dir=args.log_dir)
    except ValueError as err:
        parser.error(str(err))
    if args.show:
        for name, arg in graph.launch.arguments.items():
            choices = f" (one of {', '.join(arg.choices)})" if arg.choices else ""
            text = graph.launch.values.get(name)
            shown = "''" if text == "" else text if text is not None else "(unset: its entity did not run)"
            print(f"{name}:={shown}  # {arg.description}{choices}")
        for spec in graph.specs:
            print(shlex.join(spec.argv()))
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <launcher>` stops the nodes too, like Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)  # even where it started ignored (a background job of a script)
    with graph:
        print(f"[launcher] started {graph.pids}; Ctrl-C stops", flush=True)
        try:
            while True:
                exited = {n: c for n, c in graph.poll().items() if c is not None}
                if exited:
                    print(f"[launcher] node(s) exited: {exited}; stopping the rest", flush=True)
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("[launcher] Ctrl-C: stopping", flush=True)
        codes = graph.stop(args.stop_timeout)
    print(f"[launcher] exit codes {codes}", flush=True)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
