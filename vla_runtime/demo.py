"""`vla demo`: run the bundled policy on every task, write a success report and one GIF per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vla_runtime.evaluate import EvalConfig, evaluate, summary_row
from vla_runtime.io import atomic_write_text


def run_demo(out: Path, policy: str = "models/policy", episodes_per_task: int = 3, workers: int = 2,
             seed: int = 10_000, variation: str = "id", samples: int = 16, backend: str = "torch") -> dict:
    """`samples`: chunks averaged per plan (`PolicyAgent`); the default is the execution the README's
    headline success rate uses. Ignored by the expert."""
    from sim.tasks import TASKS

    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    if policy != "expert" and not Path(policy).is_dir():
        raise FileNotFoundError(f"policy checkpoint {policy} not found (train one with `vla train policy`, "
                                f"or run `vla demo --policy expert`)")
    episodes = out / "episodes"
    shutil.rmtree(episodes, ignore_errors=True)  # a demo always starts fresh
    for old in out.glob("*.gif"):
        old.unlink()
    cfg = EvalConfig(policy=policy, tasks=TASKS, variation=variation, episodes=episodes_per_task, workers=workers,
                     seed=seed, gifs=1, gif_dir=str(out), record=str(episodes),
                     samples=1 if policy == "expert" else samples, backend=backend)
    rows = evaluate(cfg)
    report = {"policy": policy, "backend": backend, "results": rows, "average": summary_row(rows),
              "gifs": sorted(str(p) for p in out.glob("*.gif"))}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    execution = f", mean of {cfg.samples} samples" if cfg.samples > 1 else ""
    title = f"vla demo: {policy} ({variation}, seeds from {seed}{execution})"
    atomic_write_text(out / "report.md", render_table([*rows, report["average"]], title=title))
    return report


def render_table(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| task | variation | method | success | 95% CI | episodes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci95"]
        lines.append(f"| {r['task']} | {r['variation']} | {r['method']} | {r['success_rate']:.0%} "
                     f"| [{lo:.0%}, {hi:.0%}] | {r['episodes']} |")
    return "\n".join(lines) + "\n"
