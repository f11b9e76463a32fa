"""The package as a user installs it: a wheel built from the tracked files, installed into a fresh virtual
environment outside the source tree (what `pip install .` or `colcon build` gives a robot workstation).

The fresh environment borrows the dependencies of the running one through a path line (so nothing is
downloaded), but not its editable install of this project: every import must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
IMPORT_ALL = """
import importlib, json, pkgutil, sys
names, where = [], {}
for top in ("vla_runtime", "verifiers", "sim", "ros_nodes"):
    pkg = importlib.import_module(top)
    where[top] = pkg.__file__
    names.append(top)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=top + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from vla_runtime.paths import resolve_data_path
print(json.dumps({"modules": names, "where": where, "policy": str(resolve_data_path("models/policy"))}))
"""


def _tracked_copy(dest: Path) -> Path:
    """The committed/untracked-but-not-ignored files only, so no stale `build/` or `runs/` leaks into the wheel."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    tmp = tmp_path_factory.mktemp("install")
    src = _tracked_copy(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("vla_steering-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = sysconfig.get_paths()["purelib"]
    (site / "borrowed_deps.pth").write_text(f"{deps}\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    return venv


def _run(venv: Path, args: list[str], cwd: Path) -> str:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)}
    # The ROS wheels' shared libraries, as their bootstrapper found them for the running interpreter.
    env.update({k: os.environ[k] for k in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE") if k in os.environ})
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_module_imports_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    out = json.loads(_run(installed, [str(installed / "bin" / "python"), "-c", IMPORT_ALL], tmp_path))
    assert {"vla_runtime.policy.model", "vla_runtime.backends.onnx", "verifiers.steering",
            "ros_nodes.policy_node"} <= set(out["modules"])
    for top, file in out["where"].items():
        assert str(installed) in file and str(ROOT) not in file, (top, file)
    assert out["policy"] == str(installed / "share" / "vla_steering" / "models" / "policy")


def test_installed_commands_run_from_another_directory(installed: Path, tmp_path: Path) -> None:
    assert _run(installed, ["vla", "--version"], tmp_path).strip() == "vla 0.1.0"
    listing = json.loads(_run(installed, ["vla", "sim", "tasks", "--json"], tmp_path))
    assert "stack" in listing["tasks"] and "id" in listing["variations"] and "panda" in listing["arms"]


def test_share_folder_holds_what_colcon_would_install(installed: Path) -> None:
    share = installed / "share" / "vla_steering"
    for name in ("package.xml", "config/policy_node.yaml", "config/sim_robot.yaml", "config/recorder.yaml"):
        assert (share / name).is_file(), name
    launch_files = {p.name for p in (ROOT / "launch").glob("*.launch.yaml")}
    assert launch_files >= {"sim_bringup.launch.yaml", "robot_bringup.launch.yaml"}
    assert {p.name for p in (share / "launch").iterdir()} == launch_files
    for model in ("policy", "verifier", "value"):
        for name in ("config.json", "model.safetensors", "normalization.json", "README.md"):
            assert (share / "models" / model / name).is_file(), (model, name)
    assert (installed / "share" / "ament_index" / "resource_index" / "packages" / "vla_steering").is_file()
    for node in ("policy_node", "sim_robot_node", "recorder_node"):
        assert (installed / "lib" / "vla_steering" / node).is_file() or (installed / "bin" / node).is_file(), node
