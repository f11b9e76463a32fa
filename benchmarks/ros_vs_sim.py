"""Success over ROS against the simulator loop on the same (task, seed) pairs.

    python benchmarks/ros_vs_sim.py benchmarks/results/ros_soak_onnx.json benchmarks/results/ros_soak_sim_loop.json

The first file is a `benchmarks/ros_soak.py --json` result (its `per_task` outcomes and `seeds`); the second a
`vla eval --json` run with `--seed` equal to the soak's first seed (episode k of a task uses seed + k). Only
the pairs both ran are compared: success of each with its Wilson 95% interval, the difference, and the
exact McNemar test on the paired episodes. The second file may be another soak (two configurations of the
graph on the same pairs), and the first a `vla eval --json` result (a variant of the simulator loop, e.g.
`benchmarks/diagnostics/ros_path_in_sim.py`): then the difference is first - second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_app.regress import paired_interval
from vla_runtime.stats import mcnemar_exact, wilson_interval


def soak_outcomes(soak: dict) -> dict[tuple[str, int], bool]:
    """(task, seed) -> success, from a soak's per-task outcomes and seeds."""
    return {(task, seed): x for task, outcomes in soak["per_task"].items()
            for seed, x in zip(soak["seeds"][task], outcomes)}


def outcomes(run: dict) -> dict[tuple[str, int], bool]:
    """(task, seed) -> success, from a soak's `--json` or a `vla eval --json` result."""
    if "per_task" in run:
        return soak_outcomes(run)
    return {(r["task"], r["seed"] + k): x for r in run["results"] for k, x in enumerate(r["outcomes"])}


def paired(soak: dict, other: dict) -> tuple[list[int], list[int]]:
    """-> (the first's outcomes, the other's) over the (task, seed) pairs both ran; each is a soak or a
    `vla eval --json` result (the simulator loop, or a variant of it)."""
    sim = outcomes(other)
    pairs = [(int(x), int(sim[key])) for key, x in outcomes(soak).items() if key in sim]
    return [a for a, _ in pairs], [b for _, b in pairs]


def report(names: tuple[str, str], ros: list[int], sim: list[int]) -> None:
    for name, xs in zip(names, (ros, sim)):
        lo, hi = wilson_interval(sum(xs), len(xs))
        print(f"{name}: {sum(xs)}/{len(xs)} = {sum(xs) / len(xs):.0%} [{lo:.0%}, {hi:.0%}]")
    t = mcnemar_exact(ros, sim)
    lo, hi = paired_interval(t["b_only"], t["a_only"], len(ros))
    print(f"{names[0]} - {names[1]}: {100 * (sum(ros) - sum(sim)) / len(ros):+.1f} points [{100 * lo:+.1f}, "
          f"{100 * hi:+.1f}] over {len(ros)} paired episodes (exact McNemar p = {t['p']:.2g}; {names[0]} only "
          f"{t['a_only']}, {names[1]} only {t['b_only']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("soak", type=Path, help="a soak's --json, or a vla eval --json result")
    ap.add_argument("eval", type=Path, help="a vla eval --json result, or another soak's --json")
    ap.add_argument("more", type=Path, nargs="*", help="further (first, second) pairs of files, e.g. the same "
                                                       "comparison on other seeds: each is reported, then all pooled")
    args = ap.parse_args()
    files = [args.soak, args.eval, *args.more]
    if len(files) % 2:
        ap.error(f"files come in (first, second) pairs, got {len(files)}")
    pooled: tuple[list[int], list[int]] = ([], [])
    for a, b in zip(files[::2], files[1::2]):
        first, other = json.loads(a.read_text()), json.loads(b.read_text())
        ros, sim = paired(first, other)
        if not ros:
            ap.error(f"no (task, seed) pair is in both {a} and {b}: run vla eval with the soak's first --seed")
        names = ("ROS", "simulator loop") if "per_task" in first and "per_task" not in other else (a.stem, b.stem)
        if len(files) > 2:
            print(f"{a} vs {b}:")
        report(names, ros, sim)
        pooled[0].extend(ros)
        pooled[1].extend(sim)
    if len(files) > 2:
        print("pooled:")
        report(("first", "second"), *pooled)


if __name__ == "__main__":
    main()
