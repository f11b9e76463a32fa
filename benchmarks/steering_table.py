"""Steering results as markdown: one row per variation, one column per method, paired tests against a base.

    python benchmarks/steering_table.py runs/steer/*.json [--base base] [--episodes N] [--variations V,V]

Each input is a `vla eval --json` file. Cells are the success rate pooled over tasks with its Wilson
95% interval; rows with the same variation and method are pooled, and `(method, samples)` names a
column (`base` with `--average 16` is `base avg16`; a policy other than models/policy adds its folder name,
`base avg16 [policy_v7]`, so two policies' runs pair up). The last rows are the OOD average (every split
but `id`, pooled) and, per method, the exact McNemar test against `--base` on the paired episodes
(same seeds), listed under the table. Prints both, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from vla_runtime.stats import mcnemar_exact, wilson_interval


def column(r: dict) -> str:
    """`base`, `base avg16`, `robomonkey` (n=m=16), `robomonkey n4 m4`, `oracle gaussian n16 m16`, a `+samples`
    suffix for kept samples, ` r2` for two rephrasings, ` s3` for samples drawn with 3 DDIM steps (rows without
    `steps` used the policy's own), ..."""
    words = (f" r{r['rephrasings']}" if r.get("rephrasings") else "") + (f" g{r['margin']}" if r.get("margin") else "")
    words += f" s{r['steps']}" if r.get("steps") else ""
    policy = Path(r.get("policy", "models/policy"))  # rows from before the field ran models/policy
    if policy.parts[-2:] != ("models", "policy") and r["method"] != "expert":  # another policy: its folder name
        words += f" [{policy.name}]"
    if r["method"] == "base":
        return ("base" if r.get("samples", 1) == 1 else f"base avg{r['samples']}") + words
    if r["method"] == "oracle":
        return f"oracle {r['proposal']} n{r['n']} m{r['m']}{words}"
    kept = "+samples" if r.get("keep_samples") else ""
    if r.get("verifier", "models/verifier") != "models/verifier":  # another verifier checkpoint: its folder name
        kept += f" [{Path(r['verifier']).name}]"
    if (r.get("n"), r.get("m")) in ((16, 16), (None, None)):
        return r["method"] + kept + words
    return f"{r['method']}{kept} n{r['n']} m{r['m']}{words}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--base", default="base", help="the column the paired tests compare against")
    ap.add_argument("--episodes", type=int, default=None, metavar="N",
                    help="use each row's first N episodes only (seeds seed..seed+N-1): pairs a 25-episode run with "
                         "a longer one on the same seeds")
    ap.add_argument("--variations", default=None, metavar="V,V",
                    help="only these splits (default: every split in the inputs); the OOD average pools the "
                         "chosen splits other than id")
    args = ap.parse_args()
    keep = None if args.variations is None else set(args.variations.split(","))
    # (variation, column) -> outcomes concatenated in (task, seed) order
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    for f in args.files:
        for r in sorted(json.loads(Path(f).read_text())["results"], key=lambda r: r["task"]):
            if keep is not None and r["variation"] not in keep:
                continue
            if args.episodes is not None and len(r["outcomes"]) < args.episodes:
                raise SystemExit(f"{f}: {r['task']} {r['variation']} has {len(r['outcomes'])} episodes, "
                                 f"fewer than --episodes {args.episodes}")
            cells[(r["variation"], column(r))] += r["outcomes"][:args.episodes]
    variations = list(dict.fromkeys(v for v, _ in cells))
    columns = list(dict.fromkeys(c for _, c in cells))
    if args.base not in columns:
        raise SystemExit(f"no {args.base!r} column in the inputs (have {columns})")
    ood = [v for v in variations if v != "id"]
    pooled = {c: [x for v in ood for x in cells.get((v, c), [])] for c in columns}

    def cell(x: list[int]) -> str:
        if not x:
            return "-"
        lo, hi = wilson_interval(sum(x), len(x))
        return f"{sum(x) / len(x):.0%} [{lo * 100:.0f}, {hi * 100:.0f}]"

    lines = ["| variation | " + " | ".join(columns) + " | episodes/cell |", "|---|" + "---|" * (len(columns) + 1)]
    out = {"cells": {}, "paired_vs_base": {}}
    for v in variations:
        lines.append(f"| {v} | " + " | ".join(cell(cells[(v, c)]) if (v, c) in cells else "-" for c in columns)
                     + f" | {len(cells[(v, args.base)])} |")
        out["cells"][v] = {c: {"successes": sum(cells[(v, c)]), "episodes": len(cells[(v, c)])}
                           for c in columns if (v, c) in cells}
    if ood:
        lines.append("| **OOD average** | " + " | ".join(cell(pooled[c]) for c in columns)
                     + f" | {len(pooled[args.base])} |")
    paired: list[str] = []
    for scope, data in (("id", {c: cells.get(("id", c), []) for c in columns}), ("OOD", pooled)):
        tests = []
        for c in columns:
            if c == args.base or len(data[c]) != len(data[args.base]) or not data[c]:
                continue
            t = mcnemar_exact(data[args.base], data[c])
            diff = (sum(data[c]) - sum(data[args.base])) / len(data[c]) * 100
            tests.append(f"{c} {diff:+.0f} pts (p={t['p']:.3g}, {t['b_only']} won / {t['a_only']} lost)")
            out["paired_vs_base"].setdefault(scope, {})[c] = {"points": round(diff, 1), **t}
        if tests:
            paired.append(f"- paired vs `{args.base}`, {scope} ({len(data[args.base])} episodes): " + "; ".join(tests))
    print("\n".join(lines + [""] + paired))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
