"""Argument types and shared arguments of the `vla` commands. Defaults come from the config dataclasses
(`default_of`), so each lives in one place; `--help` prints them."""

from __future__ import annotations

import argparse
import dataclasses
import math


class Formatter(argparse.RawDescriptionHelpFormatter):
    """`--help` shows every option's default; descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", _shown_default(action)
        return text if default is None or "(default:" in text else f"{text} (default: {default})"


def _shown_default(action: argparse.Action) -> str | None:
    d = action.default
    if not action.option_strings or d is None or d is False or d == () or d == "" or d is argparse.SUPPRESS:
        return None
    return ",".join(map(str, d)) if isinstance(d, tuple) else "%(default)s"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """argparse prints nothing for an option without help, not even its default: give each one a help
    string that is its default, in this parser and all its subcommands."""
    for action in parser._actions:
        if action.help is None and _shown_default(action) is not None:
            action.help = f"(default: {_shown_default(action)})"
        if isinstance(action.choices, dict):
            for child in action.choices.values():
                if isinstance(child, argparse.ArgumentParser):
                    show_defaults(child)


def default_of(config_cls, name: str):
    """The default of dataclass field `name`: the one place a CLI default is written."""
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            return f.default_factory() if f.default is dataclasses.MISSING else f.default
    raise KeyError(f"{config_cls.__name__} has no field {name!r}")


def size(text: str) -> tuple[int, int]:
    """'128' or '96x128' (HxW) -> (H, W)."""
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}")
    return parts[0], parts[1]


def int_tuple(text: str) -> tuple[int, ...]:
    """'2,1,1' -> (2, 1, 1); the config checks the values."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def weights(text: str) -> tuple[tuple[str, float], ...]:
    """'verifier=1,value=0.25' -> (("verifier", 1.0), ("value", 0.25)); the Selector checks the values."""
    try:
        pairs = [item.split("=", 1) for item in text.split(",")]
        return tuple((name.strip(), float(w)) for name, w in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected scorer=weight pairs (verifier=1,value=0.5), got {text!r}") from None


def positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def positive_list(text: str) -> tuple[int, ...]:
    """'3,5' -> (3, 5), each >= 1."""
    values = int_tuple(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def nonnegative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def nonnegative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def checkpoint(text: str) -> str:
    """A model folder: relative paths resolve from the working directory, else from the installed package's
    share folder (so the default `models/policy` works from any directory), else a Hugging Face repo id in the
    local cache; `expert` and a served policy's ws:// URL (`--backend remote`) stay themselves."""
    from vla_runtime.backends.remote import is_url
    from vla_runtime.hub import resolve_checkpoint
    from vla_runtime.paths import resolve_data_path

    if text == "expert" or is_url(text):
        return text
    path = resolve_data_path(text)
    if path.is_dir():
        return str(path)
    try:  # a Hugging Face repo id in the local cache (never downloaded)
        return str(resolve_checkpoint(text, "model"))
    except (FileNotFoundError, ValueError):
        return str(path)  # the command reports the missing folder, naming its argument


def names(text: str, known, what: str, allow_all: bool = False) -> tuple[str, ...]:
    """'a,b' (or 'all') -> names, each checked against the registry `known` before any work starts."""
    if allow_all and text == "all":
        return tuple(known)
    chosen = tuple(x.strip() for x in text.split(","))
    unknown = [x for x in chosen if x not in known]
    if unknown or not chosen:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; "
                         f"known: {', '.join(known)}{' or all' if allow_all else ''}")
    return chosen


def overwrite_arg(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing --out folder that is not a previous {kind} (never one holding an "
                        f"input or the working directory); without it only a previous {kind} is replaced")


def backend_arg(p: argparse.ArgumentParser) -> None:
    from vla_runtime.backends import BACKENDS

    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch (eager), onnx (onnxruntime; exports on first use into runs/onnx), tensorrt, remote "
                        "(a policy served by `vla serve`: give its ws://HOST:PORT URL as the policy)")


def registry_help(known, what: str, allow_all: bool = False) -> str:
    return f"{what}: one or a comma list of {', '.join(known)}{' (or all)' if allow_all else ''}"
