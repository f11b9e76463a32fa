"""`vla eval`: seeded closed-loop episodes of a policy (or the scripted expert) in the simulator.

Episode k of every task uses seed `seed + k`, so two methods evaluated with
the same arguments see the same scenes (paired comparison).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vla_runtime.io import atomic_write_text
from vla_runtime.stats import wilson_interval


@dataclass(frozen=True)
class EvalConfig:
    policy: str  # checkpoint folder, or "expert"
    tasks: tuple[str, ...]
    variation: str = "id"
    episodes: int = 50
    workers: int = 2
    seed: int = 10_000  # far from the training collection seeds (0..)
    arm: str = "panda"
    samples: int = 1  # chunks drawn per plan; > 1 executes their mean (`SteeringConfig(method="mean")`)
    gifs: int = 0  # GIFs of the first `gifs` episodes per task
    gif_dir: str | None = None
    record: str | None = None  # save evaluated episodes in the dataset format
    backend: str = "torch"  # vla_runtime.backends.BACKENDS (the policy's; steered factories carry their own)

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.workers < 1 or self.gifs < 0:
            raise ValueError(f"episodes and workers must be >= 1 and gifs >= 0, got episodes={self.episodes} "
                             f"workers={self.workers} gifs={self.gifs}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        from vla_runtime.backends import check_backend

        check_backend(self.backend)
        if self.policy != "expert" and not Path(self.policy).is_dir():
            raise FileNotFoundError(f"policy checkpoint folder {self.policy} does not exist")


def evaluate(cfg: EvalConfig, executor=None, progress: bool = True, factory=None) -> list[dict]:
    """factory: a `vla_app.agents.AgentFactory` (any steering); None = the checkpoint's base policy executed
    as `cfg.samples` says (or the scripted expert)."""
    from sim.env import EnvConfig
    from sim.experts import ExpertFactory
    from vla_app.agents import AgentFactory, unsteered
    from vla_app.runner import EpisodeJob, run_episodes
    from vla_runtime.execution import ExecutorConfig

    if factory is None and cfg.policy == "expert":
        factory, env_options, method, extra = ExpertFactory("expert"), {"image_size": (64, 64)}, "expert", {
            "samples": cfg.samples, "backend": cfg.backend}
    else:
        factory = factory or AgentFactory(cfg.policy, unsteered(cfg.samples), executor or ExecutorConfig(),
                                          backend=cfg.backend)
        env_options, method, extra = factory.env_options(), factory.method, factory.row_fields()
    jobs = [EpisodeJob(index=i * cfg.episodes + k, seed=cfg.seed + k,
                       env=EnvConfig(task=t, variation=cfg.variation, arm=cfg.arm, **{"depth": False, **env_options}),
                       meta={"quality": method})
            for i, t in enumerate(cfg.tasks) for k in range(cfg.episodes)]
    record = cfg.record
    tmp = None
    if record is None and cfg.gifs > 0:
        tmp = tempfile.TemporaryDirectory()
        record = tmp.name
    if record is not None:
        from vla_runtime.dataset import write_dataset_header

        write_dataset_header(record, {"eval_policy": cfg.policy, "variation": cfg.variation, "seed": cfg.seed,
                                      "tasks": list(cfg.tasks), "episodes_per_task": cfg.episodes, "method": method})
    results = run_episodes(jobs, factory, workers=cfg.workers, record_root=record)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(jobs), desc=f"eval {method} {cfg.variation}", unit="ep")
    outcomes: dict[str, dict[int, bool]] = defaultdict(dict)  # task -> seed -> success
    stats: dict[str, list[dict]] = defaultdict(list)  # task -> the agent's per-episode stats
    for s in results:
        outcomes[s.task][s.seed] = s.success
        if s.stats:
            stats[s.task].append(s.stats)
    rows = []
    for task in cfg.tasks:
        v = [outcomes[task][seed] for seed in sorted(outcomes[task])]
        lo, hi = wilson_interval(sum(v), len(v))
        rows.append({"task": task, "variation": cfg.variation, "method": method, "episodes": len(v),
                     "successes": sum(v), "success_rate": sum(v) / len(v), "ci95": [round(lo, 4), round(hi, 4)],
                     "arm": cfg.arm, "seed": cfg.seed, **extra,
                     **_aggregate(stats[task]),
                     "outcomes": [int(x) for x in v]})  # per episode, seeds seed, seed+1, ...: paired tests
    if cfg.gifs > 0:
        _write_gifs(record, cfg)
    if tmp is not None:
        tmp.cleanup()
    return rows


def _aggregate(stats: list[dict]) -> dict:
    """The task's worst chunk-switch jump (m) and its total held steps, over its episodes."""
    if not stats:
        return {}
    return {"max_boundary_jump": round(max(s["max_boundary_jump"] for s in stats), 5),
            "idle_steps": sum(s["idle_steps"] for s in stats)}


def _write_gifs(record: str, cfg: EvalConfig) -> None:
    from vla_app.replay import replay_to_gif
    from vla_runtime.dataset import EpisodeDataset

    ds = EpisodeDataset(record)
    out = Path(cfg.gif_dir or "runs/eval_gifs")
    for task in cfg.tasks:
        for k in ds.filter(task=task)[: cfg.gifs]:
            m = ds.meta(k)
            tag = "ok" if m["success"] else "fail"
            replay_to_gif(record, k, out / f"{task}_{cfg.variation}_seed{m['seed']}_{tag}.gif")


def write_json(path: str | Path, rows: list[dict], complete: bool = True) -> None:
    """`complete` False marks a file rewritten part-way through a multi-variation run."""
    atomic_write_text(path, json.dumps({"results": rows, "complete": complete}, indent=2))
