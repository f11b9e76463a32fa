"""Render `vla eval --json` files as one markdown table: one row per variation (and method), one column per task.

    python benchmarks/eval_table.py benchmarks/results/policy_eval.json [MORE.json ...]

Cells are `success% [lo, hi]` (Wilson 95%); the last column pools every task's episodes. Rows are labelled
as `steering_table.py` labels its columns: a mean-of-n run reads `base avgN` and a policy other than
models/policy adds its folder name (`base avg16 [policy_v7]`), so one-sample and averaged runs, or two
policies' runs, of one split stay apart. A last row per label pools its splits other than `id`.
"""

from __future__ import annotations

import argparse
import json

from steering_table import column  # benchmarks/ is on sys.path when this file runs as a script

from vla_app.report import cell, pivot_table, summary_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_files", nargs="+", metavar="json_file", help="rows of several runs, in this order")
    args = ap.parse_args()
    rows = []
    for name in args.json_files:
        with open(name) as f:
            rows += [{**r, "method": column(r)} for r in json.load(f)["results"]]
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
