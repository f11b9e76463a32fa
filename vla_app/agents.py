"""The simulator agent: any decide-callable behind a chunk executor, and its picklable factory.

One agent serves every method: the unsteered policy (one sample), the mean of n samples and every
steering method are all a `SteeredPolicy` (`verifiers.steering.build_steered`), so they differ only
in the `SteeringConfig`. Factories are small picklable values; the policy and scorers load once per
worker process and are cached, so many episodes share them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from verifiers.pipeline import SteeredPolicy, StepResult
from verifiers.selection import Selector
from verifiers.steering import LEARNED_SCORERS, SteeringConfig, steered_pipeline
from vla_runtime.execution import ChunkExecutor, ExecutorConfig
from vla_runtime.types import Observation

Decide = Callable[[Observation, torch.Generator], StepResult]  # (observation, generator) -> the chosen chunk


class Agent:
    """Asks `decide` for a chunk whenever the executor needs a plan and executes it step by step;
    `reset` is called at each episode start (an anchor policy forgets its latched anchor there).

    `delay_steps` models a decision that takes time, in whole control steps: the chunk decided from the
    observation at step s takes over at step s + delay_steps (its first actions, for steps already
    executed, are skipped), the old chunk runs on meanwhile, and the arm holds where no chunk covers a
    step. 0 is the synchronous loop (a decision takes no simulated time)."""

    needs_images = True

    def __init__(self, decide: Decide, reset: Callable[[], None], executor: ChunkExecutor, seed: int,
                 before_decide: Callable[[object], None] | None = None,
                 finish: Callable[[object, object], None] | None = None, delay_steps: int = 0) -> None:
        if delay_steps < 0:
            raise ValueError(f"delay_steps must be >= 0, got {delay_steps}")
        self.decide, self._reset_decider, self.executor = decide, reset, executor
        self.before_decide = before_decide  # env -> None: the oracle's scorer reads the simulator there
        self.finish = finish  # (env, EpisodeSummary) -> None after the episode: recorders write their data
        self.delay_steps = delay_steps
        self.generator = torch.Generator().manual_seed(seed)
        self.picks: list[int] = []  # the selected candidate's index per decision
        self._pending: tuple[np.ndarray, int] | None = None  # (chunk, observation step) still "computing"
        self.idle_steps = 0

    def reset(self, env) -> None:
        self.executor.reset()
        self._reset_decider()
        self.picks = []
        self._pending = None
        self.idle_steps = 0

    def act(self, env) -> np.ndarray:
        ex = self.executor
        if self._pending is not None and ex.step >= self._pending[1] + self.delay_steps:
            chunk, start = self._pending
            self._pending = None
            ex.add_chunk(chunk, start=start)
        if ex.needs_plan and self._pending is None:
            if self.before_decide is not None:
                self.before_decide(env)
            result = self.decide(env.last_observation, self.generator)
            self.picks.append(result.index)
            if self.delay_steps == 0:
                ex.add_chunk(result.chunk)
            else:
                self._pending = (result.chunk, ex.step)
        if not ex.covers_step():
            self.idle_steps += 1
            return ex.idle()
        return ex.next_action()

    def episode_stats(self) -> dict:
        """What `vla eval` aggregates beside success: the largest executed translation change at a chunk
        switch (m) and the steps the arm held waiting for a late plan."""
        jumps = self.executor.boundary_jumps
        return {"max_boundary_jump": max(jumps) if jumps else 0.0, "idle_steps": self.idle_steps}


def read_policy_config(path: str):
    """A checkpoint's `PolicyConfig` without its weights (what the simulator must render depends on it); a
    served policy's (ws:// URL, or a foreign server's .json description) from the server."""
    from vla_runtime.backends.remote import RemotePolicy, is_remote
    from vla_runtime.checkpoint import parse_json_file
    from vla_runtime.policy.config import PolicyConfig

    if is_remote(path) and not Path(path).is_dir():
        return RemotePolicy(str(path)).config

    return parse_json_file(Path(path) / "config.json", PolicyConfig.from_dict)


# steering method -> the name of its candidate recipe, as the oracle's rows report it
ORACLE_PROPOSALS: dict[str, Callable[[SteeringConfig], str]] = {
    "robomonkey": lambda s: "gaussian+samples" if s.keep_samples else "gaussian",
    "vgps": lambda s: "samples",
}

_PIPELINES: dict[tuple, object] = {}  # per worker process: (policy folder, steering, backend) -> SteeredPolicy


@dataclass(frozen=True)
class AgentFactory:
    """Picklable: episode seed -> `Agent` running `steering` over the policy checkpoint on `backend`."""

    policy_dir: str
    steering: SteeringConfig = field(default_factory=lambda: SteeringConfig(method="none"))
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    backend: str = "torch"  # vla_runtime.backends.BACKENDS
    oracle: bool = False  # score the steering's candidates by distance to the scripted expert (`vla_app.oracle`)
    decision_ms: float = 0.0  # simulated decision latency: the chunk lands ceil(ms / control period) steps late

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decision_ms) and self.decision_ms >= 0):
            raise ValueError(f"decision_ms must be a finite number >= 0, got {self.decision_ms}")
        if self.oracle and self.steering.method not in ORACLE_PROPOSALS:
            raise ValueError(f"the oracle picks among a steering method's candidates: use one of "
                             f"{sorted(ORACLE_PROPOSALS)}, not {self.steering.method!r}")

    @property
    def method(self) -> str:
        """The method column of `vla eval` rows: the mean of n samples is the base policy executed so."""
        if self.oracle:
            return "oracle"
        return "base" if self.steering.method in ("none", "mean") else self.steering.method

    def pipeline(self):
        """The `SteeredPolicy`, built once per process."""
        key = (self.policy_dir if self.backend == "remote" else str(Path(self.policy_dir).resolve()), self.steering,
               self.backend)
        if key not in _PIPELINES:
            from sim.language import rephrase  # the simulator's instructions come from its templates

            _PIPELINES[key] = steered_pipeline(self.policy_dir, self.steering, self.backend, threads=1,
                                               rephrase=rephrase)
        return _PIPELINES[key]

    def delay_steps(self, control_hz: float) -> int:
        """Control steps a decision of `decision_ms` spans: its chunk takes over at the first tick after it."""
        return math.ceil(self.decision_ms * control_hz / 1000.0 - 1e-9)

    def __call__(self, seed: int) -> Agent:
        torch.set_num_threads(1)  # one worker per core
        steered = self.pipeline()
        spec = steered.policy.action_spec
        delay = self.delay_steps(spec.control_hz)
        executor = ChunkExecutor(spec, self.executor)
        if self.oracle:  # the same candidates, scored by the expert instead of the learned scorers
            from vla_app.oracle import ExpertScorer

            scorer = ExpertScorer(steered.policy.action_spec, np.random.default_rng([seed, 0x0AC1E]))
            steered = SteeredPolicy(steered.policy, steered.proposal, [scorer], Selector(), steered.n, steered.m,
                                    rephrase=steered.rephrase, rephrasings=steered.rephrasings, steps=steered.steps)
            return Agent(steered.act, steered.reset, executor, seed, before_decide=scorer.bind, delay_steps=delay)
        return Agent(steered.act, steered.reset, executor, seed, delay_steps=delay)

    def row_fields(self) -> dict:
        """What `vla eval` writes beside `method` in each result row."""
        s = self.steering
        words = {"rephrasings": s.rephrasings} if s.rephrasings else {}
        if s.margin:
            words["margin"] = s.margin
        if s.steps is not None:
            words["steps"] = s.steps
        ex = self.executor
        if self.decision_ms or ex.lead_steps or ex.blend_steps:
            words.update(decision_ms=self.decision_ms, lead_steps=ex.lead_steps, blend_steps=ex.blend_steps)
        if self.oracle:
            return {"backend": self.backend, "n": s.n, "m": s.m, "proposal": ORACLE_PROPOSALS[s.method](s), **words}
        if s.method in ("none", "mean"):
            return {"samples": s.n if s.method == "mean" else 1, "backend": self.backend, **words}
        return {"backend": self.backend, "n": s.n, "m": s.m, "selection": s.selection, "temperature": s.temperature,
                "safety": s.safety, "weights": dict(s.weights), "keep_samples": s.keep_samples,
                "scorers": list(s.scorer_names),
                **{name: getattr(s, name) for name in LEARNED_SCORERS[s.method]}, **words}

    def env_options(self) -> dict:
        """What the simulator must render for this policy (`EnvConfig` fields): the main camera's size, the
        wrist camera when the policy reads one (rendered at the same size, resized by the policy), and
        depth for the safety scorer."""
        cfg = read_policy_config(self.policy_dir)  # the config alone: no weights loaded here
        if cfg.camera != "static" or cfg.wrist_camera not in ("", "wrist"):
            raise ValueError(f"the simulator renders cameras 'static' and 'wrist'; policy {self.policy_dir} "
                             f"reads {list(cfg.cameras)}")
        options = {"image_size": tuple(cfg.image_size), "wrist_camera": bool(cfg.wrist_camera)}
        return {**options, "depth": True} if self.steering.safety else options


def unsteered(samples: int = 1, steps: int | None = None) -> SteeringConfig:
    """The base policy's execution: its one sample, or (samples > 1) the mean of that many; steps: their
    DDIM steps (None: the policy's own)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if samples == 1:
        return SteeringConfig(method="none", steps=steps)
    return SteeringConfig(method="mean", n=samples, steps=steps)
