"""The `vla` command, one module per command group.

Only the group being run is built (and imports its modules), so `vla --help` and `vla sim tasks` stay
instant while each command's defaults still come from its config dataclass (`args.default_of`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vla_app.cli.args import Formatter, show_defaults

# command -> (help, "module:configure function")
COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("the PyBullet simulator: tasks, expert data collection, replay", "sim:configure"),
    "train": ("train the policy, the action verifier or the value function", "train:configure"),
    "eval": ("closed-loop success of a policy (steered or not, or `expert`) in the simulator",
             "evaluate:configure_eval"),
    "demo": ("run every task and write a report + GIFs", "evaluate:configure_demo"),
    "export": ("ONNX graphs and TensorRT engines", "deploy:configure_export"),
    "serve": ("serve a policy over the openpi websocket protocol (the `remote` backend's server)",
              "deploy:configure_serve"),
    "bench": ("latency per backend, n and stage (median, p90, ratios, GFLOP/s) + plot", "deploy:configure_bench"),
    "report": ("tables, provenance and a plot of result stores (`vla eval --store`); merges stores",
               "results:configure_report"),
    "regress": ("a candidate's result store against a baseline's, paired per episode: PASS/FAIL (exit 1)",
                "results:configure_regress"),
    "dataset": ("episodes to and from LeRobot v3 folders, and from recorder MCAPs", "dataset:configure"),
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vla_steering")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command's arguments, or (`only`) just that command's: the others keep their
    one-line help and import nothing."""
    parser = argparse.ArgumentParser(prog="vla", description="VLA policy + test-time steering toolkit",
                                     formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, target) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=Formatter)
        if only is None or only == name:
            module, function = target.split(":")
            getattr(importlib.import_module(f"vla_app.cli.{module}"), function)(p)
    show_defaults(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((x for x in argv if not x.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else "").parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, IndexError) as exc:
        print(f"vla: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
