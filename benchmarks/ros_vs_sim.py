"""Success over ROS against the simulator loop on the same (task, seed) pairs.

    python benchmarks/ros_vs_sim.py benchmarks/results/ros_soak_onnx.json benchmarks/results/ros_soak_sim_loop.json

The first file is a `benchmarks/ros_soak.py --json` result (its `per_task` outcomes and `seeds`); the second a
`vla eval --json` run with `--seed` equal to the soak's first seed (episode k of a task uses seed + k). Only
the pairs both ran are compared: success of each with its Wilson 95% interval, the difference, and the
exact McNemar test on the paired episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_runtime.stats import mcnemar_exact, wilson_interval


def paired(soak: dict, rows: list[dict]) -> tuple[list[int], list[int]]:
    """-> (ROS outcomes, simulator outcomes) over the (task, seed) pairs both ran."""
    sim = {(r["task"], r["seed"] + k): x for r in rows for k, x in enumerate(r["outcomes"])}
    ros_out, sim_out = [], []
    for task, outcomes in soak["per_task"].items():
        for seed, x in zip(soak["seeds"][task], outcomes):
            if (task, seed) in sim:
                ros_out.append(int(x))
                sim_out.append(int(sim[(task, seed)]))
    return ros_out, sim_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("soak", type=Path)
    ap.add_argument("eval", type=Path)
    args = ap.parse_args()
    ros, sim = paired(json.loads(args.soak.read_text()), json.loads(args.eval.read_text())["results"])
    if not ros:
        ap.error("no (task, seed) pair is in both files: run vla eval with the soak's first --seed")
    for name, xs in (("ROS", ros), ("simulator loop", sim)):
        lo, hi = wilson_interval(sum(xs), len(xs))
        print(f"{name}: {sum(xs)}/{len(xs)} = {sum(xs) / len(xs):.0%} [{lo:.0%}, {hi:.0%}]")
    t = mcnemar_exact(ros, sim)
    print(f"ROS - simulator: {(sum(ros) - sum(sim)) / len(ros):+.0%} over {len(ros)} paired episodes "
          f"(exact McNemar p = {t['p']:.2g}; ROS only {t['a_only']}, simulator only {t['b_only']})")


if __name__ == "__main__":
    main()
