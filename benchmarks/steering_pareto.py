"""Success against decision latency: each evaluated method as a point, the Pareto front drawn through them.

    python benchmarks/steering_pareto.py RESULTS.json... --latency benchmarks/results/latency.json \
        [--backend torch] --png benchmarks/results/steering_pareto.png

Success is pooled over the rows of each column (`steering_table.column`), with its Wilson 95% interval.
A decision's latency is composed from `vla bench` stages measured in one run at the column's n: the
unsteered policy (`base`, `base avgN`) costs encode + sample(n), or sample_cheap(n) for a row drawn with the
bench's `candidate_steps` DDIM steps (`--steps`); a verifier method adds verifier(n) (the proposal and the
selection are numpy and small). Oracle columns read privileged simulator state and are
drawn as horizontal ceilings, not points. Prints one JSON line with every point.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from steering_table import column

from vla_runtime.stats import wilson_interval


def latency_ms(rows: list[dict], backend: str, n: int, stages: list[str]) -> float:
    by = {(r["backend"], r["n"], r["stage"]): r["median_ms"] for r in rows}
    missing = [s for s in stages if (backend, n, s) not in by]
    if missing:
        raise SystemExit(f"the latency file has no {backend} n={n} rows for {missing}: bench that n")
    return sum(by[(backend, n, s)] for s in stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--latency", default="benchmarks/results/latency.json")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    latency = json.loads(Path(args.latency).read_text())
    bench, cheap_steps = latency["rows"], latency["config"].get("candidate_steps")
    outcomes: dict[str, list[int]] = defaultdict(list)
    first: dict[str, dict] = {}
    for f in args.files:
        for r in json.loads(Path(f).read_text())["results"]:
            outcomes[column(r)] += r["outcomes"]
            first.setdefault(column(r), r)
    points, ceilings = [], []
    for name, x in outcomes.items():
        r = first[name]
        lo, hi = wilson_interval(sum(x), len(x))
        point = {"column": name, "success": sum(x) / len(x), "ci95": [lo, hi], "episodes": len(x)}
        if r["method"] == "oracle":
            ceilings.append(point)
            continue
        n = r.get("samples", 1) if r["method"] == "base" else r["n"]
        if r.get("steps") and r["steps"] != cheap_steps:
            raise SystemExit(f"{name}: drawn with {r['steps']} DDIM steps; the latency file timed {cheap_steps} "
                             "(vla bench --candidate-steps)")
        scorers = [s for s in ("verifier", "value") if s in r.get("scorers", [])]
        stages = ["encode", "sample_cheap" if r.get("steps") else "sample", *scorers]
        point["latency_ms"] = latency_ms(bench, args.backend, n, stages)
        points.append(point)
    points.sort(key=lambda p: p["latency_ms"])
    front, best = [], -1.0
    for p in points:
        if p["success"] > best:
            front.append(p)
            best = p["success"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in points:
        ax.errorbar(p["latency_ms"], p["success"] * 100, yerr=[[100 * (p["success"] - p["ci95"][0])],
                    [100 * (p["ci95"][1] - p["success"])]], fmt="o", capsize=3)
        ax.annotate(p["column"], (p["latency_ms"], p["success"] * 100), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.plot([p["latency_ms"] for p in front], [p["success"] * 100 for p in front], "k--", lw=1, label="Pareto front")
    for c in ceilings:
        ax.axhline(c["success"] * 100, color="grey", lw=1, ls=":")
        ax.annotate(c["column"] + " (privileged)", (points[0]["latency_ms"], c["success"] * 100), fontsize=8,
                    color="grey", xytext=(0, 3), textcoords="offset points")
    ax.set_xlabel(f"decision latency, ms ({args.backend}, `vla bench` stages)")
    ax.set_ylabel("success, % (95% CI)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(json.dumps({"points": points, "front": [p["column"] for p in front], "ceilings": ceilings}))


if __name__ == "__main__":
    main()
