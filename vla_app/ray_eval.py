"""`vla eval --executor ray`: simulator episodes as Ray tasks, every decision from one batched inference actor.

The shards are episodes (task, variation, arm, seed, method). Simulator workers are Ray tasks (one CPU
each, retried when their process dies); the policy and scorers live once, in an `InferenceServer` actor
that gathers the decisions of many environments into one encoder pass and one denoising run (up to
`max_batch`, waiting at most `max_wait_ms` for a batch to fill): how one GPU serves many CPU nodes.

The server is stateless between calls: a request carries the episode's latched anchor and its generator
state, and the reply carries them back. Outcomes are therefore those of the local executor on the same
seeds (bit for bit with `max_batch` 1; batched encoder and denoiser runs differ by float rounding,
about 1e-7), and a restarted server answers a retried request exactly as the first would have.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from verifiers.pipeline import StepResult
from vla_app.agents import Agent, AgentFactory, read_policy_config
from vla_app.runner import EpisodeJob, EpisodeSummary, run_episode
from vla_runtime.execution import ChunkExecutor


@dataclass(frozen=True)
class RayConfig:
    workers: int = 2  # simulator tasks in flight
    address: str | None = None  # None: start a local instance; "auto" or HOST:PORT: join that cluster
    max_batch: int = 8  # decisions per server call at most
    max_wait_ms: float = 5.0  # how long the first decision of a batch waits for others
    task_retries: int = 3  # a simulator task whose process died runs again (its episode from the start)
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_batch < 1 or self.task_retries < 0:
            raise ValueError(f"workers and max_batch must be >= 1 and task_retries >= 0, got workers={self.workers} "
                             f"max_batch={self.max_batch} task_retries={self.task_retries}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {self.max_wait_ms}")
        if self.address is not None and self.address != "auto" and _host_port(self.address) is None:
            raise ValueError(f"ray address must be 'auto' or HOST:PORT, got {self.address!r}")


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


class InferenceServer:
    """Decisions for many episodes from one `SteeredPolicy` (a Ray actor; plain Python here so it can be
    tested and benchmarked without Ray)."""

    def __init__(self, factory: AgentFactory, max_batch: int = 8, max_wait_ms: float = 5.0) -> None:
        torch.set_num_threads(1)
        self.steered = factory.pipeline()
        self.max_batch, self.max_wait_s = max_batch, max_wait_ms / 1e3
        self._queue: list[tuple[tuple, asyncio.Future]] = []
        self._timer: asyncio.Handle | None = None
        self.batches: list[int] = []  # the size of every batch served

    def decide_many(self, requests: list[tuple]) -> list[tuple]:
        """requests [(observation, anchor (4,) | None, generator state)] -> [(chunk (H, A), index, anchor,
        generator state)]: the episodes' own decisions, batched."""
        generators = []
        for _, _, state in requests:
            g = torch.Generator()
            g.set_state(torch.from_numpy(np.asarray(state, np.uint8).copy()))
            generators.append(g)
        results = self.steered.act_batch([r[0] for r in requests], [r[1] for r in requests], generators)
        self.batches.append(len(requests))
        return [(r.chunk, r.index, r.context.anchor if r.context is not None else None, g.get_state().numpy())
                for r, g in zip(results, generators)]

    async def decide(self, observation, anchor, state) -> tuple:
        """One episode's decision; it waits up to `max_wait_ms` for others to share the batch."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(((observation, anchor, state), future))
        if len(self._queue) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        if not batch:
            return
        try:
            replies = self.decide_many([request for request, _ in batch])
        except Exception as e:  # every waiting episode learns why, not only the first
            for _, future in batch:
                future.set_exception(e)
        else:
            for (_, future), reply in zip(batch, replies):
                future.set_result(reply)
        if self._queue:
            self._timer = asyncio.get_running_loop().call_soon(self._flush)

    def served(self) -> list[int]:
        return list(self.batches)


class RemoteDecider:
    """The `Agent`'s decide-callable on a simulator worker: one episode's decisions from the server. The
    episode state (anchor, generator) stays here and travels with each request."""

    def __init__(self, server) -> None:
        self.server = server
        self.anchor: np.ndarray | None = None

    def reset(self) -> None:
        self.anchor = None

    def __call__(self, observation, generator: torch.Generator) -> StepResult:
        import ray

        chunk, index, anchor, state = ray.get(self.server.decide.remote(observation, self.anchor,
                                                                        generator.get_state().numpy()))
        generator.set_state(torch.from_numpy(np.asarray(state, np.uint8).copy()))
        if self.anchor is None:
            self.anchor = anchor
        return StepResult(chunk, np.empty((0, *chunk.shape), np.float32), {}, index)


@dataclass(frozen=True)
class RemoteAgentFactory:
    """Picklable: episode seed -> an `Agent` whose decisions come from the server (no model on the worker)."""

    factory: AgentFactory
    server: object  # the InferenceServer actor handle

    def __call__(self, seed: int) -> Agent:
        torch.set_num_threads(1)
        spec = read_policy_config(self.factory.policy_dir).action_spec
        decider = RemoteDecider(self.server)
        return Agent(decider, decider.reset, ChunkExecutor(spec, self.factory.executor), seed,
                     delay_steps=self.factory.delay_steps(spec.control_hz))


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail in seconds, naming the address, instead of Ray's long retry loop."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e}") from None


class RayEvaluation:
    """`with RayEvaluation(factory, cfg) as run: for summary in run.episodes(jobs): ...`. Starts (or joins)
    Ray, starts the server, and leaves a Ray it started when done."""

    def __init__(self, factory: AgentFactory, cfg: RayConfig) -> None:
        if factory.oracle:
            raise ValueError("the oracle scorer reads each simulator beside the policy; run it with --executor local")
        self.factory, self.cfg = factory, cfg
        self.server = None
        self._started = False

    def __enter__(self) -> RayEvaluation:
        import ray

        if self.cfg.address not in (None, "auto"):
            _check_reachable(self.cfg.address, self.cfg.connect_timeout_s)
        if not ray.is_initialized():
            try:
                if self.cfg.address is None:
                    ray.init(num_cpus=self.cfg.workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=self.cfg.address, log_to_driver=False, configure_logging=False)
            except ConnectionError as e:
                raise ConnectionError(f"cannot join the Ray cluster at {self.cfg.address!r}: {e}") from None
            self._started = True
        # num_cpus 0: the server shares the node with the simulators here; on a cluster give it num_gpus=1.
        actor = ray.remote(InferenceServer).options(num_cpus=0, max_restarts=-1, max_task_retries=-1,
                                                    max_concurrency=1000)
        self.server = actor.remote(self.factory, self.cfg.max_batch, self.cfg.max_wait_ms)
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self.server is not None:
            ray.kill(self.server)
            self.server = None
        if self._started:
            ray.shutdown()

    def episodes(self, jobs: Iterable[EpisodeJob], record_root: str | None = None) -> Iterator[EpisodeSummary]:
        """Yield each episode's summary once, as it finishes (unordered); at most `workers` run at a time."""
        import ray

        task = ray.remote(run_episode).options(num_cpus=1, max_retries=self.cfg.task_retries)
        agents = RemoteAgentFactory(self.factory, self.server)
        pending, waiting = list(jobs), {}
        while pending or waiting:
            while pending and len(waiting) < self.cfg.workers:
                job = pending.pop(0)
                waiting[task.remote(job, agents, record_root)] = job
            done, _ = ray.wait(list(waiting), num_returns=1)
            for ref in done:
                del waiting[ref]
                yield ray.get(ref)
