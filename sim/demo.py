"""`vla demo`: run every task in the simulator, write a success report and one GIF per task.

For now the agent is the scripted expert; the policy issues swap in the
learned (and steered) policy through the same runner.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sim.collect import CollectConfig, collect
from sim.replay import replay_to_gif
from sim.tasks import TASKS
from vla_runtime.dataset import EpisodeDataset
from vla_runtime.io import atomic_write_text
from vla_runtime.stats import wilson_interval


def run_demo(out: Path, episodes_per_task: int = 3, workers: int = 2, seed: int = 0, variation: str = "id",
             arm: str = "panda") -> dict:
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    data = out / "episodes"
    shutil.rmtree(data, ignore_errors=True)  # a demo always starts fresh
    cfg = CollectConfig(out=data, tasks=TASKS, variation=variation, arm=arm, episodes=episodes_per_task * len(TASKS),
                        seed=seed, quality="expert")
    collect(cfg, workers=workers)
    ds = EpisodeDataset(data)
    rows, gifs = [], {}
    for task in TASKS:
        eps = ds.filter(task=task)
        wins = sum(bool(ds.meta(k)["success"]) for k in eps)
        lo, hi = wilson_interval(wins, len(eps))
        rows.append({"task": task, "variation": variation, "method": "expert", "episodes": len(eps),
                     "successes": wins, "success_rate": wins / len(eps), "ci95": [round(lo, 4), round(hi, 4)]})
        gifs[task] = str(replay_to_gif(data, eps[0], out / f"{task}.gif"))
    report = {"results": rows, "gifs": gifs, "arm": arm, "seed": seed}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", render_table(rows, title=f"vla demo ({arm}, {variation}, seed {seed})"))
    return report


def render_table(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| task | variation | method | success | 95% CI | episodes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci95"]
        lines.append(f"| {r['task']} | {r['variation']} | {r['method']} | {r['success_rate']:.0%} "
                     f"| [{lo:.0%}, {hi:.0%}] | {r['episodes']} |")
    return "\n".join(lines) + "\n"
