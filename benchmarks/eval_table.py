"""Render `vla eval --json` files as one markdown table: one row per variation (and method), one column per task.

    python benchmarks/eval_table.py benchmarks/results/policy_eval.json [MORE.json ...]

Cells are `success% [lo, hi]` (Wilson 95%); the last column pools every task's episodes. A mean-of-n run's
method reads `base avgN`, so one-sample and averaged rows of one split stay apart. A last row per method pools
its splits other than `id`.
"""

from __future__ import annotations

import argparse
import json

from vla_app.report import cell, pivot_table, summary_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_files", nargs="+", metavar="json_file", help="rows of several runs, in this order")
    args = ap.parse_args()
    rows = []
    for name in args.json_files:
        with open(name) as f:
            rows += [{**r, "method": r["method"] + (f" avg{r['samples']}" if r.get("samples", 1) > 1 else "")}
                     for r in json.load(f)["results"]]
    print(pivot_table(rows))
    for method in dict.fromkeys(r["method"] for r in rows):  # every split but id, pooled per method
        ood = [r for r in rows if r["method"] == method and r["variation"] != "id"]
        if ood:
            pooled = summary_row(ood)
            print(f"| OOD pooled ({len({r['variation'] for r in ood})} splits) | {method} | "
                  + " | ".join("-" for _ in dict.fromkeys(r["task"] for r in rows))
                  + f" | **{cell(pooled)}** | {pooled['episodes']} |")


if __name__ == "__main__":
    main()
