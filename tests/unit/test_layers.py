"""Imports flow one way: core `vla_runtime` <- `verifiers` (steering), `sim` <- `vla_app` <- `ros_nodes`.

Every module's imports are parsed (ast, imports inside functions included), so a lazy upward import is
caught as surely as a top-level one. A failure names the file, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "vla_runtime": set(),
    "verifiers": {"vla_runtime"},
    "sim": {"vla_runtime"},
    "vla_app": {"vla_runtime", "verifiers", "sim"},
    "ros_nodes": {"vla_runtime", "verifiers", "sim", "vla_app"},
}
SIM_MAY_USE = {"vla_runtime.types"}  # the simulator speaks the core's types, nothing else of it
ROS_ONLY = ("rclpy", "rosidl", "launch", "launch_ros", "ament_index_python")  # nothing below ros_nodes


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(path.relative_to(root).with_suffix("").parts[:-node.level])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _violations(root: Path = ROOT) -> list[str]:
    bad = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            for line, module in _imports(path, root):
                top = module.split(".")[0]
                if top in ALLOWED and top != package and top not in allowed:
                    may = sorted(allowed) or "itself"
                    bad.append(f"{rel}:{line} imports {module}: {package} may import only {may}")
                elif package == "sim" and top == "vla_runtime" and module not in SIM_MAY_USE:
                    bad.append(f"{rel}:{line} imports {module}: sim may use only {sorted(SIM_MAY_USE)} of the core")
                elif package != "ros_nodes" and top in ROS_ONLY:
                    bad.append(f"{rel}:{line} imports {module}: only ros_nodes may import ROS")
    return bad


def test_imports_flow_one_way() -> None:
    bad = _violations()
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_checker_catches_upward_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    (tmp_path / "vla_runtime" / "policy").mkdir(parents=True)
    (tmp_path / "vla_runtime" / "policy" / "m.py").write_text(
        "import numpy\n\n\ndef f():\n    from vla_app.cli import main\n    return main\n")
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "env.py").write_text("from vla_runtime.types import Observation\nimport vla_runtime.io\n")
    (tmp_path / "verifiers").mkdir()
    (tmp_path / "verifiers" / "x.py").write_text("from .y import z\nfrom sim import env\nimport rclpy\n")
    assert _violations(tmp_path) == [
        "vla_runtime/policy/m.py:5 imports vla_app.cli: vla_runtime may import only itself",
        "verifiers/x.py:2 imports sim: verifiers may import only ['vla_runtime']",
        "verifiers/x.py:3 imports rclpy: only ros_nodes may import ROS",
        "sim/env.py:2 imports vla_runtime.io: sim may use only ['vla_runtime.types'] of the core",
    ]
