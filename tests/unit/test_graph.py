"""The ROS 2 YAML launch files (launch/*.launch.yaml) and `ros_nodes.launch_yaml`, which reads them the
way `ros2 launch` (launch, launch_yaml, launch_ros) does: the shipped files resolve to the expected
nodes, and each rule of the format (substitutions, typed values, conditions, choices, let, scoped
groups, includes, find-pkg-share, env) and each error is checked on small launch files of its own.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml

from ros_nodes import launch_yaml
from ros_nodes.launch_yaml import NodeSpec, load_launch, param_text, parse_scalar

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "launch" / "sim_bringup.launch.yaml"
ROBOT = ROOT / "launch" / "robot_bringup.launch.yaml"
EXECUTABLES = ("sim_robot_node", "policy_node", "recorder_node")


@pytest.fixture
def node_modules(tmp_path, monkeypatch):
    """Stand-in node modules, so launch files are resolved apart from the nodes themselves."""
    folder = tmp_path / "ros_nodes"
    folder.mkdir()
    for name in EXECUTABLES:
        (folder / f"{name}.py").write_text("")
    monkeypatch.setattr(launch_yaml, "NODES_DIR", folder)
    return folder


def by_name(specs) -> dict[str, NodeSpec]:
    return {s.name: s for s in specs}


# ---- the shipped launch files ---------------------------------------------------------------------

def test_sim_launch_defaults(node_modules):
    launch = load_launch(SIM)
    nodes = by_name(launch.nodes)
    assert list(nodes) == ["sim_robot", "vla_policy"]  # no recorder unless record:=true
    sim, policy = nodes["sim_robot"], nodes["vla_policy"]
    assert sim.executable == "sim_robot_node" and policy.executable == "policy_node"
    assert sim.parameter_files == (ROOT / "config" / "sim_robot.yaml",)
    assert policy.parameter_files == (ROOT / "config" / "policy_node.yaml",)
    assert sim.overrides == {"task": "pick_lift", "variation": "id", "seed": 0}
    assert policy.overrides == {
        "policy": f"{ROOT}/models/policy", "verifier": f"{ROOT}/models/verifier", "value": f"{ROOT}/models/value",
        "backend": "torch", "steering": "robomonkey", "n": 16, "m": 16, "steps": 0, "output_mode": "stream",
        "plan_ahead": True,
        "blend_steps": 2, "max_joint_acceleration": 30.0, "blend_in_s": 0.0, "autostart": True,
        "start_enabled": True}
    assert policy.remappings == {"instruction": "sim_robot/instruction"}  # the sim's episode instruction
    assert launch.values["models_dir"] == str(ROOT / "models") and launch.values["seed"] == "0"
    for name in ("policy", "verifier", "value"):
        assert Path(policy.overrides[name]).is_dir(), "the default models_dir holds the bundled checkpoints"


def test_sim_launch_arguments_are_typed(node_modules):
    nodes = by_name(load_launch(SIM, {
        "seed": "3", "n": "8", "m": "4", "enable": "false", "task": "stack", "variation": "ood_color",
        "steering": "none", "backend": "onnx", "models_dir": "/opt/models", "record": "true",
        "record_path": "/tmp/run.mcap", "instruction_topic": "instruction"}).nodes)
    assert list(nodes) == ["sim_robot", "vla_policy", "recorder"]
    assert nodes["sim_robot"].overrides == {"task": "stack", "variation": "ood_color", "seed": 3}
    policy = nodes["vla_policy"].overrides
    assert (policy["n"], policy["m"], policy["start_enabled"]) == (8, 4, False)
    assert (policy["steering"], policy["backend"], policy["policy"]) == ("none", "onnx", "/opt/models/policy")
    assert nodes["vla_policy"].remappings == {"instruction": "instruction"}
    assert nodes["recorder"].overrides == {"path": "/tmp/run.mcap"}
    assert nodes["recorder"].parameter_files == (ROOT / "config" / "recorder.yaml",)


def test_robot_launch_is_a_remapped_dry_run(node_modules):
    nodes = by_name(load_launch(ROBOT).nodes)
    assert list(nodes) == ["vla_policy"]
    policy = nodes["vla_policy"]
    assert policy.overrides["autostart"] is False and policy.overrides["start_enabled"] is False
    assert policy.overrides["urdf"] == ""  # an empty argument stays text, as launch's coercion keeps it
    assert policy.overrides["output_mode"] == "chunk" and policy.overrides["gripper_interface"] == "position"
    assert policy.overrides["image_transport"] == "raw"
    assert policy.remappings == {
        "camera/image_raw": "/camera/color/image_raw",
        "camera/image_raw/compressed": "/camera/color/image_raw/compressed",
        "camera/depth": "/camera/aligned_depth_to_color/image_raw",
        "camera/camera_info": "/camera/color/camera_info", "joint_states": "/joint_states",
        "joint_trajectory": "/panda_arm_controller/joint_trajectory", "gripper_command": "/gripper_command",
        "gripper_controller/commands": "/gripper_controller/commands"}
    nodes = by_name(load_launch(ROBOT, {"record": "true", "trajectory_topic": "/arm/cmd",
                                        "urdf": "/robots/arm.urdf"}).nodes)
    assert list(nodes) == ["vla_policy", "recorder"]
    assert nodes["vla_policy"].remappings["joint_trajectory"] == "/arm/cmd"
    assert nodes["recorder"].remappings["joint_trajectory"] == "/arm/cmd"
    assert nodes["vla_policy"].overrides["urdf"] == "/robots/arm.urdf"


def test_shipped_arguments_descriptions_and_choices():
    sim, robot = load_launch(SIM).arguments, load_launch(ROBOT).arguments
    assert list(sim) == ["models_dir", "policy", "task", "variation", "seed", "backend", "steering", "n", "m", "steps",
                         "output_mode",
                         "plan_ahead", "blend_steps", "max_joint_acceleration", "blend_in_s", "enable",
                         "instruction_topic", "record", "record_path"]
    assert list(robot) == ["image_topic", "image_transport", "depth_topic", "camera_info_topic", "joint_states_topic",
                           "trajectory_topic", "output_mode", "gripper_interface", "gripper_topic",
                           "gripper_forward_topic", "gripper_action", "urdf", "models_dir", "policy", "backend",
                           "steering",
                           "n", "m", "record", "record_path"]
    assert robot["urdf"].description == "the arm's URDF file (empty: the node reads /robot_description)"
    for args in (sim, robot):
        assert args["models_dir"].default == "$(find-pkg-share vla_steering)/models"
        assert args["backend"].choices == ("torch", "onnx", "tensorrt", "remote")
        assert args["steering"].choices == ("none", "mean", "robomonkey", "vgps", "both")
        assert args["policy"].default == "$(var models_dir)/policy"
        assert args["record"].choices == ("true", "false") and args["record"].default == "false"
        assert all(a.description for a in args.values())
    with pytest.raises(ValueError, match=r"robot_bringup.launch.yaml: arg 'record': 'TRUE' is not one of"):
        load_launch(ROBOT, {"record": "TRUE"})  # choices compare exact text
    with pytest.raises(ValueError, match=r"arg 'backend': 'jax' is not one of \['torch', 'onnx', 'tensorrt', 're"):
        load_launch(SIM, {"backend": "jax"})
    served = {n.name: n for n in load_launch(ROBOT, {"backend": "remote", "policy": "ws://gpu:8000"}).nodes}
    assert served["vla_policy"].overrides["policy"] == "ws://gpu:8000"  # a served policy (backend remote)


def test_shipped_files_are_in_launch_yaml_form():
    """What launch_yaml itself requires, checked on the raw YAML: one root `launch:`, each entity a
    one-key mapping, every attribute but `param value` a string (launch_yaml rejects `default: 0`)."""
    for path in (SIM, ROBOT):
        raw = yaml.safe_load(path.read_text())
        assert list(raw) == ["launch"]
        for entity in raw["launch"]:
            ((tag, attrs),) = entity.items()
            assert tag in ("arg", "node")
            for key, value in attrs.items():
                if key not in ("param", "remap", "choice"):
                    assert isinstance(value, str), f"{path.name}: {tag} {key}={value!r}"
            if tag == "node":
                assert attrs["pkg"] == "vla_steering" and attrs["param"][0]["from"].startswith(
                    "$(find-pkg-share vla_steering)/config/")


def test_share_is_the_folder_holding_launch_and_config(node_modules, tmp_path):
    """Installed, the file sits in share/vla_steering/launch and $(find-pkg-share vla_steering) follows it."""
    share = tmp_path / "install" / "share" / "vla_steering"
    shutil.copytree(ROOT / "launch", share / "launch")
    shutil.copytree(ROOT / "config", share / "config")
    policy = by_name(load_launch(share / "launch" / SIM.name).nodes)["vla_policy"]
    assert policy.parameter_files == (share / "config" / "policy_node.yaml",)
    assert policy.overrides["policy"] == f"{share}/models/policy"


def test_launch_executables_have_modules_and_console_scripts():
    """What `ros2 launch` runs (the console script) and what the launcher runs (the module) agree."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    nodes = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in n.targets))
    for path in (SIM, ROBOT):
        for node in load_launch(path, {"record": "true"}).nodes:
            assert node.executable in nodes, f"{path.name}: {node.executable} is not a console script in setup.py"
            assert (ROOT / "ros_nodes" / f"{node.executable}.py").is_file(), f"ros_nodes/{node.executable}.py"


# ---- NodeSpec and values --------------------------------------------------------------------------

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


# ---- the format's rules, on small launch files ----------------------------------------------------

def write(folder: Path, text: str, name: str = "t.launch.yaml") -> Path:
    """A launch file in <folder>/launch (so <folder> is its share root) with <folder>/config/a.yaml."""
    (folder / "launch").mkdir(exist_ok=True)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "a.yaml").write_text("/**:\n  ros__parameters: {}\n")
    path = folder / "launch" / name
    path.write_text(text)
    return path


def node(params: str = "", extra: str = "", name: str = "robot") -> str:
    """A node entity (indented for the top-level list) with the config file and `params` entries."""
    return f"""
  - node:
      pkg: vla_steering
      exec: sim_robot_node
      name: {name}
      output: screen{extra}
      param:
        - {{from: "$(find-pkg-share vla_steering)/config/a.yaml"}}{params}
"""


def one(path: Path, values: dict | None = None, **kwargs) -> NodeSpec:
    (spec,) = load_launch(path, values, **kwargs).nodes
    return spec


def test_param_values_are_typed_like_launch_ros(node_modules, tmp_path):
    path = write(tmp_path, """
launch:
  - arg: {name: n, default: "16"}
  - arg: {name: flag, default: "True"}
  - arg: {name: empty, default: ""}
  - arg: {name: dir, default: "/models"}
""" + node("""
        - {name: literal_int, value: 3}
        - {name: literal_bool, value: false}
        - {name: literal_list, value: [32, 32]}
        - {name: plain_text, value: "16"}
        - {name: from_arg, value: "$(var n)"}
        - {name: from_bool_arg, value: "$(var flag)"}
        - {name: embedded, value: "$(var dir)/policy"}
        - {name: numeric_text, value: "$(var n)5"}
        - {name: empty, value: "$(var empty)"}
        - {name: subst_list, value: ["$(var n)", "$(var n)"]}"""))
    assert one(path).overrides == {
        "literal_int": 3, "literal_bool": False, "literal_list": [32, 32],
        "plain_text": "16",  # no substitution: launch keeps the string as written
        "from_arg": 16, "from_bool_arg": True,  # substitutions are YAML-parsed after evaluation
        "embedded": "/models/policy", "numeric_text": 165, "empty": "", "subst_list": [16, 16]}
    assert one(path, {"n": "0.5", "flag": "off"}).overrides["from_arg"] == 0.5
    for bad, why in [("a: b", "reads as dict"), ("~", "reads as NoneType"), ("[1, a]", "reads as list"),
                     ("[1", "is not a YAML value")]:
        with pytest.raises(ValueError, match=rf"t.launch.yaml: node 'robot' param 'from_arg': .* {why}"):
            load_launch(path, {"n": bad})


def test_conditions_take_true_false_1_0_in_any_case(node_modules, tmp_path):
    path = write(tmp_path, """
launch:
  - arg: {name: run, default: "true"}
""" + node(extra='\n      if: "$(var run)"', name="when") + node(extra='\n      unless: "$(var run)"', name="unless"))
    for text, running in [("true", "when"), ("TRUE", "when"), (" 1 ", "when"), ("False", "unless"),
                          ("0", "unless")]:
        assert [n.name for n in load_launch(path, {"run": text}).nodes] == [running]
    for text in ("yes", "", "2"):
        with pytest.raises(ValueError, match=r"node 'when': if '.*' must be true, false, 1 or 0"):
            load_launch(path, {"run": text})
    both = write(tmp_path, "launch:" + node(extra='\n      if: "1"\n      unless: "0"'), "both.launch.yaml")
    with pytest.raises(ValueError, match="both.launch.yaml: node 'robot': 'if' and 'unless' cannot be used together"):
        load_launch(both)


def test_arguments_defaults_choices_and_required(node_modules, tmp_path):
    path = write(tmp_path, """
launch:
  - arg: {name: mode, default: fast, choice: [{value: fast}, {value: slow}]}
  - arg: {name: label, default: "run-$(var mode)", description: "a default may use earlier arguments"}
  - arg: {name: seed}
""" + node("""
        - {name: label, value: "$(var label)"}
        - {name: seed, value: "$(var seed)"}"""))
    launch = load_launch(path, {"seed": "7"})
    assert launch.nodes[0].overrides == {"label": "run-fast", "seed": 7}
    assert launch.values == {"mode": "fast", "label": "run-fast", "seed": "7"}
    assert launch.arguments["label"].description == "a default may use earlier arguments"
    assert launch.arguments["mode"].choices == ("fast", "slow") and launch.arguments["seed"].default is None
    assert one(path, {"seed": "1", "mode": "slow"}).overrides["label"] == "run-slow"
    with pytest.raises(ValueError, match=r"t.launch.yaml: arg 'mode': 'medium' is not one of \['fast', 'slow'\]"):
        load_launch(path, {"seed": "1", "mode": "medium"})
    with pytest.raises(ValueError, match="t.launch.yaml: arg 'seed': launch argument 'seed' has no default"):
        load_launch(path)
    with pytest.raises(ValueError, match=r"t.launch.yaml: unknown launch argument\(s\) \['speed'\]; arguments are "
                                         r"\['mode', 'label', 'seed'\]"):
        load_launch(path, {"seed": "1", "speed": "2"})
    bad_default = write(tmp_path, path.read_text().replace("default: fast", "default: medium"), "d.launch.yaml")
    with pytest.raises(ValueError, match="d.launch.yaml: arg 'mode': 'medium' is not one of"):
        load_launch(bad_default, {"seed": "1"})


def test_let_is_seen_by_later_entities_only(node_modules, tmp_path):
    path = write(tmp_path, """
launch:
  - arg: {name: base, default: /data}
  - let: {name: file, value: "$(var base)/ep.mcap"}
""" + node("""
        - {name: path, value: "$(var file)"}"""))
    assert one(path, {"base": "/runs"}).overrides == {"path": "/runs/ep.mcap"}
    with pytest.raises(ValueError, match=r"unknown launch argument\(s\) \['file'\]"):
        load_launch(path, {"file": "x"})  # a let is not an argument
    early = write(tmp_path, "launch:" + node('\n        - {name: path, value: "$(var file)"}') +
                  '  - let: {name: file, value: "x"}\n', "early.launch.yaml")
    with pytest.raises(ValueError, match=r"early.launch.yaml: node 'robot' param 'path': \$\(var file\): "
                                         "launch configuration 'file' does not exist"):
        load_launch(early)
    fallback = write(tmp_path, "launch:" + node('\n        - {name: path, value: "$(var file /tmp/x)"}'),
                     "fallback.launch.yaml")
    assert one(fallback).overrides == {"path": "/tmp/x"}  # $(var NAME DEFAULT)


def test_scoped_group_keeps_its_lets_and_conditions_its_children(node_modules, tmp_path):
    def launch_with(group_attrs: str) -> Path:
        return write(tmp_path, f"""
launch:
  - let: {{name: where, value: outside}}
  - group:{group_attrs}
      children:
        - let: {{name: where, value: inside}}
""" + node('\n        - {name: where, value: "$(var where)"}', name="in_group").replace("\n  ", "\n        ")
            + node('\n        - {name: where, value: "$(var where)"}', name="after"), "g.launch.yaml")

    nodes = by_name(load_launch(launch_with("")).nodes)  # scoped is launch's default
    assert nodes["in_group"].overrides["where"] == "inside" and nodes["after"].overrides["where"] == "outside"
    nodes = by_name(load_launch(launch_with("\n      scoped: true")).nodes)
    assert nodes["after"].overrides["where"] == "outside"
    nodes = by_name(load_launch(launch_with("\n      scoped: false")).nodes)
    assert nodes["after"].overrides["where"] == "inside"  # an unscoped group's let outlives it
    assert [n.name for n in load_launch(launch_with('\n      if: "false"')).nodes] == ["after"]
    with pytest.raises(ValueError, match=r"g.launch.yaml: group #2: 'scoped' must be a YAML bool"):
        load_launch(launch_with('\n      scoped: "true"'))


def test_include_passes_args_and_the_included_defaults_apply(node_modules, tmp_path):
    write(tmp_path, """
launch:
  - arg: {name: seed, default: "5"}
  - arg: {name: task, default: pick_lift}
  - let: {name: from_inner, value: "set by the included file"}
""" + node("""
        - {name: seed, value: "$(var seed)"}
        - {name: task, value: "$(var task)"}""", name="inner"), "inner.launch.yaml")
    outer = write(tmp_path, """
launch:
  - arg: {name: episode, default: "9"}
  - include:
      file: "$(find-pkg-share vla_steering)/launch/inner.launch.yaml"
      arg:
        - {name: seed, value: "$(var episode)"}
""" + node('\n        - {name: leaked, value: "$(var from_inner)"}', name="outer"), "outer.launch.yaml")
    launch = load_launch(outer, {"task": "stack"})
    nodes = by_name(launch.nodes)
    assert nodes["inner"].overrides == {"seed": 9, "task": "stack"}  # passed arg; command line reaches it too
    assert by_name(load_launch(outer).nodes)["inner"].overrides == {"seed": 9, "task": "pick_lift"}  # its default
    assert nodes["outer"].overrides == {"leaked": "set by the included file"}  # launch does not scope include
    assert list(launch.arguments) == ["episode", "seed", "task"]  # included arguments are arguments too
    missing = write(tmp_path, outer.read_text().replace("inner.launch", "nope.launch"), "m.launch.yaml")
    with pytest.raises(ValueError, match=r"m.launch.yaml: include #2: launch file .*nope.launch.yaml does not exist"):
        load_launch(missing)
    relative = write(tmp_path, 'launch:\n  - include: {file: "inner.launch.yaml"}\n', "r.launch.yaml")
    with pytest.raises(ValueError, match=r"r.launch.yaml: include #1: launch file inner.launch.yaml must be absolute"):
        load_launch(relative)
    loop = write(tmp_path, 'launch:\n  - include: {file: "$(find-pkg-share vla_steering)/launch/loop.launch.yaml"}\n',
                 "loop.launch.yaml")
    with pytest.raises(ValueError, match="includes nest deeper than"):
        load_launch(loop)


def test_find_pkg_share_and_env(node_modules, tmp_path):
    path = write(tmp_path, "launch:" + node("""
        - {name: share, value: "$(find-pkg-share vla_steering)"}
        - {name: home, value: "$(env VLA_HOME)"}
        - {name: cache, value: "$(env VLA_CACHE '/tmp/a cache')"}"""))
    overrides = one(path, environ={"VLA_HOME": "/home/me"}).overrides
    assert overrides == {"share": str(tmp_path), "home": "/home/me", "cache": "/tmp/a cache"}
    assert one(path, environ={"VLA_HOME": "/h", "VLA_CACHE": "/c"}).overrides["cache"] == "/c"
    with pytest.raises(ValueError, match=r"node 'robot' param 'home': \$\(env VLA_HOME\): environment variable "
                                         "'VLA_HOME' does not exist"):
        load_launch(path, environ={})
    other = write(tmp_path, path.read_text().replace("$(find-pkg-share vla_steering)\"}\n        - {name: home",
                                                     "$(find-pkg-share nav2_bringup)\"}\n        - {name: home"),
                  "o.launch.yaml")
    with pytest.raises(ValueError, match=r"o.launch.yaml: node 'robot' param 'share': \$\(find-pkg-share "
                                         r"nav2_bringup\): package 'nav2_bringup' is not known here"):
        load_launch(other, environ={"VLA_HOME": "/h"})
    loose = tmp_path / "loose.launch.yaml"  # not in a launch/ folder: no share root to find
    loose.write_text(path.read_text())
    with pytest.raises(ValueError, match="loose.launch.yaml is not in a launch/ folder"):
        load_launch(loose, environ={"VLA_HOME": "/h"})


@pytest.mark.parametrize(("text", "error"), [
    ("launch:\n  - nodes: {name: x}\n", r"unknown tag 'nodes' \(entity 1\)"),
    ("launch:\n  - arg: {name: a, default: x, choices: [x]}\n", r"arg 'a': unknown key\(s\) \['choices'\]"),
    ("launch:" + node(extra="\n      respawn: 'true'"), r"node 'robot': unknown key\(s\) \['respawn'\]"),
    ("launch:" + node('\n        - {name: a, value: 1, type: int}'), r"param entry .* unknown key\(s\) \['type'\]"),
    ("launch:" + node('\n        - {name: a, value: "$(eval 1 + 1)"}'),
     r"node 'robot' param 'a': unknown substitution \$\(eval\)"),
    ("launch:" + node('\n        - {name: a, value: "$(var)"}'), r"\$\(var\) takes 1..2 argument\(s\), got 0"),
    ("launch:" + node('\n        - {name: a, value: "$(var x"}'), r"unterminated or malformed \$\(var"),
    ("launch:\n  - arg: {name: a, default: 0}\n", r"arg 'a': 'default' must be a YAML string \(quote it\)"),
    ("launch:\n  - arg: {name: a, default: 'true', choice: [{value: true}]}\n",
     r"arg 'a' choice: 'value' must be a YAML string"),
    ("launch:" + node('\n        - {name: a, value: 1}\n        - {from: /x.yaml}'),
     "param file '/x.yaml' comes after a name/value param"),
    ("launch:" + node('\n        - {name: a, value: [1, "b"]}'), "a list value must be non-empty and of one type"),
    ("launch:" + node('\n        - {name: a, value: {b: 1}}'), "value must be a string, number, bool or list"),
    ("launch:" + node() + node(), r"node name\(s\) \['robot'\] start more than once"),
    ("launch:" + node().replace("config/a.yaml", "config/missing.yaml"),
     r"node 'robot': parameter file .*missing.yaml does not exist"),
    ("launch:" + node().replace("sim_robot_node", "teleport_node"), "node 'robot': exec 'teleport_node' has no module"),
    ("launch:" + node().replace("pkg: vla_steering", "pkg: turtlesim"),
     "node 'robot': pkg 'turtlesim': only vla_steering's executables run here"),
    ("launch:" + node().replace("      name: robot\n", ""), r"node #1: needs 'name'"),
    ("launch:" + node().replace("      pkg: vla_steering\n", ""), r"node 'robot': needs 'pkg'"),
    ("nodes: []\n", "one key, `launch:`"),
    ("launch:\n  - arg: {name: a}\n    let: {name: b, value: c}\n", "must be a mapping with one key"),
])
def test_every_mistake_is_an_error_naming_file_and_entity(node_modules, tmp_path, text, error):
    with pytest.raises(ValueError, match=rf"(t.launch.yaml|{tmp_path}).*{error}"):
        load_launch(write(tmp_path, text))


def test_missing_launch_file(tmp_path):
    with pytest.raises(ValueError, match="launch file .*nope.launch.yaml does not exist"):
        load_launch(tmp_path / "nope.launch.yaml")
