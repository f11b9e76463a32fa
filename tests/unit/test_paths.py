"""Relative model paths resolve from the working directory first, then from the package's share folder, so
the CLI defaults (`models/policy`) work from any directory, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_app import cli
from vla_runtime.paths import resolve_data_path, share_roots

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_a_relative_path_resolves_from_the_share_root_when_missing_here(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ROOT in share_roots()
    assert resolve_data_path("models/policy") == ROOT / "models" / "policy"
    (tmp_path / "models" / "policy").mkdir(parents=True)  # the user's own folder wins
    assert resolve_data_path("models/policy") == Path("models/policy")
    assert resolve_data_path("nowhere/x") == Path("nowhere/x")  # the caller's error names what was typed
    assert resolve_data_path(tmp_path / "abs") == tmp_path / "abs"


def test_cli_model_defaults_work_from_another_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["eval", "--policy", "expert", "--steer", "both"])
    assert args.policy == "expert"
    assert Path(args.verifier) == ROOT / "models" / "verifier" and Path(args.value) == ROOT / "models" / "value"
    assert Path(cli.build_parser().parse_args(["demo"]).policy) == ROOT / "models" / "policy"


def test_every_commands_help_renders() -> None:
    """`--help` formats each option's help with %-expansion: a stray % in a help string breaks it."""
    import argparse

    def walk(parser: argparse.ArgumentParser) -> int:
        parser.format_help()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return 1 + sum(walk(p) for s in subs for p in s.choices.values())

    assert sum(walk(cli.build_parser(name)) for name in cli.COMMANDS) > 2 * len(cli.COMMANDS)
