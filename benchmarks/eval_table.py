"""Render a `vla eval --json` file as a markdown table: one row per variation (and method), one column per task.

    python benchmarks/eval_table.py benchmarks/results/policy_eval.json

Cells are `success% [lo, hi]` (Wilson 95%); the last column pools every task's episodes.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from vla_app.evaluate import summary_row


def cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{r['success_rate']:.0%} [{lo * 100:.0f}, {hi * 100:.0f}]"


def markdown(rows: list[dict]) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["variation"], r["method"])].append(r)
    lines = ["| variation | method | " + " | ".join(tasks) + " | average | episodes |",
             "|---|---|" + "---|" * (len(tasks) + 2)]
    for (variation, method), part in groups.items():
        by_task = {r["task"]: r for r in part}
        avg = summary_row(part)
        cells = [cell(by_task[t]) if t in by_task else "-" for t in tasks]
        lines.append(f"| {variation} | {method} | " + " | ".join(cells) + f" | **{cell(avg)}** | {avg['episodes']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file")
    args = ap.parse_args()
    with open(args.json_file) as f:
        print(markdown(json.load(f)["results"]))


if __name__ == "__main__":
    main()
