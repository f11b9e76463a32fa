"""Render a `vla eval --json` file as a markdown table: one row per variation (and method), one column per task.

    python benchmarks/eval_table.py benchmarks/results/policy_eval.json

Cells are `success% [lo, hi]` (Wilson 95%); the last column pools every task's episodes.
"""

from __future__ import annotations

import argparse
import json

from vla_app.report import pivot_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file")
    args = ap.parse_args()
    with open(args.json_file) as f:
        print(pivot_table(json.load(f)["results"]))


if __name__ == "__main__":
    main()
