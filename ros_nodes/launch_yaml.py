"""ROS 2 YAML launch files (`launch/*.launch.yaml`) read into the nodes they start, without `launch`.

`ros2 launch` reads these files natively (launch_yaml + launch_ros). Those packages are not installable
from PyPI, so `ros_nodes.launcher` and the tests read the same files through this module: what runs
here is what a workstation launches. Pure Python + PyYAML (no rclpy, no launch), so it imports anywhere.

The subset read, with the semantics of launch / launch_yaml / launch_ros (Jazzy sources):

- The file is `launch:` holding a list of entities, each a one-key mapping `{tag: {attributes}}`.
- `arg` (name, default?, description?, choice? = [{value: ...}]) sets the launch configuration `name`
  unless it is already set (command line, an including file, an earlier `let`); unset without a
  default is an error, and so is a value outside `choice`.
- `let` (name, value) sets a launch configuration for the entities after it.
- `node` (pkg, exec, name, namespace?, output?, param?, remap?): `param` is a list of `{from: FILE}`
  and `{name, value}`; `remap` a list of `{from, to}`.
- `group` (scoped?, children): scoped (the default) restores the launch configurations when it ends.
- `include` (file, arg? = [{name, value}]) sets the arg values as launch configurations and runs the
  file's entities in the same scope: launch does not scope an include, so configurations flow both ways.
- Every entity takes `if` or `unless`: true/1 or false/0 after substitution, any case; else an error.
- Substitutions in any string: `$(var NAME [DEFAULT])`, `$(env NAME [DEFAULT])` and
  `$(find-pkg-share vla_steering)`, the package share root: the folder holding `launch/` and `config/`
  (the repository root here, `share/vla_steering` installed), found from the launch file's place.
- A `param` value written as a YAML number, bool or list keeps its type, and a string without
  substitutions stays a string; a string with substitutions is evaluated and then YAML-parsed
  (`$(var seed)` with `seed:=3` gives the int 3, an empty result the empty string). A result that is not
  a scalar or a uniform list is an error.
- Every other attribute must be a YAML string (`default: "0"`), as launch_yaml checks; `scoped` a bool.

Stricter than `ros2 launch`, so that a mistake is caught before it reaches a workstation: an unknown
tag, key or substitution, a launch argument given on the command line that no file declares, a missing
or relative parameter file, a package other than vla_steering, and an executable without a module
`ros_nodes/<exec>.py` are each a `ValueError` naming it and where it is (file and entity), raised before
any process starts.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "vla_steering"
NODES_PACKAGE = "ros_nodes"
NODES_DIR = Path(__file__).resolve().parent
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # a substitution's name (launch's grammar)
SUBSTITUTIONS = {"var": (1, 2), "env": (1, 2), "find-pkg-share": (1, 1)}  # name -> (min, max) arguments
CONDITIONS = ("if", "unless")
KEYS = {"arg": {"name", "default", "description", "choice"}, "let": {"name", "value"},
        "node": {"pkg", "exec", "name", "namespace", "output", "param", "remap"},
        "group": {"scoped", "children"}, "include": {"file", "arg"}}
MAX_INCLUDE_DEPTH = 16
SCALARS = (bool, int, float, str)


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
class LaunchArgument:
    """A declared launch argument (`arg`): its default as written, what it is for, the values it may take."""

    name: str
    default: str | None = None
    description: str = ""
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Launch:
    """A launch file resolved for some argument values: every argument the files read declare (in
    order), the value each had when declared, and the nodes to start."""

    path: Path
    arguments: dict[str, LaunchArgument]
    values: dict[str, str]
    nodes: tuple[NodeSpec, ...]


# ---- substitutions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Substitution:
    """`$(name arg ...)`, each argument itself text with substitutions."""

    name: str
    args: tuple[Text, ...]


Text = tuple[str | Substitution, ...]  # literal pieces and substitutions, concatenated


class _Scanner:
    """launch's substitution grammar, as far as these files need it: `$(name a b)`, arguments split
    on single spaces, quoted ('...' or "...") to hold spaces, nested substitutions, `\\x` escapes."""

    def __init__(self, text: str, where: str):
        self.s, self.i, self.where = text, 0, where

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message} in {self.s!r}")

    def parts(self, stop: str) -> Text:
        out: list[str | Substitution] = []
        buf = ""
        while self.i < len(self.s):
            if self.s.startswith("$(", self.i):
                out += [buf] if buf else []
                buf = ""
                out.append(self.substitution())
                continue
            c = self.s[self.i]
            if c in stop:
                break
            if c == "\\" and self.i + 1 < len(self.s):
                self.i += 1
                c = self.s[self.i]
            buf += c
            self.i += 1
        return tuple(out + ([buf] if buf else []))

    def substitution(self) -> Substitution:
        self.i += 2
        match = IDENTIFIER.match(self.s, self.i)
        if not match:
            raise self.error("'$(' must be followed by a substitution name")
        name, self.i = match.group(), match.end()
        if name not in SUBSTITUTIONS:
            raise self.error(f"unknown substitution $({name}); known: {', '.join(SUBSTITUTIONS)}")
        args = []
        while self.s.startswith(" ", self.i):
            self.i += 1
            quote = self.s[self.i:self.i + 1]
            if quote in ("'", '"'):
                self.i += 1
                args.append(self.parts(quote))
                if not self.s.startswith(quote, self.i):
                    raise self.error(f"unterminated {quote} in $({name} ...)")
                self.i += 1
            else:
                args.append(self.parts(" ()'\""))
        if not self.s.startswith(")", self.i):
            raise self.error(f"unterminated or malformed $({name} ...)")
        self.i += 1
        low, high = SUBSTITUTIONS[name]
        if not low <= len(args) <= high:
            raise self.error(f"$({name}) takes {low}..{high} argument(s), got {len(args)}")
        return Substitution(name, tuple(args))


def parse_text(text: str, where: str) -> Text:
    """The pieces of one attribute string; unknown substitutions and bad syntax raise here, at load."""
    return _Scanner(text, where).parts("")


def _has_substitution(text: Text) -> bool:
    return any(isinstance(p, Substitution) for p in text)


# ---- loading (structure, keys, types and substitution syntax, before anything runs) ---------------

@dataclass(frozen=True)
class _Entity:
    tag: str
    where: str  # "file: tag 'name'", for error messages
    attrs: dict[str, Any]  # attribute -> parsed value (Text, tuples of them, entities)
    condition: tuple[str, Text] | None = None  # ("if" | "unless", expression)


def _string(attrs: Mapping[str, Any], key: str, where: str, required: bool = True) -> Text | None:
    if key not in attrs:
        if required:
            raise ValueError(f"{where}: needs {key!r}")
        return None
    value = attrs[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a YAML string (quote it), got {value!r}")
    return parse_text(value, f"{where} {key}")


def _plain(attrs: Mapping[str, Any], key: str, where: str) -> str:
    """An attribute launch takes as plain text (argument names, descriptions, choices)."""
    text = _string(attrs, key, where)
    if _has_substitution(text):
        raise ValueError(f"{where}: {key!r} cannot hold a substitution, got {attrs[key]!r}")
    return "".join(text)  # type: ignore[arg-type]


def _entries(attrs: Mapping[str, Any], key: str, where: str, allowed: set[str]) -> list[dict]:
    raw = attrs.get(key, [])
    if not isinstance(raw, list) or not raw or not all(isinstance(e, dict) for e in raw):
        raise ValueError(f"{where}: {key!r} must be a non-empty list of mappings, got {raw!r}")
    for entry in raw:
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"{where}: {key} entry {entry!r} has unknown key(s) {unknown}; "
                             f"it takes {sorted(allowed)}")
    return raw


def _param_value(raw: Any, where: str) -> Any:
    """A `param` value as launch_ros normalizes it: scalars as written, strings with substitutions as
    Text (typed when evaluated), lists element-wise and of one literal type."""
    if isinstance(raw, list):
        items = [_param_value(v, where) for v in raw]
        literal = {type(v) for v in items if not isinstance(v, tuple)}
        if not items or any(isinstance(v, list) for v in items) or len(literal) > 1:
            raise ValueError(f"{where}: a list value must be non-empty and of one type, got {raw!r}")
        return items
    if isinstance(raw, str):
        text = parse_text(raw, where)
        return text if _has_substitution(text) else "".join(text)  # type: ignore[arg-type]
    if isinstance(raw, SCALARS):
        return raw
    raise ValueError(f"{where}: value must be a string, number, bool or list, got {raw!r}")


def _entity(item: Any, index: int, where: str) -> _Entity:
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"{where} entity {index} must be a mapping with one key (its tag), got {item!r}")
    ((tag, attrs),) = item.items()
    if tag not in KEYS:
        raise ValueError(f"{where} unknown tag {tag!r} (entity {index}); known: {', '.join(KEYS)}")
    if not isinstance(attrs, dict):
        raise ValueError(f"{where} {tag} (entity {index}) must be a mapping of attributes, got {attrs!r}")
    label = f"{where} {tag} {attrs['name']!r}" if isinstance(attrs.get("name"), str) else f"{where} {tag} #{index}"
    unknown = sorted(set(attrs) - KEYS[tag] - set(CONDITIONS))
    if unknown:
        raise ValueError(f"{label}: unknown key(s) {unknown}; {tag} takes {sorted(KEYS[tag] | set(CONDITIONS))}")
    if all(c in attrs for c in CONDITIONS):
        raise ValueError(f"{label}: 'if' and 'unless' cannot be used together")
    condition = next(((c, _string(attrs, c, label)) for c in CONDITIONS if c in attrs), None)
    parsed: dict[str, Any] = {}
    if tag == "arg":
        parsed["name"] = _plain(attrs, "name", label)
        if not NAME.fullmatch(parsed["name"]):
            raise ValueError(f"{label}: argument name must be an identifier")
        parsed["default"] = _string(attrs, "default", label, required=False)
        parsed["default_text"] = attrs.get("default")
        parsed["description"] = _plain(attrs, "description", label) if "description" in attrs else ""
        parsed["choice"] = (None if "choice" not in attrs else
                            tuple(_plain(c, "value", f"{label} choice") for c in
                                  _entries(attrs, "choice", label, {"value"})))
    elif tag == "let":
        parsed = {k: _string(attrs, k, label) for k in ("name", "value")}
    elif tag == "node":
        parsed = {k: _string(attrs, k, label) for k in ("pkg", "exec", "name")}
        parsed["namespace"] = _string(attrs, "namespace", label, required=False)
        if "output" in attrs:
            _string(attrs, "output", label)
        params: list[tuple[str, Any]] = []
        for entry in _entries(attrs, "param", label, {"from", "name", "value"}) if "param" in attrs else []:
            if "from" in entry and set(entry) != {"from"}:
                raise ValueError(f"{label}: param {entry!r}: 'from' stands alone")
            if "from" in entry:
                if params and params[-1][0] == "value":
                    raise ValueError(f"{label}: param file {entry['from']!r} comes after a name/value param; "
                                     "list the files first (the launcher applies files, then values)")
                params.append(("file", _string(entry, "from", f"{label} param")))
            elif set(entry) == {"name", "value"} and entry["value"] is not None:
                name = _plain(entry, "name", f"{label} param")
                params.append(("value", (name, _param_value(entry["value"], f"{label} param {name!r}"))))
            else:
                raise ValueError(f"{label}: param {entry!r} needs 'from', or 'name' and 'value'")
        parsed["param"] = tuple(params)
        parsed["remap"] = tuple((_string(r, "from", f"{label} remap"), _string(r, "to", f"{label} remap"))
                                for r in (_entries(attrs, "remap", label, {"from", "to"})
                                          if "remap" in attrs else []))
    elif tag == "group":
        scoped = attrs.get("scoped", True)
        if not isinstance(scoped, bool):
            raise ValueError(f"{label}: 'scoped' must be a YAML bool (true/false), got {scoped!r}")
        children = attrs.get("children")
        if not isinstance(children, list):
            raise ValueError(f"{label}: needs 'children', a list of entities")
        parsed = {"scoped": scoped, "children": tuple(_entity(c, k + 1, f"{label} >") for k, c in
                                                    enumerate(children))}
    else:  # include
        parsed["file"] = _string(attrs, "file", label)
        parsed["arg"] = tuple((_string(a, "name", f"{label} arg"), _string(a, "value", f"{label} arg"))
                              for a in (_entries(attrs, "arg", label, {"name", "value"}) if "arg" in attrs else []))
    return _Entity(tag, label, parsed, condition)


def _load(path: Path) -> tuple[_Entity, ...]:
    if not path.is_file():
        raise ValueError(f"launch file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict) or list(raw) != ["launch"] or not isinstance(raw["launch"], list):
        raise ValueError(f"{path}: a YAML launch file is one key, `launch:`, holding a list of entities")
    return tuple(_entity(item, k + 1, f"{path.name}:") for k, item in enumerate(raw["launch"]))


def _declared(entities: tuple[_Entity, ...]) -> list[LaunchArgument]:
    """Every `arg` of a file, groups included whatever their condition (includes are read when run)."""
    out = []
    for e in entities:
        if e.tag == "arg":
            a = e.attrs
            out.append(LaunchArgument(a["name"], a["default_text"], a["description"], a["choice"]))
        elif e.tag == "group":
            out += _declared(e.attrs["children"])
    return out


def share_root(launch_file: str | Path) -> Path | None:
    """The package share root for a launch file in `<root>/launch/` (repository or install), else None."""
    path = Path(launch_file).resolve()
    return path.parent.parent if path.parent.name == "launch" else None


# ---- running (launch configurations, conditions, nodes) -------------------------------------------

class _Run:
    def __init__(self, path: Path, given: Mapping[str, str], environ: Mapping[str, str], share: Path | None):
        self.path, self.environ, self.share = path, environ, share
        self.configs = dict(given)
        self.arguments: dict[str, LaunchArgument] = {}
        self.values: dict[str, str] = {}
        self.nodes: list[NodeSpec] = []

    def text(self, text: Text, where: str) -> str:
        return "".join(p if isinstance(p, str) else self.substitute(p, where) for p in text)

    def substitute(self, sub: Substitution, where: str) -> str:
        args = [self.text(a, where) for a in sub.args]
        if sub.name == "var":
            if args[0] in self.configs:
                return self.configs[args[0]]
            if len(args) == 2:
                return args[1]
            raise ValueError(f"{where}: $(var {args[0]}): launch configuration {args[0]!r} does not exist "
                             "(no arg or let sets it before this point)")
        if sub.name == "env":
            value = self.environ.get(args[0], args[1] if len(args) == 2 else None)
            if value is None:
                raise ValueError(f"{where}: $(env {args[0]}): environment variable {args[0]!r} does not exist "
                                 f"(give a default: $(env {args[0]} DEFAULT))")
            return value
        if args[0] != PACKAGE:  # find-pkg-share
            raise ValueError(f"{where}: $(find-pkg-share {args[0]}): package {args[0]!r} is not known here; "
                             f"only {PACKAGE}'s share root is")
        if self.share is None:
            raise ValueError(f"{where}: $(find-pkg-share {PACKAGE}): {self.path} is not in a launch/ folder, so "
                             "the share root (the folder holding launch/ and config/) is unknown")
        return str(self.share)

    def typed(self, value: Any, where: str) -> Any:
        """launch's coercion of an evaluated substitution: YAML rules, "" stays "", scalars or uniform lists."""
        if isinstance(value, list):
            out = [self.typed(v, where) for v in value]
            if len({type(v) for v in out}) > 1:
                raise ValueError(f"{where}: list {out!r} mixes types; a parameter list has one")
            return out
        if not isinstance(value, tuple):
            return value
        text = self.text(value, where)
        if text == "":
            return text
        try:
            typed = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{where}: {text!r} is not a YAML value ({err})") from None
        ok = isinstance(typed, SCALARS) or (isinstance(typed, list) and all(isinstance(v, SCALARS) for v in typed)
                                             and len({type(v) for v in typed}) <= 1)
        if not ok:
            raise ValueError(f"{where}: {text!r} reads as {type(typed).__name__}; a parameter takes a scalar or "
                             "a uniform list")
        return typed

    def file(self, text: Text, where: str, what: str) -> Path:
        path = Path(self.text(text, where))
        if not path.is_absolute():
            raise ValueError(f"{where}: {what} {path} must be absolute "
                             f"(write $(find-pkg-share {PACKAGE})/...)")
        if not path.is_file():
            raise ValueError(f"{where}: {what} {path} does not exist")
        return path

    def run(self, entities: tuple[_Entity, ...], depth: int = 0) -> None:
        for e in entities:
            if e.condition is not None:
                kind, expression = e.condition
                text = self.text(expression, e.where).strip().lower()
                if text not in ("true", "1", "false", "0"):
                    raise ValueError(f"{e.where}: {kind} {text!r} must be true, false, 1 or 0")
                if (text in ("true", "1")) != (kind == "if"):
                    continue
            getattr(self, f"_{e.tag}")(e, e.where, depth)

    def _arg(self, e: _Entity, where: str, depth: int) -> None:
        name, choices = e.attrs["name"], e.attrs["choice"]
        if name not in self.configs:
            if e.attrs["default"] is None:
                raise ValueError(f"{where}: launch argument {name!r} has no default and no value was given")
            self.configs[name] = self.text(e.attrs["default"], where)
        value = self.configs[name]
        if choices is not None and value not in choices:
            raise ValueError(f"{where}: {value!r} is not one of {list(choices)}")
        self.values[name] = value

    def _let(self, e: _Entity, where: str, depth: int) -> None:
        self.configs[self.text(e.attrs["name"], where)] = self.text(e.attrs["value"], where)

    def _group(self, e: _Entity, where: str, depth: int) -> None:
        saved = dict(self.configs)
        self.run(e.attrs["children"], depth)
        if e.attrs["scoped"]:
            self.configs = saved

    def _include(self, e: _Entity, where: str, depth: int) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise ValueError(f"{where}: includes nest deeper than {MAX_INCLUDE_DEPTH} (a cycle?)")
        path = self.file(e.attrs["file"], where, "launch file")
        for name, value in e.attrs["arg"]:
            self.configs[self.text(name, where)] = self.text(value, where)
        entities = _load(path)
        for arg in _declared(entities):
            self.arguments.setdefault(arg.name, arg)
        self.run(entities, depth + 1)

    def _node(self, e: _Entity, where: str, depth: int) -> None:
        pkg, executable = self.text(e.attrs["pkg"], where), self.text(e.attrs["exec"], where)
        if pkg != PACKAGE:
            raise ValueError(f"{where}: pkg {pkg!r}: only {PACKAGE}'s executables run here")
        module_file = NODES_DIR / f"{executable}.py"
        if not NAME.fullmatch(executable) or not module_file.is_file():
            raise ValueError(f"{where}: exec {executable!r} has no module {module_file} "
                             f"(the console script `x` must be `{NODES_PACKAGE}.x:main`)")
        files, overrides = [], {}
        for kind, item in e.attrs["param"]:
            if kind == "file":
                files.append(self.file(item, where, "parameter file"))
            else:
                overrides[item[0]] = self.typed(item[1], f"{where} param {item[0]!r}")
        remaps: dict[str, str] = {}
        for source, target in e.attrs["remap"]:
            source_text = self.text(source, where)
            if source_text in remaps:
                raise ValueError(f"{where}: {source_text!r} is remapped twice")
            remaps[source_text] = self.text(target, where)
        namespace = e.attrs["namespace"]
        self.nodes.append(NodeSpec(
            name=self.text(e.attrs["name"], where), executable=executable,
            namespace="" if namespace is None else self.text(namespace, where),
            parameter_files=tuple(files), overrides=overrides, remappings=remaps))


def load_launch(path: str | Path, values: Mapping[str, str] | None = None, *,
                environ: Mapping[str, str] | None = None, share: str | Path | None = None) -> Launch:
    """The nodes `ros2 launch <path> name:=value ...` starts, for launch-argument `values` (text).

    `environ` is what `$(env ...)` reads (default `os.environ`); `share` overrides the share root
    (default: the folder above the file's `launch/` folder).
    """
    path = Path(path)
    values = dict(values or {})
    for name, value in values.items():
        if not isinstance(value, str):
            raise ValueError(f"{path.name}: launch argument {name!r}: value must be text, got {value!r}")
    entities = _load(path)
    root = Path(share) if share is not None else share_root(path)
    run = _Run(path, values, os.environ if environ is None else environ, root)
    for arg in _declared(entities):
        run.arguments.setdefault(arg.name, arg)  # in file order; the first declaration describes it
    run.run(entities)
    unknown = sorted(set(values) - set(run.arguments))
    if unknown:
        raise ValueError(f"{path.name}: unknown launch argument(s) {unknown}; arguments are {list(run.arguments)}")
    names = [n.name for n in run.nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path.name}: node name(s) {duplicates} start more than once")
    return Launch(path=path, arguments=run.arguments, values=run.values, nodes=tuple(run.nodes))
