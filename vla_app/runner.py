"""Seeded episodes in parallel worker processes, for any agent factory.

Workers are spawned (not forked) so torch/OpenMP state never leaks into them;
each keeps its environments alive between episodes of the same configuration.
When recording, a worker writes its episode file itself (atomically), so only
small summaries cross process boundaries.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from sim.env import ArmEnv, EnvConfig


class Agent(Protocol):
    """`act` gives the action to execute. An agent may also set `label` (the action to record in
    its place, e.g. DART's clean expert action under a perturbation); None records the action."""

    needs_images: bool

    def reset(self, env: ArmEnv) -> None: ...

    def act(self, env: ArmEnv) -> np.ndarray: ...


AgentFactory = Callable[[int], Agent]  # episode seed -> agent (must be picklable for workers)


@dataclass(frozen=True)
class EpisodeJob:
    index: int
    seed: int
    env: EnvConfig
    meta: dict = field(default_factory=dict)  # copied into the episode meta (e.g. expert quality)


@dataclass(frozen=True)
class EpisodeSummary:
    index: int
    task: str
    variation: str
    arm: str
    seed: int
    success: bool
    steps: int
    seconds: float
    instruction: str
    stats: dict = field(default_factory=dict)  # the agent's `episode_stats()`, when it has one
    worker: str = ""  # host:pid of the process that ran it (the result store's provenance)


_ENVS: dict[EnvConfig, ArmEnv] = {}


def _env_for(config: EnvConfig) -> ArmEnv:
    env = _ENVS.get(config)
    if env is None:
        env = _ENVS[config] = ArmEnv(config)
    return env


def run_episode(job: EpisodeJob, factory: AgentFactory, record_root: str | None = None) -> EpisodeSummary:
    """Run one seeded episode; with `record_root`, store it in the dataset format."""
    t0 = time.perf_counter()
    agent = factory(job.seed)
    config = job.env if agent.needs_images or record_root else replace(job.env, render_images=False)
    env = _env_for(config)
    env.reset(seed=job.seed)
    agent.reset(env)
    frames = [env.last_observation] if record_root else None
    actions, rewards, successes, relabelled = [], [], [], []
    info = {"success": False}
    while True:
        action = agent.act(env)
        _, reward, terminated, truncated, info = env.step(action)
        if frames is not None:
            frames.append(env.last_observation)
            label = getattr(agent, "label", None)
            executed = env.spec_actions.validate(action)
            recorded = executed if label is None else env.spec_actions.validate(label)
            if not np.array_equal(recorded, executed):
                relabelled.append(len(actions))
            actions.append(recorded)
            rewards.append(reward)
            successes.append(info["success"])
        if terminated or truncated:
            break
    stats = getattr(agent, "episode_stats", None)
    summary = EpisodeSummary(index=job.index, task=config.task, variation=config.variation, arm=env.arm_spec.name,
                             seed=job.seed, success=bool(info["success"]), steps=env.steps,
                             seconds=time.perf_counter() - t0, instruction=env.instance.instruction,
                             stats=stats() if stats is not None else {}, worker=f"{socket.gethostname()}:{os.getpid()}")
    if record_root is not None:
        _write(record_root, job, env, summary, frames, actions, rewards, successes, relabelled)
    finish = getattr(agent, "finish", None)  # an agent that records its own data writes it once the outcome is known
    if finish is not None:
        finish(env, summary)
    return summary


def _write(root, job, env, summary, frames, actions, rewards, successes, relabelled) -> None:
    from vla_runtime.dataset import Episode, write_episode

    cams = frames[0].images.keys()
    episode = Episode(
        images={c: np.stack([f.images[c] for f in frames]) for c in cams},
        depth={c: np.stack([f.depth[c] for f in frames]) for c in frames[0].depth},
        proprio=np.stack([f.proprio for f in frames]),
        actions=np.stack(actions).astype(np.float32),
        rewards=np.asarray(rewards, np.float32),
        successes=np.asarray(successes, bool),
        meta={
            "task": summary.task, "variation": summary.variation, "arm": summary.arm, "seed": summary.seed,
            "instruction": summary.instruction, "success": summary.success, "quality": job.meta.get("quality", ""),
            "cameras": {c: info.to_dict() for c, info in frames[-1].cameras.items()},
            "action_spec": env.spec_actions.to_dict(), "scene": env.instance.to_dict(),
            # Steps whose recorded action is not the executed one (DART): the states after them were
            # reached by a different action, so a chunk label is only consistent up to such a step.
            "relabelled_steps": relabelled,
            **{k: v for k, v in job.meta.items() if k != "quality"},
        },
    )
    write_episode(root, job.index, episode, overwrite=True)


def _worker_init() -> None:
    """One thread per worker: the workers already fill the cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")  # only when the agent brought it; importing it here costs seconds
    if torch is not None:
        torch.set_num_threads(1)


def _run_star(args) -> EpisodeSummary:
    return run_episode(*args)


def run_episodes(jobs: Iterable[EpisodeJob], factory: AgentFactory, workers: int = 1,
                 record_root: str | Path | None = None) -> Iterator[EpisodeSummary]:
    """Yield summaries as episodes finish (unordered when workers > 1)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = None if record_root is None else str(record_root)
    tasks = [(job, factory, root) for job in jobs]
    if workers == 1:
        for t in tasks:
            yield run_episode(*t)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap_unordered(_run_star, tasks, chunksize=1)
