"""package.xml declares exactly the ROS packages the code imports, under rosdep keys that exist: what
`rosdep install --from-paths` resolves on a workstation. Imports are read with ast (lazy ones included)."""

from __future__ import annotations

import ast
import importlib.metadata
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("ros_nodes", "vla_app", "vla_runtime", "verifiers", "sim", "launch")  # what the installed nodes run
# `ros2 launch` reads a shipped YAML launch file through launch_yaml (the YAML frontend) and starts its
# `node` entities through launch_ros: both are run dependencies as soon as such a file is shipped,
# though no Python file imports them.
LAUNCH_FILE_KEYS = {"launch_ros", "launch_yaml"}
# ROS packages that are real rosdep keys but have no wheel here (the guide's list), so the installed
# distributions cannot name them.
ROS_WITHOUT_WHEELS = {"launch", "launch_ros", "launch_testing", "launch_testing_ros", "launch_yaml", "launch_xml",
                      "rosidl_runtime_py", "control_msgs", "tf2_ros", "cv_bridge", "diagnostic_updater"}
# Python libraries the code imports that rosdep resolves (rosdistro's python.yaml keys); the rest come
# from pip (setup.py).
PYTHON_KEYS = {"numpy": "python3-numpy", "scipy": "python3-scipy", "yaml": "python3-yaml", "pytest": "python3-pytest",
               "PIL": "python3-pil"}


def imported_modules(folders: tuple[str, ...], root: Path = ROOT) -> set[str]:
    """Top-level names of every import in the .py files under `folders`, function-level ones included."""
    names = set()
    for folder in folders:
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def is_ros_package(module: str, wheels: dict[str, list[str]]) -> bool:
    return module in ROS_WITHOUT_WHEELS or any(d.startswith("ros-") for d in wheels.get(module, []))


def declared(tag: str) -> set[str]:
    return {e.text.strip() for e in ET.parse(ROOT / "package.xml").getroot().iter(tag)}


def expected_keys() -> tuple[set[str], set[str]]:
    wheels = importlib.metadata.packages_distributions()
    runtime, tests = imported_modules(RUNTIME), imported_modules(("tests",))

    def keys(modules: set[str]) -> set[str]:
        return {m for m in modules if is_ros_package(m, wheels)} | {PYTHON_KEYS[m] for m in modules & set(PYTHON_KEYS)}

    exec_keys = keys(runtime) | (LAUNCH_FILE_KEYS if list((ROOT / "launch").glob("*.launch.yaml")) else set())
    return exec_keys, keys(tests) - exec_keys


def test_package_xml_declares_exactly_the_ros_packages_the_code_imports() -> None:
    exec_keys, test_keys = expected_keys()
    assert "rclpy" in exec_keys and "lifecycle_msgs" in exec_keys  # the scan sees the nodes' imports
    assert exec_keys >= LAUNCH_FILE_KEYS  # launch/*.launch.yaml is shipped
    assert declared("exec_depend") == exec_keys, (
        f"exec_depend: missing {sorted(exec_keys - declared('exec_depend'))}, "
        f"not imported by the runtime {sorted(declared('exec_depend') - exec_keys)}")
    assert declared("test_depend") == test_keys, (
        f"test_depend: missing {sorted(test_keys - declared('test_depend'))}, "
        f"not imported by the tests {sorted(declared('test_depend') - test_keys)}")
    assert not declared("depend") and not declared("build_depend")  # ament_python builds nothing


def test_the_scan_would_catch_a_missing_or_invented_key(tmp_path) -> None:
    wheels = importlib.metadata.packages_distributions()
    assert is_ros_package("rclpy", wheels) and is_ros_package("launch_ros", wheels)
    assert not is_ros_package("rclpy_lifecycle", wheels)  # not a package, not a rosdep key
    assert not is_ros_package("torch", wheels) and not is_ros_package("launch_helpers", wheels)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "node.py").write_text("import os\ndef f():\n    from nav_msgs.msg import Odometry\n")
    assert imported_modules(("pkg",), tmp_path) == {"os", "nav_msgs"}  # a lazy import counts
