"""`vla sim collect`: seeded expert episodes into a dataset folder, in parallel, resumable.

Episode k of a collection always gets task `tasks[k % len(tasks)]` and seed
`seed + k`, so a killed run resumed later (or extended with more episodes)
produces exactly the episodes an uninterrupted run would have.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sim.env import EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS, check_task
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.dataset import EpisodeDataset, clean_partial, existing_episodes, write_dataset_header


@dataclass(frozen=True)
class CollectConfig:
    out: Path
    tasks: tuple[str, ...] = TASKS
    variation: str = "id"
    quality: str = "expert"
    arm: str = "panda"
    episodes: int = 100
    seed: int = 0
    image_size: tuple[int, int] = (128, 128)
    wrist_camera: bool = False
    depth: bool = False
    max_steps: int = 80

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks must not be empty")
        for t in self.tasks:
            check_task(t)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        ExpertFactory(self.quality)
        self.env_config(self.tasks[0])  # validates variation, arm, image size

    def env_config(self, task: str) -> EnvConfig:
        return EnvConfig(task=task, variation=self.variation, arm=self.arm, image_size=self.image_size,
                         wrist_camera=self.wrist_camera, depth=self.depth, max_steps=self.max_steps)

    def header(self) -> dict:
        """Parameters that must match for a resumed run to add to the same folder (episodes may grow)."""
        return {"tasks": list(self.tasks), "variation": self.variation, "quality": self.quality, "arm": self.arm,
                "seed": self.seed, "image_size": list(self.image_size), "wrist_camera": self.wrist_camera,
                "depth": self.depth, "max_steps": self.max_steps}

    def jobs(self) -> list[EpisodeJob]:
        n = len(self.tasks)
        return [EpisodeJob(index=k, seed=self.seed + k, env=self.env_config(self.tasks[k % n]),
                           meta={"quality": self.quality}) for k in range(self.episodes)]


def collect(cfg: CollectConfig, workers: int = 1, progress: bool = True) -> dict:
    """Collect missing episodes; return `{"episodes", "new_episodes", "seconds", "success_rate"}`."""
    t0 = time.perf_counter()
    write_dataset_header(cfg.out, cfg.header())
    clean_partial(cfg.out)  # leftovers of a killed run; no other writer may share the folder
    done = existing_episodes(cfg.out)
    todo = [j for j in cfg.jobs() if j.index not in done]
    results = run_episodes(todo, ExpertFactory(cfg.quality), workers=workers, record_root=cfg.out)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(todo), desc=f"collect {cfg.quality}", unit="ep")
    for _ in results:
        pass
    ds = EpisodeDataset(cfg.out)
    per_task: dict[str, list[bool]] = defaultdict(list)
    for k in range(len(ds)):
        m = ds.meta(k)
        per_task[m["task"]].append(bool(m["success"]))
    return {
        "episodes": len(ds),
        "new_episodes": len(todo),
        "seconds": round(time.perf_counter() - t0, 3),
        "success_rate": {t: round(sum(v) / len(v), 4) for t, v in sorted(per_task.items())},
    }
