"""benchmarks/steering_table.py: two policies' runs of one method pair up, and --variations picks the splits;
benchmarks/eval_table.py: one-sample and mean-of-16 runs, or two policies' runs, of one split stay apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla_runtime.stats import wilson_interval

pytestmark = pytest.mark.unit

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "steering_table.py"


def _row(variation: str, outcomes: list[int], policy: str | None) -> dict:
    row = {"task": "pick_lift", "variation": variation, "method": "base", "samples": 16, "outcomes": outcomes}
    return row if policy is None else {**row, "policy": policy}


def _table(tmp_path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_policies_pair_and_variations_filter(tmp_path: Path) -> None:
    # rows without a policy field (older files) ran models/policy; another folder gets its own column
    old = {"results": [_row("id", [0, 0, 1, 0], None), _row("camera", [0, 0, 0, 0], None),
                       _row("paraphrase", [1, 1, 1, 1], None)]}
    new = {"results": [_row("id", [1, 1, 1, 0], "runs/policy_v7"), _row("camera", [1, 1, 0, 0], "runs/policy_v7")]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    out = _table(tmp_path, "old.json", "new.json", "--base", "base avg16", "--variations", "id,camera")
    assert set(out["cells"]) == {"id", "camera"}  # paraphrase filtered out, so the OOD pool pairs
    assert out["cells"]["id"]["base avg16 [policy_v7]"] == {"successes": 3, "episodes": 4}
    ood = out["paired_vs_base"]["OOD"]["base avg16 [policy_v7]"]
    assert ood["points"] == 50.0 and (ood["b_only"], ood["a_only"]) == (2, 0)
    # without the filter the OOD pools have different lengths: no paired OOD test is claimed
    assert "OOD" not in _table(tmp_path, "old.json", "new.json", "--base", "base avg16")["paired_vs_base"]


def _eval_json(outcomes: list[int], samples: int, policy: str | None = None) -> dict:
    """A `vla eval --json` file of one row, as evaluate() writes it."""
    k, n = sum(outcomes), len(outcomes)
    return {"results": [{**_row("id", outcomes, policy), "samples": samples, "episodes": n, "successes": k,
                         "success_rate": k / n, "ci95": [round(x, 4) for x in wilson_interval(k, n)]}]}


def _eval_table_id_rows(tmp_path: Path, runs: dict[str, dict]) -> list[str]:
    for name, run in runs.items():
        (tmp_path / name).write_text(json.dumps(run))
    out = subprocess.run([sys.executable, str(BENCHMARKS / "eval_table.py"), *runs], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    return [line for line in out.splitlines() if line.startswith("| id |")]


def test_eval_table_keeps_sample_counts_apart(tmp_path: Path) -> None:
    runs = {"one.json": _eval_json([0, 0, 0, 1], 1), "avg.json": _eval_json([1, 1, 1, 0], 16)}
    rows = _eval_table_id_rows(tmp_path, runs)
    assert len(rows) == 2 and "| id | base | 25%" in rows[0] and "| id | base avg16 | 75%" in rows[1]


def test_eval_table_keeps_policies_apart(tmp_path: Path) -> None:
    # an ablation and its reference, both mean of 16 on the same split: two rows, never one pooled row
    rows = _eval_table_id_rows(tmp_path, {"ref.json": _eval_json([1, 1, 1, 0], 16, "runs/policy_v7"),
                                          "abl.json": _eval_json([0, 0, 0, 1], 16, "runs/abl_noroles")})
    assert len(rows) == 2
    assert "| id | base avg16 [policy_v7] | 75%" in rows[0] and "| id | base avg16 [abl_noroles] | 25%" in rows[1]


def _ros_vs_sim(tmp_path: Path, first: dict, second: dict) -> str:
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    return subprocess.run([sys.executable, str(BENCHMARKS / "ros_vs_sim.py"), "a.json", "b.json"], capture_output=True,
                          text=True, check=True, cwd=tmp_path).stdout


def test_ros_vs_sim_pairs_a_soak_or_an_eval_with_the_simulator_loop_or_another_soak(tmp_path: Path) -> None:
    """Pairs are (task, seed): a soak's seeds per task, an eval row's seed + episode index; unpaired ones drop."""
    soak = {"per_task": {"pick_lift": [1, 0, 0], "stack": [0]}, "seeds": {"pick_lift": [7, 8, 9], "stack": [7]}}
    loop = {"results": [{"task": "pick_lift", "seed": 8, "outcomes": [1, 1]}]}  # seeds 8, 9
    out = _ros_vs_sim(tmp_path, soak, loop)
    assert "ROS: 0/2" in out and "simulator loop: 2/2" in out and "-100.0 points [" in out and "over 2 paired" in out
    other = {"per_task": {"pick_lift": [1, 1]}, "seeds": {"pick_lift": [7, 9]}}
    out = _ros_vs_sim(tmp_path, soak, other)
    assert "a: 1/2" in out and "b: 2/2" in out and "a - b: -50.0 points [" in out
    # a variant of the simulator loop (an eval result) first, against the soak: named by file, first - second
    out = _ros_vs_sim(tmp_path, loop, soak)
    assert "a: 2/2" in out and "b: 0/2" in out and "a - b: +100.0 points [" in out
    # more pairs: each reported, then pooled (a.json holds the loop now, b.json the soak)
    (tmp_path / "c.json").write_text(json.dumps(other))
    out = subprocess.run([sys.executable, str(BENCHMARKS / "ros_vs_sim.py"), "a.json", "b.json", "c.json", "b.json"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "a.json vs b.json:" in out and "c.json vs b.json:" in out and "c: 2/2" in out and "b: 1/2" in out
    assert "pooled:" in out and "first: 4/4" in out and "second: 1/4" in out and "+75.0 points [" in out
