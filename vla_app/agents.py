"""The simulator agent: any decide-callable behind a chunk executor, and its picklable factory.

One agent serves every method: the unsteered policy (one sample), the mean of n samples and every
steering method are all a `SteeredPolicy` (`verifiers.steering.build_steered`), so they differ only
in the `SteeringConfig`. Factories are small picklable values; the policy and scorers load once per
worker process and are cached, so many episodes share them.
"""

from __future__ import annotations

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
    """Asks `decide` for a chunk whenever the executor runs out of plan and executes it step by step;
    `reset` is called at each episode start (an anchor policy forgets its latched anchor there)."""

    needs_images = True

    def __init__(self, decide: Decide, reset: Callable[[], None], executor: ChunkExecutor, seed: int,
                 before_decide: Callable[[object], None] | None = None,
                 finish: Callable[[object, object], None] | None = None) -> None:
        self.decide, self._reset_decider, self.executor = decide, reset, executor
        self.before_decide = before_decide  # env -> None: the oracle's scorer reads the simulator there
        self.finish = finish  # (env, EpisodeSummary) -> None after the episode: recorders write their data
        self.generator = torch.Generator().manual_seed(seed)
        self.picks: list[int] = []  # the selected candidate's index per decision

    def reset(self, env) -> None:
        self.executor.reset()
        self._reset_decider()
        self.picks = []

    def act(self, env) -> np.ndarray:
        if self.executor.needs_plan:
            if self.before_decide is not None:
                self.before_decide(env)
            result = self.decide(env.last_observation, self.generator)
            self.picks.append(result.index)
            self.executor.add_chunk(result.chunk)
        return self.executor.next_action()


def read_policy_config(path: str):
    """A checkpoint's `PolicyConfig` without its weights (what the simulator must render depends on it)."""
    from vla_runtime.checkpoint import parse_json_file
    from vla_runtime.policy.config import PolicyConfig

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

    def __post_init__(self) -> None:
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
        key = (str(Path(self.policy_dir).resolve()), self.steering, self.backend)
        if key not in _PIPELINES:
            from sim.language import rephrase  # the simulator's instructions come from its templates

            _PIPELINES[key] = steered_pipeline(self.policy_dir, self.steering, self.backend, threads=1,
                                               rephrase=rephrase)
        return _PIPELINES[key]

    def __call__(self, seed: int) -> Agent:
        torch.set_num_threads(1)  # one worker per core
        steered = self.pipeline()
        executor = ChunkExecutor(steered.policy.action_spec, self.executor)
        if self.oracle:  # the same candidates, scored by the expert instead of the learned scorers
            from vla_app.oracle import ExpertScorer

            scorer = ExpertScorer(steered.policy.action_spec, np.random.default_rng([seed, 0x0AC1E]))
            steered = SteeredPolicy(steered.policy, steered.proposal, [scorer], Selector(), steered.n, steered.m,
                                    rephrase=steered.rephrase, rephrasings=steered.rephrasings, steps=steered.steps)
            return Agent(steered.act, steered.reset, executor, seed, before_decide=scorer.bind)
        return Agent(steered.act, steered.reset, executor, seed)

    def row_fields(self) -> dict:
        """What `vla eval` writes beside `method` in each result row."""
        s = self.steering
        words = {"rephrasings": s.rephrasings} if s.rephrasings else {}
        if s.margin:
            words["margin"] = s.margin
        if s.steps is not None:
            words["steps"] = s.steps
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
