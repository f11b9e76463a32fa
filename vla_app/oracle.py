"""Oracle steering: the ceiling of a verifier over a candidate recipe (simulator only).

At every decision the scripted expert is asked, from the privileged simulator state, what it would do
next (`sim.experts.expert_chunk`, a closed-loop lookahead rolled back afterwards), and the candidate
nearest its chunk (NRMSE, each dimension over its bounds) is executed: what a verifier that predicts the
expert's choice perfectly would do with the same candidates (our verifiers are trained to predict exactly
that). Where the oracle is barely above the mean of the samples, the candidates, not the verifier, are
what limits steering.
"""

from __future__ import annotations

import numpy as np

from sim.env import ArmEnv
from sim.experts import ExpertConfig, ScriptedExpert, expert_chunk
from verifiers.preferences import nrmse
from vla_runtime.types import ActionSpec


class ExpertScorer:
    """A `Scorer` that reads the simulator: -NRMSE to the expert's chunk from the current state. `bind(env)`
    before each decision (the agent's `before_decide` hook); one instance per episode."""

    name = "oracle"
    reads = "simulator"  # the privileged state, through `bind(env)`

    def __init__(self, spec: ActionSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.expert = ScriptedExpert(ExpertConfig(), rng)
        self.env: ArmEnv | None = None
        self.last_expert: np.ndarray | None = None  # (H, A) the chunk the last decision was scored against

    def bind(self, env: ArmEnv) -> None:
        self.env = env

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """candidates (m, H, A) -> (m,) -NRMSE to the expert's chunk from the bound env's state."""
        if self.env is None:
            raise RuntimeError("ExpertScorer.score before bind(env): the oracle reads the simulator's state")
        self.last_expert = expert_chunk(self.env, self.expert, self.spec.chunk_length)
        return -nrmse(candidates, self.last_expert, self.spec.low_array(), self.spec.high_array())
