"""The ROS 2 node graph stated once, in `launch/<name>.graph.yaml`, for `ros2 launch` and for the tests here.

`launch_ros` cannot be installed from PyPI, so the launch files cannot be the only statement of which
nodes run with which parameter files, overrides and remaps: the `*.launch.py` files read a graph file
through this module and turn each resolved `NodeSpec` into a `launch_ros.actions.Node`, and
`ros_nodes.launcher` turns the same specs into plain processes (`NodeSpec.argv`). Pure Python + YAML
(no rclpy, no launch), so it imports everywhere.

Graph file format::

    arguments:                      # launch arguments: name -> {default, description, choices?}
      seed: {default: "0", description: "episode seed"}
    nodes:
      - name: sim_robot             # node name (`__node:=`)
        executable: sim_robot_node  # console script == module `ros_nodes.<executable>`
        namespace: ""               # optional
        parameters: [config/sim_robot.yaml]   # relative to the package share root
        overrides: {seed: "${seed}"}          # parameter values, applied after the files
        remappings: {joint_states: "${joint_states_topic}"}
        condition: "${record}"      # optional: the node runs only when this is true

Substitutions: `${name}` is a launch argument's value, `${share}` the package share root (the folder
holding `launch/` and `config/`: the repository root here, `share/vla_steering` when installed). A
value that is exactly one `${arg}` becomes the YAML-parsed scalar (`seed:=3` gives the int 3,
`enable:=true` the bool), so a typed parameter receives its type; a substitution embedded in longer
text stays text. Every mistake (unknown argument, value outside `choices`, missing parameter file,
unknown `${x}`, executable without a module) is a `ValueError` naming it, raised before any process
starts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUBSTITUTION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SHARE = "share"  # the builtin substitution; no launch argument may take this name
NODES_PACKAGE = "ros_nodes"
NODES_DIR = Path(__file__).resolve().parent
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NODE_KEYS = {"name", "executable", "namespace", "parameters", "overrides", "remappings", "condition"}
ARGUMENT_KEYS = {"default", "description", "choices"}


def _text(value: Any) -> str:
    """A YAML scalar from a graph file as launch-argument text (`true`, not Python's `True`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return param_text(value)
    raise ValueError(f"expected a string, number or bool, got {value!r}")


def param_text(value: Any) -> str:
    """`value` as one line of YAML, the form `-p name:=value` and launch arguments parse back.

    Strings that YAML would read as another type are quoted (`'true'`, `'3'`, `''`), so the round
    trip keeps the type.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n...\n").strip()


def parse_scalar(text: str) -> Any:
    """A launch-argument value as the typed value a parameter gets (`"3"` -> 3, `"true"` -> True).

    The empty string stays the empty string (YAML would read it as null, which no parameter accepts).
    """
    if text.strip() == "":
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None else value


@dataclass(frozen=True)
class GraphArgument:
    """A launch argument: its default text, what it is for, and the values it may take."""

    name: str
    default: str
    description: str = ""
    choices: tuple[str, ...] | None = None

    def __post_init__(self):
        if not NAME.fullmatch(self.name) or self.name == SHARE:
            raise ValueError(f"argument name {self.name!r} must be an identifier other than {SHARE!r}")
        if not isinstance(self.default, str):
            raise ValueError(f"argument {self.name!r}: default must be text, got {self.default!r}")
        if self.choices is not None:
            if not self.choices:
                raise ValueError(f"argument {self.name!r}: choices is empty")
            if "${" not in self.default and self.default not in self.choices:
                raise ValueError(f"argument {self.name!r}: default {self.default!r} is not one of "
                                 f"{list(self.choices)}")


@dataclass(frozen=True)
class NodeSpec:
    """One node to run: executable, name, parameter files (absolute), overrides and remaps, all resolved."""

    name: str
    executable: str
    namespace: str = ""
    parameter_files: tuple[Path, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not NAME.fullmatch(self.name):
            raise ValueError(f"node name {self.name!r} must be an identifier")
        if not NAME.fullmatch(self.executable):
            raise ValueError(f"node {self.name!r}: executable {self.executable!r} must be an identifier")
        for key, value in self.remappings.items():
            if not key or not value:
                raise ValueError(f"node {self.name!r}: remapping {key!r} -> {value!r} has an empty side")

    @property
    def module(self) -> str:
        """The module run for the executable: by convention the console script `x` is `ros_nodes.x:main`."""
        return f"{NODES_PACKAGE}.{self.executable}"

    @property
    def ros_namespace(self) -> str:
        """The namespace as ROS wants it (absolute), or "" for the root."""
        ns = self.namespace.strip("/")
        return f"/{ns}" if ns else ""

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line that runs this node as a plain process (`python -m ros_nodes.<executable>`)."""
        args = [python, "-m", self.module, "--ros-args", "-r", f"__node:={self.name}"]
        if self.ros_namespace:
            args += ["-r", f"__ns:={self.ros_namespace}"]
        for path in self.parameter_files:
            args += ["--params-file", str(path)]
        for key, value in self.overrides.items():
            args += ["-p", f"{key}:={param_text(value)}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        return args


@dataclass(frozen=True)
class NodeTemplate:
    """A node as written in the graph file, substitutions unresolved."""

    name: str
    executable: str
    namespace: str = ""
    parameters: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    condition: str | None = None

    def references(self) -> set[str]:
        """Every `${name}` this node uses."""
        texts = [self.namespace, *self.parameters, *self.remappings, *self.remappings.values()]
        texts += [self.condition or ""] + [t for v in self.overrides.values() for t in _strings(v)]
        return {m for t in texts for m in SUBSTITUTION.findall(t)}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _strings(v)]
    return []


@dataclass(frozen=True)
class Graph:
    """A loaded graph file: its launch arguments (in file order) and its node templates."""

    path: Path
    arguments: dict[str, GraphArgument]
    nodes: tuple[NodeTemplate, ...]

    def __post_init__(self):
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{self.path}: node names {duplicates} appear more than once")
        known = set(self.arguments) | {SHARE}
        for node in self.nodes:
            unknown = sorted(node.references() - known)
            if unknown:
                raise ValueError(f"{self.path}: node {node.name!r} uses unknown substitution(s) "
                                 f"{['${' + u + '}' for u in unknown]}; arguments are {sorted(self.arguments)}")
        for arg in self.arguments.values():
            unknown = sorted(set(SUBSTITUTION.findall(arg.default)) - {SHARE})
            if unknown:
                raise ValueError(f"{self.path}: argument {arg.name!r} default uses {unknown}; "
                                 f"only ${{{SHARE}}} may appear in an argument")

    @property
    def share(self) -> Path:
        """The package share root: the folder holding `launch/` (where this graph file lives) and `config/`."""
        return self.path.resolve().parent.parent

    def argument_values(self, values: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every argument's text: given values over defaults, `${share}` substituted, choices checked."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.arguments))
        if unknown:
            raise ValueError(f"{self.path.name}: unknown argument(s) {unknown}; arguments are {list(self.arguments)}")
        out = {}
        for name, arg in self.arguments.items():
            text = values.get(name, arg.default)
            if not isinstance(text, str):
                raise ValueError(f"argument {name!r}: value must be text, got {text!r}")
            text = self._substitute(text, {SHARE: str(self.share)}, f"argument {name!r}")
            if arg.choices is not None and text not in arg.choices:
                raise ValueError(f"argument {name!r}: {text!r} is not one of {list(arg.choices)}")
            out[name] = text
        return out

    def resolve(self, values: Mapping[str, str] | None = None) -> list[NodeSpec]:
        """The nodes to run for these launch-argument values (text, as `ros2 launch` gives them)."""
        env = {**self.argument_values(values), SHARE: str(self.share)}
        specs = []
        for node in self.nodes:
            where = f"node {node.name!r}"
            if node.condition is not None and not _truth(self._value(node.condition, env, where), where):
                continue
            files = []
            for entry in node.parameters:
                path = Path(self._substitute(entry, env, where))
                path = path if path.is_absolute() else self.share / path
                if not path.is_file():
                    raise ValueError(f"{where}: parameter file {path} does not exist")
                files.append(path)
            module_file = NODES_DIR / f"{node.executable}.py"
            if not module_file.is_file():
                raise ValueError(f"{where}: executable {node.executable!r} has no module {module_file} "
                                 f"(the console script `x` must be `{NODES_PACKAGE}.x:main`)")
            specs.append(NodeSpec(
                name=node.name, executable=node.executable,
                namespace=self._substitute(node.namespace, env, where),
                parameter_files=tuple(files),
                overrides={k: self._value(v, env, f"{where} parameter {k!r}") for k, v in node.overrides.items()},
                remappings={self._substitute(k, env, where): self._substitute(v, env, where)
                            for k, v in node.remappings.items()}))
        return specs

    def _value(self, value: Any, env: Mapping[str, str], where: str) -> Any:
        """An override: exactly `${arg}` -> the typed value; embedded -> text; lists element-wise."""
        if isinstance(value, list | tuple):
            return [self._value(v, env, where) for v in value]
        if not isinstance(value, str):
            return value
        whole = SUBSTITUTION.fullmatch(value)
        if whole:
            return parse_scalar(self._substitute(value, env, where))
        return self._substitute(value, env, where)

    def _substitute(self, text: str, env: Mapping[str, str], where: str) -> str:
        def one(match: re.Match) -> str:
            if match.group(1) not in env:
                raise ValueError(f"{self.path.name}: {where} uses unknown substitution {match.group(0)}")
            return env[match.group(1)]

        return SUBSTITUTION.sub(one, text)


def _truth(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{where}: condition must be true or false, got {value!r}")


def _mapping(raw: Any, what: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a mapping, got {raw!r}")
    return raw


def load_graph(path: str | Path) -> Graph:
    """Read and check a graph file (structure, names, substitutions); files and modules are checked by `resolve`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"graph file {path} does not exist")
    raw = _mapping(yaml.safe_load(path.read_text()), f"{path}")
    extra = sorted(set(raw) - {"arguments", "nodes"})
    if extra:
        raise ValueError(f"{path}: unknown top-level key(s) {extra}; expected arguments, nodes")
    arguments = {}
    for name, spec in _mapping(raw.get("arguments"), f"{path}: arguments").items():
        spec = _mapping(spec, f"{path}: argument {name!r}")
        bad = sorted(set(spec) - ARGUMENT_KEYS)
        if bad or "default" not in spec:
            raise ValueError(f"{path}: argument {name!r} needs a default and only {sorted(ARGUMENT_KEYS)}, got "
                             f"{sorted(spec)}")
        choices = spec.get("choices")
        arguments[str(name)] = GraphArgument(
            name=str(name), default=_text(spec["default"]), description=str(spec.get("description", "")),
            choices=None if choices is None else tuple(_text(c) for c in choices))
    nodes = []
    raw_nodes = raw.get("nodes") or []
    if not isinstance(raw_nodes, list):
        raise ValueError(f"{path}: nodes must be a list, got {raw_nodes!r}")
    for entry in raw_nodes:
        entry = _mapping(entry, f"{path}: node")
        bad = sorted(set(entry) - NODE_KEYS)
        if bad or not {"name", "executable"} <= set(entry):
            raise ValueError(f"{path}: node {entry.get('name')!r} needs name and executable and only "
                             f"{sorted(NODE_KEYS)}; got {sorted(entry)}")
        params = entry.get("parameters") or []
        if not isinstance(params, list):
            raise ValueError(f"{path}: node {entry['name']!r} parameters must be a list of files, got {params!r}")
        condition = entry.get("condition")
        nodes.append(NodeTemplate(
            name=str(entry["name"]), executable=str(entry["executable"]), namespace=str(entry.get("namespace") or ""),
            parameters=tuple(str(p) for p in params),
            overrides=dict(_mapping(entry.get("overrides"), f"{path}: node {entry['name']!r} overrides")),
            remappings={str(k): str(v) for k, v in
                        _mapping(entry.get("remappings"), f"{path}: node {entry['name']!r} remappings").items()},
            condition=None if condition is None else _text(condition)))
    return Graph(path=path, arguments=arguments, nodes=tuple(nodes))
