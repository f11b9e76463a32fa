"""The node graph files (launch/*.graph.yaml), their resolution, and the launch files that read them.

`launch_ros` is not installable here, so the launch files are checked two ways: parsed with `ast`
(they name their graph file and declare arguments from it) and executed against stand-in `launch` /
`launch_ros` modules that record what the real ones would be asked to build.
"""

from __future__ import annotations

import ast
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

from ros_nodes import graph as graph_module
from ros_nodes.graph import NodeSpec, load_graph, param_text, parse_scalar

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "launch" / "sim_bringup.graph.yaml"
ROBOT = ROOT / "launch" / "robot_bringup.graph.yaml"
LAUNCH_FILES = {ROOT / "launch" / "sim_bringup.launch.py": SIM, ROOT / "launch" / "robot_bringup.launch.py": ROBOT}
EXECUTABLES = ("sim_robot_node", "policy_node", "recorder_node")


@pytest.fixture
def node_modules(tmp_path, monkeypatch):
    """Stand-in node modules, so graph resolution is tested apart from the nodes themselves."""
    folder = tmp_path / "ros_nodes"
    folder.mkdir()
    for name in EXECUTABLES:
        (folder / f"{name}.py").write_text("")
    monkeypatch.setattr(graph_module, "NODES_DIR", folder)
    return folder


def by_name(specs: list[NodeSpec]) -> dict[str, NodeSpec]:
    return {s.name: s for s in specs}


def test_sim_graph_defaults(node_modules):
    g = load_graph(SIM)
    assert g.share == ROOT
    nodes = by_name(g.resolve({}))
    assert list(nodes) == ["sim_robot", "vla_policy"]  # no recorder unless record:=true
    sim, policy = nodes["sim_robot"], nodes["vla_policy"]
    assert sim.executable == "sim_robot_node" and policy.executable == "policy_node"
    assert sim.parameter_files == (ROOT / "config" / "sim_robot.yaml",)
    assert policy.parameter_files == (ROOT / "config" / "policy_node.yaml",)
    assert sim.overrides == {"task": "pick_lift", "variation": "id", "seed": 0}
    assert policy.overrides == {
        "policy": f"{ROOT}/models/policy", "verifier": f"{ROOT}/models/verifier", "value": f"{ROOT}/models/value",
        "backend": "torch", "steering": "robomonkey", "n": 16, "m": 16, "autostart": True, "start_enabled": True}
    assert policy.remappings == {"instruction": "sim_robot/instruction"}  # the sim's episode instruction
    for name in ("policy", "verifier", "value"):
        assert Path(policy.overrides[name]).is_dir(), "the default models_dir holds the bundled checkpoints"


def test_sim_graph_arguments_are_typed(node_modules):
    nodes = by_name(load_graph(SIM).resolve({
        "seed": "3", "n": "8", "m": "4", "enable": "false", "task": "stack", "variation": "ood_color",
        "steering": "none", "backend": "onnx", "models_dir": "/opt/models", "record": "true",
        "record_path": "/tmp/run.mcap", "instruction_topic": "instruction"}))
    assert list(nodes) == ["sim_robot", "vla_policy", "recorder"]
    assert nodes["sim_robot"].overrides == {"task": "stack", "variation": "ood_color", "seed": 3}
    policy = nodes["vla_policy"].overrides
    assert (policy["n"], policy["m"], policy["start_enabled"]) == (8, 4, False)
    assert (policy["steering"], policy["backend"], policy["policy"]) == ("none", "onnx", "/opt/models/policy")
    assert nodes["vla_policy"].remappings == {"instruction": "instruction"}
    assert nodes["recorder"].overrides == {"path": "/tmp/run.mcap"}
    assert nodes["recorder"].parameter_files == (ROOT / "config" / "recorder.yaml",)


def test_robot_graph_is_a_remapped_dry_run(node_modules):
    g = load_graph(ROBOT)
    nodes = by_name(g.resolve({}))
    assert list(nodes) == ["vla_policy"]
    policy = nodes["vla_policy"]
    assert policy.overrides["autostart"] is False and policy.overrides["start_enabled"] is False
    assert policy.overrides["urdf"] == ""  # an empty argument stays text, not YAML null
    assert policy.remappings["camera/image_raw"] == "/camera/color/image_raw"
    assert policy.remappings["joint_states"] == "/joint_states"
    assert policy.remappings["joint_trajectory"] == "/panda_arm_controller/joint_trajectory"
    assert set(policy.remappings) == {"camera/image_raw", "camera/depth", "camera/camera_info", "joint_states",
                                      "joint_trajectory", "gripper_command"}
    nodes = by_name(g.resolve({"record": "true", "trajectory_topic": "/arm/cmd", "urdf": "/robots/arm.urdf"}))
    assert list(nodes) == ["vla_policy", "recorder"]
    assert nodes["vla_policy"].remappings["joint_trajectory"] == "/arm/cmd"
    assert nodes["recorder"].remappings["joint_trajectory"] == "/arm/cmd"
    assert nodes["vla_policy"].overrides["urdf"] == "/robots/arm.urdf"


def test_share_is_the_folder_holding_launch_and_config(node_modules, tmp_path):
    """Installed, the graph sits in share/vla_steering/launch and ${share} follows it there."""
    share = tmp_path / "install" / "share" / "vla_steering"
    shutil.copytree(ROOT / "launch", share / "launch")
    shutil.copytree(ROOT / "config", share / "config")
    policy = by_name(load_graph(share / "launch" / SIM.name).resolve({}))["vla_policy"]
    assert policy.parameter_files == (share / "config" / "policy_node.yaml",)
    assert policy.overrides["policy"] == f"{share}/models/policy"


def test_argv_runs_the_module_with_ros_args(tmp_path):
    params = tmp_path / "p.yaml"
    spec = NodeSpec(name="vla_policy", executable="policy_node", namespace="arm", parameter_files=(params,),
                    overrides={"seed": 3, "urdf": "", "steering": "none", "enabled": True, "size": [64, 64],
                               "word": "true"},
                    remappings={"camera/image_raw": "/cam/image"})
    assert spec.argv("py") == [
        "py", "-m", "ros_nodes.policy_node", "--ros-args", "-r", "__node:=vla_policy", "-r", "__ns:=/arm",
        "--params-file", str(params),
        "-p", "seed:=3", "-p", "urdf:=''", "-p", "steering:=none", "-p", "enabled:=true", "-p", "size:=[64, 64]",
        "-p", "word:='true'",
        "-r", "camera/image_raw:=/cam/image"]
    assert "__ns:=" not in " ".join(NodeSpec(name="a", executable="b").argv("py"))


@pytest.mark.parametrize("value", ["", "true", "3", "0.5", "a b", "models/policy", "x: y", 3, 0.5, True, False,
                                   [64, 64], [0.1, 0.2], ["a", "true"]])
def test_param_text_round_trips_type_and_value(value):
    text = param_text(value)
    assert "\n" not in text
    assert yaml.safe_load(text) == value and type(yaml.safe_load(text)) is type(value)


def test_parse_scalar():
    assert parse_scalar("3") == 3 and parse_scalar("true") is True and parse_scalar("1.5") == 1.5
    assert parse_scalar("") == "" and parse_scalar("pick_lift") == "pick_lift" and parse_scalar("~") == "~"


def write_graph(folder: Path, text: str) -> Path:
    (folder / "launch").mkdir(exist_ok=True)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "a.yaml").write_text("/**:\n  ros__parameters: {}\n")
    path = folder / "launch" / "t.graph.yaml"
    path.write_text(text)
    return path


GOOD = """
arguments:
  mode: {default: fast, choices: [fast, slow]}
  flag: {default: "false"}
nodes:
  - name: robot
    executable: sim_robot_node
    parameters: [config/a.yaml]
    overrides: {mode: "${mode}", label: "run-${mode}"}
    condition: "${flag}"
"""


def test_errors_name_what_is_wrong(node_modules, tmp_path):
    g = load_graph(write_graph(tmp_path, GOOD))
    assert g.resolve({"flag": "true"})[0].overrides == {"mode": "fast", "label": "run-fast"}
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['speed'\]"):
        g.resolve({"speed": "1"})
    with pytest.raises(ValueError, match="'medium' is not one of"):
        g.resolve({"mode": "medium"})
    with pytest.raises(ValueError, match="condition must be true or false, got 'maybe'"):
        g.resolve({"flag": "maybe"})
    assert g.resolve({}) == []

    missing = load_graph(write_graph(tmp_path, GOOD.replace("config/a.yaml", "config/missing.yaml")))
    with pytest.raises(ValueError, match="parameter file .*missing.yaml does not exist"):
        missing.resolve({"flag": "true"})
    no_module = load_graph(write_graph(tmp_path, GOOD.replace("sim_robot_node", "teleport_node")))
    with pytest.raises(ValueError, match="executable 'teleport_node' has no module"):
        no_module.resolve({"flag": "true"})
    with pytest.raises(ValueError, match=r"unknown substitution\(s\) \['\$\{speed\}'\]"):
        load_graph(write_graph(tmp_path, GOOD.replace("run-${mode}", "run-${speed}")))
    with pytest.raises(ValueError, match="default 'medium' is not one of"):
        load_graph(write_graph(tmp_path, GOOD.replace("default: fast", "default: medium")))
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\) \['node'\]"):
        load_graph(write_graph(tmp_path, GOOD.replace("nodes:", "node:")))
    with pytest.raises(ValueError, match="needs name and executable"):
        load_graph(write_graph(tmp_path, GOOD.replace("    executable: sim_robot_node\n", "")))
    with pytest.raises(ValueError, match="appear more than once"):
        load_graph(write_graph(tmp_path, GOOD + GOOD.split("nodes:\n")[1]))
    with pytest.raises(ValueError, match="does not exist"):
        load_graph(tmp_path / "nope.graph.yaml")


def test_graph_executables_have_modules_and_console_scripts():
    """What `ros2 launch` runs (the console script) and what the launcher runs (the module) agree."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    nodes = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in n.targets))
    for path in (SIM, ROBOT):
        for node in load_graph(path).nodes:
            assert node.executable in nodes, f"{path.name}: {node.executable} is not a console script in setup.py"
            assert (ROOT / "ros_nodes" / f"{node.executable}.py").is_file(), f"ros_nodes/{node.executable}.py"


@pytest.mark.parametrize("launch_file", sorted(LAUNCH_FILES), ids=lambda p: p.name)
def test_launch_file_reads_its_graph(launch_file):
    """Cheap guard while `launch` cannot be imported: the file parses, names its graph and declares from it."""
    tree = ast.parse(launch_file.read_text(), filename=str(launch_file))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert LAUNCH_FILES[launch_file].name in strings
    assert "graph_launch_description" in names
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    imported = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"pathlib", "launch", "launch_ros", "ros_nodes"}


class _Recorded:
    """A stand-in launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context: dict) -> str:
        return context[self.args[0]]


@pytest.fixture
def fake_launch(monkeypatch):
    """`launch` and `launch_ros` stand-ins that record the actions a launch file builds."""
    modules = {
        "launch": {}, "launch.actions": {"DeclareLaunchArgument": _Recorded, "OpaqueFunction": _Recorded},
        "launch.launch_description": {"LaunchDescription": _Recorded},
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {}, "launch_ros.actions": {"Node": _Recorded}}
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("launch_file", sorted(LAUNCH_FILES), ids=lambda p: p.name)
def test_launch_file_builds_the_resolved_graph(launch_file, fake_launch, node_modules):
    namespace = {"__file__": str(launch_file), "__name__": "launch_file_under_test"}
    exec(compile(launch_file.read_text(), str(launch_file), "exec"), namespace)
    description = namespace["generate_launch_description"]()
    *declared, opaque = description.args[0]
    graph = load_graph(LAUNCH_FILES[launch_file])
    assert [d.args[0] for d in declared] == list(graph.arguments)
    for d in declared:
        arg = graph.arguments[d.args[0]]
        assert d.kwargs["default_value"] == arg.default and d.kwargs["description"] == arg.description
        assert d.kwargs["choices"] == (list(arg.choices) if arg.choices else None)

    values = {name: arg.default for name, arg in graph.arguments.items()} | {"record": "true"}
    nodes = opaque.kwargs["function"](values, *opaque.kwargs["args"])
    specs = graph.resolve(values)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in specs]
    for node, spec in zip(nodes, specs, strict=True):
        assert node.kwargs["package"] == "vla_steering" and node.kwargs["executable"] == spec.executable
        assert node.kwargs["parameters"] == [*map(str, spec.parameter_files), spec.overrides]
        assert node.kwargs["remappings"] == list(spec.remappings.items())
