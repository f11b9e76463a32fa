"""`vla demo`: run the bundled policy on every task, write a success report and one GIF per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vla_app.evaluate import EvalConfig, evaluate
from vla_app.report import summary_row, task_table
from vla_runtime.io import atomic_write_text, check_output_dir, make_tmp_sibling, manifest_is, replace_dir

DEMO_FORMAT = "vla_steering.demo"
_has_demo_format = manifest_is("report.json", "format", DEMO_FORMAT)


def is_demo(folder: Path) -> bool:
    """What `vla demo --out` may replace: a previous demo folder (reports before the format key had
    policy/results/gifs and nothing else of a demo's kind)."""
    if _has_demo_format(folder):
        return True
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    names = {p.name for p in folder.iterdir()}
    return (isinstance(report, dict) and {"policy", "results", "gifs"} <= set(report)
            and all(n in ("report.json", "report.md", "episodes") or n.endswith(".gif") for n in names))


def run_demo(out: Path, policy: str = "models/policy", episodes_per_task: int = 3, workers: int = 2,
             seed: int = 10_000, variation: str = "id", samples: int = 16, backend: str = "torch",
             overwrite: bool = False) -> dict:
    """`samples`: chunks averaged per plan (`SteeringConfig(method="mean")`); the default is the execution the
    headline success rate uses. Ignored by the expert."""
    from sim.tasks import TASKS

    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    if policy != "expert" and not Path(policy).is_dir():
        raise FileNotFoundError(f"policy checkpoint {policy} not found (train one with `vla train policy`, "
                                f"or run `vla demo --policy expert`)")
    out = check_output_dir(out, is_demo, "vla demo folder", inputs=[policy], overwrite=overwrite)
    tmp = make_tmp_sibling(out)  # a demo always starts fresh, and replaces the old one only when done
    try:
        cfg = EvalConfig(policy=policy, tasks=TASKS, variation=variation, episodes=episodes_per_task,
                         workers=workers, seed=seed, gifs=1, gif_dir=str(tmp), record=str(tmp / "episodes"),
                         samples=1 if policy == "expert" else samples, backend=backend)
        rows = evaluate(cfg)
        report = {"format": DEMO_FORMAT, "policy": policy, "backend": backend, "results": rows,
                  "average": summary_row(rows), "gifs": sorted(str(out / p.name) for p in tmp.glob("*.gif"))}
        atomic_write_text(tmp / "report.json", json.dumps(report, indent=2))
        execution = f", mean of {cfg.samples} samples" if cfg.samples > 1 else ""
        title = f"vla demo: {policy} ({variation}, seeds from {seed}{execution})"
        atomic_write_text(tmp / "report.md", task_table(rows, title=title))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
