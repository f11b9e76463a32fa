"""scripts/policy_recipe.sh and scripts/policy_ablation.sh, run with VLA="echo vla": each ablation switch
changes only its own part of the recipe's commands (a switch silently ignored would make an ablation
measure nothing), and bad switches stop the script before any work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _commands(item: str, tmp_path: Path, **env: str) -> list[str]:
    run = subprocess.run(["bash", str(SCRIPTS / "policy_ablation.sh"), item, "runs/out"], capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "VLA": "echo vla", "DATA": "d", **env})
    assert run.returncode == 0, run.stderr
    return [line for line in run.stdout.splitlines() if line.startswith("vla ")]


def _by_verb(commands: list[str]) -> dict[str, list[str]]:
    verbs: dict[str, list[str]] = {}
    for c in commands:
        verbs.setdefault(" ".join(c.split()[1:3]), []).append(c)
    return verbs


def test_the_reference_recipe_collects_trains_and_evaluates(tmp_path: Path) -> None:
    verbs = _by_verb(_commands("none", tmp_path))
    expert, recovery = verbs["sim collect"]
    assert "--randomize" in expert and "--arm panda,xarm" in expert and "--out d/expert_v6 " in expert + " "
    assert "--quality recovery" in recovery and "--out d/recovery_v6" in recovery
    (train,) = verbs["train policy"]
    assert "--data d/expert_v6 d/recovery_v6 " in train and "--role-grounding" in train and "--seed 0" in train
    (evaluation,) = verbs["eval --policy"]
    assert "--variation id" in evaluation and "--seed 30000" in evaluation and "--average 16" in evaluation


@pytest.mark.parametrize("item, changed", [
    ("roles", lambda v: "--role-grounding" not in v["train policy"][0]),
    ("recovery", lambda v: len(v["sim collect"]) == 1 and "recovery" not in v["train policy"][0]),
    ("randomize", lambda v: all("--randomize" not in c and "_v6_plain" in c for c in v["sim collect"])),
    ("arms", lambda v: all("--arm panda " in c + " " and "_v6_panda" in c for c in v["sim collect"])),
])
def test_each_switch_removes_its_item_and_nothing_else(tmp_path: Path, item: str, changed) -> None:
    reference, ablated = _by_verb(_commands("none", tmp_path)), _by_verb(_commands(item, tmp_path))
    assert changed(ablated), ablated
    assert not changed(reference)
    # the training hyper-parameters are the reference's (only data paths and the roles flag may differ)
    def hyper(train: str) -> list[str]:
        flags = train.split("--out")[1].split()
        return [f for f in flags if f != "--role-grounding"]
    assert hyper(ablated["train policy"][0]) == hyper(reference["train policy"][0])


def test_splits_evaluate_each_named_variation(tmp_path: Path) -> None:
    commands = _commands("none", tmp_path, SKIP_TRAIN="1", SPLITS="appearance camera")
    assert [c.split("--variation ")[1].split()[0] for c in commands] == ["appearance", "camera"]
    assert "--json runs/out.dev_camera_mean16.json" in commands[1]


@pytest.mark.parametrize("item, env, needle", [
    ("wings", {}, "unknown ablation item: wings"),
    ("none", {"ROLES": "2"}, "ROLES must be 0 or 1, got '2'"),
])
def test_bad_switches_stop_before_any_work(tmp_path: Path, item: str, env: dict, needle: str) -> None:
    run = subprocess.run(["bash", str(SCRIPTS / "policy_ablation.sh"), item], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "VLA": "echo vla", **env})
    assert run.returncode == 2 and needle in run.stderr
    assert "vla " not in run.stdout
