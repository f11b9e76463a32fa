"""`vla demo`: the bundled policy on every task, unsteered and steered side by side on the same seeds: a report
and GIFs of the episodes steering changed, with the candidates drawn."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from verifiers.steering import SteeringConfig
from vla_app.agents import AgentFactory
from vla_app.demo_gifs import DecisionLog, changed_outcomes, side_by_side_gif
from vla_app.evaluate import EvalConfig, evaluate
from vla_app.report import cell, summary_row, task_table
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


@dataclass(frozen=True)
class LoggedFactory:
    """Picklable: an `AgentFactory` whose agents also log every decision's candidates for the demo's GIFs."""

    agents: AgentFactory
    folder: str

    def __call__(self, seed: int):
        agent = self.agents(seed)
        log = DecisionLog(agent.decide, Path(self.folder))
        agent.decide, agent.before_decide, agent.finish = log.decide, log.bind, log.finish
        return agent

    @property
    def method(self) -> str:
        return self.agents.method

    def row_fields(self) -> dict:
        return self.agents.row_fields()

    def env_options(self) -> dict:
        return self.agents.env_options()


def run_demo(out: Path, policy: str = "models/policy", episodes_per_task: int = 3, workers: int = 2,
             seed: int = 10_000, variation: str = "id", samples: int = 16, backend: str = "torch",
             overwrite: bool = False, steering: SteeringConfig | None = None, gifs_per_task: int = 2) -> dict:
    """`samples`: chunks averaged per plan (`SteeringConfig(method="mean")`); the default is the execution the
    headline success rate uses. Ignored by the expert. `steering`: also run it on the same seeds and show
    both side by side: a table per task and GIFs of the episodes whose outcome steering changed (the first
    episode where none did), with the candidates drawn."""
    from sim.tasks import TASKS

    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    if policy != "expert" and not Path(policy).is_dir():
        raise FileNotFoundError(f"policy checkpoint {policy} not found (train one with `vla train policy`, "
                                f"or run `vla demo --policy expert`)")
    if steering is not None and policy == "expert":
        raise ValueError("the expert is not steered: run the expert demo without steering")
    out = check_output_dir(out, is_demo, "vla demo folder", inputs=[policy], overwrite=overwrite)
    tmp = make_tmp_sibling(out)  # a demo always starts fresh, and replaces the old one only when done
    try:
        samples = 1 if policy == "expert" else samples
        cfg = EvalConfig(policy=policy, tasks=TASKS, variation=variation, episodes=episodes_per_task,
                         workers=workers, seed=seed, gifs=0 if steering else 1, gif_dir=str(tmp),
                         record=str(tmp / "episodes" / ("unsteered" if steering else "")), samples=samples,
                         backend=backend)
        rows = evaluate(cfg)
        execution = f", mean of {cfg.samples} samples" if cfg.samples > 1 else ""
        title = f"vla demo: {policy} ({variation}, seeds from {seed}{execution})"
        report = {"format": DEMO_FORMAT, "policy": policy, "backend": backend, "results": rows,
                  "average": summary_row(rows)}
        if steering is None:
            report["gifs"] = sorted(str(out / p.name) for p in tmp.glob("*.gif"))
            markdown = task_table(rows, title=title)
        else:
            steered, changed, gifs = _steered_side(tmp, out, cfg, rows, steering, gifs_per_task)
            report.update({"steering": asdict(steering), "steered_results": steered,
                           "steered_average": summary_row(steered), "changed": changed, "gifs": gifs})
            markdown = side_by_side_table(rows, steered, changed, f"{title}; steered: {_steer_name(steering)}")
        atomic_write_text(tmp / "report.json", json.dumps(report, indent=2))
        atomic_write_text(tmp / "report.md", markdown)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _steer_name(s: SteeringConfig) -> str:
    return f"{s.method} n={s.n} m={s.m}" + (" + samples" if s.keep_samples else "")


def _steered_side(tmp: Path, out: Path, cfg: EvalConfig, unsteered: list[dict], steering: SteeringConfig,
                  gifs_per_task: int) -> tuple[list[dict], dict, list[str]]:
    """Runs the steered episodes on the same seeds and writes the side-by-side GIFs."""
    factory = LoggedFactory(AgentFactory(cfg.policy, steering, backend=cfg.backend), str(tmp / "decisions"))
    (tmp / "decisions").mkdir()
    steered = evaluate(replace(cfg, record=str(tmp / "episodes" / "steered"), gifs=0), factory=factory)
    changed = changed_outcomes(unsteered, steered)
    gifs = []
    for row in steered:
        task = row["task"]
        seeds = [(s, a, b) for s, a, b in changed[task]][:gifs_per_task] or [(row["seed"], None, None)]
        for seed, before, after in seeds:
            tag = "same" if before is None else ("steering_won" if after else "steering_lost")
            name = f"{task}_seed{seed}_{tag}.gif"
            side_by_side_gif(tmp / "episodes" / "unsteered", tmp / "episodes" / "steered", tmp / "decisions",
                             task, seed, tmp / name)
            gifs.append(str(out / name))
    return steered, {t: [list(x) for x in v] for t, v in changed.items()}, gifs


def side_by_side_table(unsteered: list[dict], steered: list[dict], changed: dict, title: str) -> str:
    """Markdown: per task the unsteered and steered success on the same seeds, and the episodes steering won
    and lost."""
    lines = [f"# {title}", "", "| task | unsteered | steered | steering won | steering lost | episodes |",
             "|---|---|---|---|---|---|"]
    for u, s in [*zip(unsteered, steered), (summary_row(unsteered), summary_row(steered))]:
        flips = changed.get(u["task"]) if u["task"] in changed else [x for v in changed.values() for x in v]
        won = sum(1 for _, _, after in flips if after)
        lines.append(f"| {u['task']} | {cell(u)} | {cell(s)} | {won} | {len(flips) - won} | {u['episodes']} |")
    return "\n".join(lines) + "\n"
