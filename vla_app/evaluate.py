"""`vla eval`: seeded closed-loop episodes of a policy (or the scripted expert) in the simulator.

Episode k of every task uses seed `seed + k`, so two methods evaluated with
the same arguments see the same scenes (paired comparison).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vla_runtime.io import atomic_write_text
from vla_runtime.stats import wilson_interval

EXECUTORS = ("local", "ray")


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
    store: str | None = None  # per-episode JSON-lines result store: appended as episodes finish, resumed from
    executor: str = "local"  # local worker processes, or "ray" (`vla_app.ray_eval`)
    ray_address: str | None = None  # ray: None starts a local instance; "auto" / HOST:PORT joins a cluster
    max_batch: int = 8  # ray: decisions per inference-server call at most
    max_wait_ms: float = 5.0  # ray: how long a decision waits for others to share its batch

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.max_batch < 1 or not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms a finite number >= 0, got "
                             f"max_batch={self.max_batch} max_wait_ms={self.max_wait_ms}")
        if self.executor == "ray" and self.policy == "expert":
            raise ValueError("the scripted expert needs no inference server: run it with executor local")
        if self.episodes < 1 or self.workers < 1 or self.gifs < 0:
            raise ValueError(f"episodes and workers must be >= 1 and gifs >= 0, got episodes={self.episodes} "
                             f"workers={self.workers} gifs={self.gifs}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        from vla_runtime.backends import check_backend

        check_backend(self.backend)
        if self.backend == "remote":
            from vla_runtime.backends.remote import is_url

            if not (is_url(self.policy) or (self.policy.endswith(".json") and Path(self.policy).is_file())):
                raise ValueError(f"the remote backend's policy is the server's ws://HOST:PORT URL or a foreign "
                                 f"server's .json description, got {self.policy!r}")
        elif self.policy != "expert" and not Path(self.policy).is_dir():
            raise FileNotFoundError(f"policy checkpoint folder {self.policy} does not exist")


def evaluate(cfg: EvalConfig, executor=None, progress: bool = True, factory=None) -> list[dict]:
    """factory: a `vla_app.agents.AgentFactory` (any steering); None = the checkpoint's base policy executed
    as `cfg.samples` says (or the scripted expert). With `cfg.store`, episodes already stored for this
    configuration (same models) are skipped and every finished one is appended, so a killed run resumes."""
    from sim.env import EnvConfig
    from sim.experts import ExpertFactory
    from vla_app.agents import AgentFactory, unsteered
    from vla_app.runner import EpisodeJob
    from vla_runtime.execution import ExecutorConfig

    if factory is None and cfg.policy == "expert":
        factory, env_options, method, extra = ExpertFactory("expert"), {"image_size": (64, 64)}, "expert", {
            "samples": cfg.samples, "backend": cfg.backend}
    else:
        factory = factory or AgentFactory(cfg.policy, unsteered(cfg.samples), executor or ExecutorConfig(),
                                          backend=cfg.backend)
        env_options, method, extra = factory.env_options(), factory.method, factory.row_fields()
    records = _Records(cfg, factory, method, extra)
    jobs = [EpisodeJob(index=i * cfg.episodes + k, seed=cfg.seed + k,
                       env=EnvConfig(task=t, variation=cfg.variation, arm=cfg.arm, **{"depth": False, **env_options}),
                       meta={"quality": method})
            for i, t in enumerate(cfg.tasks) for k in range(cfg.episodes)
            if (t, cfg.seed + k) not in records.done]
    record = cfg.record
    tmp = None
    if record is None and cfg.gifs > 0:
        tmp = tempfile.TemporaryDirectory()
        record = tmp.name
    if record is not None:
        from vla_runtime.dataset import write_dataset_header

        write_dataset_header(record, {"eval_policy": cfg.policy, "variation": cfg.variation, "seed": cfg.seed,
                                      "tasks": list(cfg.tasks), "episodes_per_task": cfg.episodes, "method": method})
    outcomes: dict[str, dict[int, bool]] = defaultdict(dict)  # task -> seed -> success
    stats: dict[str, list[dict]] = defaultdict(list)  # task -> the agent's per-episode stats
    for r in records.previous:
        outcomes[r["key"]["task"]][r["key"]["seed"]] = r["success"]
        if r["stats"]:
            stats[r["key"]["task"]].append(r["stats"])
    with _episodes(cfg, factory, jobs, record) as results:
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc=f"eval {method} {cfg.variation}", unit="ep")
        for s in results:
            outcomes[s.task][s.seed] = s.success
            if s.stats:
                stats[s.task].append(s.stats)
            records.append(s)
    rows = []
    for task in cfg.tasks:
        v = [outcomes[task][seed] for seed in sorted(outcomes[task])]
        lo, hi = wilson_interval(sum(v), len(v))
        rows.append({"task": task, "variation": cfg.variation, "method": method, "episodes": len(v),
                     "successes": sum(v), "success_rate": sum(v) / len(v), "ci95": [round(lo, 4), round(hi, 4)],
                     "arm": cfg.arm, "seed": cfg.seed, "policy": cfg.policy, **extra,
                     **_aggregate(stats[task]),
                     "outcomes": [int(x) for x in v]})  # per episode, seeds seed, seed+1, ...: paired tests
    if cfg.gifs > 0:
        _write_gifs(record, cfg)
    if tmp is not None:
        tmp.cleanup()
    return rows


@contextmanager
def _episodes(cfg: EvalConfig, factory, jobs: list, record: str | None) -> Iterator:
    """The summaries of `jobs` as they finish, from local worker processes or from Ray."""
    if not jobs:  # everything was in the store already: start no workers
        yield iter(())
        return
    if cfg.executor == "local":
        from vla_app.runner import run_episodes

        yield run_episodes(jobs, factory, workers=cfg.workers, record_root=record)
        return
    from vla_app.ray_eval import RayConfig, RayEvaluation

    with RayEvaluation(factory, RayConfig(workers=cfg.workers, address=cfg.ray_address, max_batch=cfg.max_batch,
                                          max_wait_ms=cfg.max_wait_ms)) as run:
        yield run.episodes(jobs, record)


class _Records:
    """`cfg.store`'s view for one evaluation: the episodes this configuration already finished (same models)
    and the appending of new ones with their provenance. Without a store it holds nothing."""

    def __init__(self, cfg: EvalConfig, factory, method: str, extra: dict) -> None:
        from vla_app.store import ResultStore, code_revision, config_id

        self.cfg, self.method = cfg, method
        # What was run, not where the models lie: the same configuration of other models keeps its id (a
        # regression compares exactly that); the models themselves are told apart by their fingerprints.
        self.config = {**extra, **_executor_fields(factory)} if cfg.policy != "expert" else {"policy": "expert"}
        self.config_id = config_id(self.config)
        self.store = ResultStore(cfg.store) if cfg.store else None
        self.previous: list[dict] = []
        self.done: set[tuple[str, int]] = set()
        if self.store is None:
            return
        revision, dirty = code_revision()
        self.models = _fingerprints(cfg, factory)
        self.provenance = {"revision": revision, "dirty": dirty, "models": self.models, "policy_dir": cfg.policy,
                           "executor": cfg.executor}
        tasks = set(cfg.tasks)
        seeds = range(cfg.seed, cfg.seed + cfg.episodes)
        for r in self.store.records():
            k = r["key"]
            if (k["variation"], k["method"], k["config_id"], k["arm"]) != (cfg.variation, method, self.config_id,
                                                                            cfg.arm):
                continue
            if k["task"] not in tasks or k["seed"] not in seeds or (k["task"], k["seed"]) in self.done:
                continue
            if r["provenance"].get("models") != self.models:
                raise ValueError(f"store {cfg.store} holds {method} episodes of this configuration from other models "
                                 f"({r['provenance'].get('models')} vs {self.models}); use a new store")
            self.previous.append(r)
            self.done.add((k["task"], k["seed"]))

    def append(self, s) -> None:
        if self.store is None:
            return
        from datetime import datetime, timezone

        self.store.append({
            "schema": 1, "key": {"variation": self.cfg.variation, "method": self.method, "config_id": self.config_id,
                                 "task": s.task, "arm": self.cfg.arm, "seed": int(s.seed)},
            "success": bool(s.success), "steps": int(s.steps), "instruction": s.instruction, "stats": s.stats,
            "config": self.config,
            "provenance": {**self.provenance, "worker": s.worker, "duration_s": round(s.seconds, 3),
                           "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}})


def _executor_fields(factory) -> dict:
    """How chunks are executed, when it is not in the row fields already (replanning, ensembling)."""
    from dataclasses import asdict

    executor = getattr(factory, "executor", None)
    return {"execution": asdict(executor)} if executor is not None else {}


def _fingerprints(cfg: EvalConfig, factory) -> dict[str, str]:
    """The models an evaluation ran: the policy and the steering's learned scorers."""
    from vla_app.store import fingerprint

    if cfg.policy == "expert":
        return {}
    if cfg.backend == "remote":
        from vla_runtime.backends.remote import RemotePolicy

        remote = RemotePolicy(factory.policy_dir)
        models = {"policy": f"remote:{remote.metadata.get('policy_fingerprint') or remote.url}"}
    else:
        models = {"policy": fingerprint(factory.policy_dir)}
    steering = factory.steering
    for name in ("verifier", "value"):
        if name in steering.scorer_names:
            models[name] = fingerprint(getattr(steering, name))
    return models


def _aggregate(stats: list[dict]) -> dict:
    """Over a task's episodes, whatever its agent reports: a policy's worst chunk-switch jump (m, the max)
    and held steps, a scripted expert's induced misses and empty grasps (counts, summed)."""
    keys = sorted(set().union(*stats)) if stats else []
    return {k: round(max(s[k] for s in stats if k in s), 5) if k == "max_boundary_jump"
            else sum(int(s[k]) for s in stats if k in s) for k in keys}


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
