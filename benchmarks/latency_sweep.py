"""Closed-loop success against decision latency, with and without plan-ahead and continuity.

    python benchmarks/latency_sweep.py --out benchmarks/results/latency_sweep --episodes 10 --seed 10000

Each cell is one `vla eval` (steering robomonkey n = m = 16 unless --steer says otherwise) in which a
decision takes `--base-ms` plus the injected delay (0/50/100/200/400 ms): its chunk takes over
ceil(ms / control period) steps after the observation it was planned from, the old chunk running
meanwhile (`vla eval --decision-ms`). Three ways to execute are compared on the same seeds:
- `plain`: a plan starts at the replan point, so the old chunk is stretched by the latency;
- `plan-ahead`: a plan starts one latency before the replan point (`--plan-ahead`);
- `plan-ahead+blend`: and continuity: the motion the new chunk's skipped actions planned, less what the
  committed actions did meanwhile, is spread over its first `--blend` steps.
A synchronous row (no latency at all) is the reference. Cells are written to `<out>/<name>.json` as they
finish and skipped when present, so a killed sweep resumes. Prints a markdown table (success with its
Wilson 95% interval, the exact McNemar test of each against `plain` at the same delay, the largest
chunk-switch jump and the held steps) and writes `<out>/latency_sweep.{md,png,json}`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla_runtime.stats import mcnemar_exact, wilson_interval  # noqa: E402

DELAYS_MS = (0, 50, 100, 200, 400)
MODES = {"plain": [], "plan-ahead": ["--plan-ahead"], "plan-ahead+blend": ["--plan-ahead", "--blend", "{blend}"]}


def cell(out: Path, name: str, args: list[str], common: list[str]) -> dict:
    """Run one `vla eval` unless its complete JSON exists; -> pooled outcomes and execution figures."""
    path = out / f"{name}.json"
    if not (path.is_file() and json.loads(path.read_text()).get("complete")):
        cmd = [sys.executable, "-m", "vla_app.cli", "eval", *common, *args, "--json", str(path), "--no-progress"]
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    rows = json.loads(path.read_text())["results"]
    outcomes = [x for r in rows for x in r["outcomes"]]
    return {"outcomes": outcomes, "successes": sum(outcomes), "episodes": len(outcomes),
            "max_boundary_jump": max(r.get("max_boundary_jump", 0.0) for r in rows),
            "idle_steps": sum(r.get("idle_steps", 0) for r in rows)}


def rate(c: dict) -> str:
    lo, hi = wilson_interval(c["successes"], c["episodes"])
    return f"{c['successes'] / c['episodes']:.0%} [{lo:.0%}, {hi:.0%}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_sweep")
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--steer", default="robomonkey")
    ap.add_argument("--task", default="all")
    ap.add_argument("--episodes", type=int, default=10, help="per task and cell")
    ap.add_argument("--seed", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--base-ms", type=float, default=45.0,
                    help="the decision's own latency (the ROS soak's act p50 on this CPU)")
    ap.add_argument("--delays", default=",".join(map(str, DELAYS_MS)), help="injected ms, comma-separated")
    ap.add_argument("--blend", type=int, default=2, help="steps the continuity correction is spread over")
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    delays = [float(x) for x in args.delays.split(",")]
    if args.episodes < 1 or args.base_ms < 0 or any(d < 0 for d in delays) or args.blend < 1:
        ap.error("--episodes and --blend must be >= 1, --base-ms and --delays >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--policy", args.policy, "--task", args.task, "--episodes", str(args.episodes), "--seed",
              str(args.seed), "--workers", str(args.workers), "--backend", args.backend]
    if args.steer != "none":
        common += ["--steer", args.steer]

    sync = cell(args.out, "synchronous", [], common)
    table: dict[float, dict[str, dict]] = {}
    for delay in delays:
        ms = args.base_ms + delay
        table[delay] = {mode: cell(args.out, f"{mode}_{delay:g}ms",
                                   ["--decision-ms", f"{ms:g}", *[f.format(blend=args.blend) for f in flags]], common)
                        for mode, flags in MODES.items()}

    lines = [f"Decision latency = {args.base_ms:g} ms + injected; `{args.steer}`, {sync['episodes']} episodes per "
             f"cell (seeds {args.seed}+, {args.episodes} per task), blend {args.blend} steps. Synchronous "
             f"(no latency): {rate(sync)}.", "",
             "| injected | " + " | ".join(MODES) + " | max jump (m): " + " / ".join(MODES) + " | held steps |",
             "|---" * (len(MODES) + 3) + "|"]
    tests = []
    for delay, cells in table.items():
        row = [f"{delay:g} ms", *(rate(c) for c in cells.values()),
               " / ".join(f"{c['max_boundary_jump']:.3f}" for c in cells.values()),
               " / ".join(str(c["idle_steps"]) for c in cells.values())]
        lines.append("| " + " | ".join(row) + " |")
        for mode in list(MODES)[1:]:
            a, b = cells[mode]["outcomes"], cells["plain"]["outcomes"]
            t = mcnemar_exact(a, b)
            tests.append(f"- {delay:g} ms, {mode} vs plain: {(sum(a) - sum(b)) / len(a):+.0%} (p = {t['p']:.2g}, "
                         f"{t['a_only']} won / {t['b_only']} lost)")
    text = "\n".join(lines + ["", *tests])
    print(text)
    (args.out / "latency_sweep.md").write_text(text + "\n")
    (args.out / "latency_sweep.json").write_text(json.dumps(
        {"base_ms": args.base_ms, "steer": args.steer, "synchronous": sync,
         "cells": {f"{d:g}": cells for d, cells in table.items()}}, indent=1))
    plot(table, sync, args)


def plot(table: dict, sync: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [args.base_ms + d for d in table]
    for k, mode in enumerate(MODES):
        ys, los, his = [], [], []
        for cells in table.values():
            c = cells[mode]
            lo, hi = wilson_interval(c["successes"], c["episodes"])
            p = c["successes"] / c["episodes"]
            ys.append(p)
            los.append(p - lo)
            his.append(hi - p)
        ax.errorbar([x + 4 * (k - 1) for x in xs], ys, yerr=[los, his], marker="o", capsize=3, label=mode)
    ax.axhline(sync["successes"] / sync["episodes"], color="grey", ls="--", label="synchronous")
    ax.set_xlabel("decision latency (ms)")
    ax.set_ylabel("closed-loop success")
    ax.set_title(f"{args.steer}, {sync['episodes']} episodes per point (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "latency_sweep.png", dpi=120)


if __name__ == "__main__":
    main()
