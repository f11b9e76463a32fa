"""`vla sim collect`: seeded expert episodes into a dataset folder, in parallel, resumable.

Episode k of a collection always gets task `tasks[k % len(tasks)]`, arm
`arms[(k // len(tasks)) % len(arms)]` (every task meets every arm equally often) and seed
`seed + k`, so a killed run resumed later (or extended with more episodes)
produces exactly the episodes an uninterrupted run would have.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sim.arms import get_arm_spec
from sim.env import EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS, check_task
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.dataset import (
    HEADER_NAME,
    EpisodeDataset,
    clean_partial,
    existing_episodes,
    read_dataset_header,
    write_dataset_header,
)


@dataclass(frozen=True)
class CollectConfig:
    out: Path
    tasks: tuple[str, ...] = TASKS
    variation: str = "id"
    quality: str = "expert"
    arms: tuple[str, ...] = ("panda",)
    randomize: bool = False  # training-time domain randomisation (sim.randomization); variation `id` only
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
        if isinstance(self.arms, str) or not self.arms:
            raise ValueError(f"arms must be a non-empty tuple of arm names, got {self.arms!r}")
        for arm in self.arms:
            get_arm_spec(arm)
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat an arm, got {self.arms!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        ExpertFactory(self.quality)
        for arm in self.arms:
            self.env_config(self.tasks[0], arm)  # validates variation (with arm and randomize), image size

    def env_config(self, task: str, arm: str) -> EnvConfig:
        return EnvConfig(task=task, variation=self.variation, arm=arm, image_size=self.image_size,
                         wrist_camera=self.wrist_camera, depth=self.depth, max_steps=self.max_steps,
                         randomize=self.randomize)

    def header(self) -> dict:
        """Parameters that must match for a resumed run to add to the same folder (episodes may grow)."""
        return {"tasks": list(self.tasks), "variation": self.variation, "quality": self.quality,
                "arms": list(self.arms), "randomize": self.randomize, "seed": self.seed,
                "image_size": list(self.image_size), "wrist_camera": self.wrist_camera, "depth": self.depth,
                "max_steps": self.max_steps}

    def legacy_header(self) -> dict | None:
        """The header a collection written before `arms` and `randomize` existed has when this config
        continues it (one arm, no randomisation), or None."""
        if len(self.arms) != 1 or self.randomize:
            return None
        h = self.header()
        del h["arms"], h["randomize"]
        return {**h, "arm": self.arms[0]}

    def jobs(self) -> list[EpisodeJob]:
        n, m = len(self.tasks), len(self.arms)
        meta = {"quality": self.quality, **({"randomize": True} if self.randomize else {})}
        return [EpisodeJob(index=k, seed=self.seed + k, meta=meta,
                           env=self.env_config(self.tasks[k % n], self.arms[(k // n) % m]))
                for k in range(self.episodes)]


def _header_for(cfg: CollectConfig) -> dict:
    """`cfg.header()`, or the legacy form an existing folder was written with, so old folders resume."""
    legacy = cfg.legacy_header()
    if (legacy is not None and (Path(cfg.out) / HEADER_NAME).exists()
            and read_dataset_header(cfg.out).get("collection") == json.loads(json.dumps(legacy))):
        return legacy
    return cfg.header()


def collect(cfg: CollectConfig, workers: int = 1, progress: bool = True) -> dict:
    """Collect missing episodes; return `{"episodes", "new_episodes", "seconds", "success_rate"}`."""
    t0 = time.perf_counter()
    write_dataset_header(cfg.out, _header_for(cfg))
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
