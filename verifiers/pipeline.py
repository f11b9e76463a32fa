"""`SteeredPolicy`: encode once, sample n chunks, propose m candidates, score them, select one.

The unsteered policy is the same pipeline with no scorers: n=1 executes the policy's sample, n > 1 the
mean of its n samples (`execution.average_chunks`), the free baseline every steering method must beat.
Timings per stage come back with every decision, so the ROS node and `vla bench` report where the time goes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch

from verifiers.selection import Selector
from vla_runtime.execution import average_chunks
from vla_runtime.policy.protocol import EpisodeEncoder

log = logging.getLogger(__name__)


class Scorer(Protocol):
    name: str
    reads: str  # "token" (the policy's conditioning token), "observation" (images, depth, instruction) or
    #             "simulator" (privileged state): a token scorer steers only a policy that provides its token

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """ctx: the decision's `Context` (token + observation); candidates (m, H, A) -> (m,) scores."""
        ...


class Proposal(Protocol):
    def propose(self, samples: np.ndarray, m: int, generator: torch.Generator | None) -> np.ndarray: ...


# What `StepResult.timings_ms` may hold: the fixed stages and each scorer by name.
DECISION_STAGES = ("encode", "sample", "propose", "verifier", "value", "safety", "select")


@dataclass
class StepResult:
    chunk: np.ndarray  # (H, A) the selected chunk
    candidates: np.ndarray  # (m', H, A) what was scored
    scores: dict[str, np.ndarray]  # scorer name -> (m',)
    index: int  # the selected candidate; -1 when nothing scored was executable and the mean ran instead
    timings_ms: dict[str, float] = field(default_factory=dict)  # encode, sample, propose, <scorer>..., select
    fallback: str = ""  # why the mean of the samples ran instead of a candidate ("" = it did not)
    context: object = None  # the decision's `Context` (token + observation), for recorders


class SteeredPolicy:
    """One episode's steering loop. Call `reset()` between episodes: an anchor policy latches its first
    decision's anchor (`PolicyConfig.anchor`) until then."""

    def __init__(self, policy, proposal: Proposal, scorers: list[Scorer], selector: Selector, n: int, m: int,
                 rephrase: Callable[[str, int], list[str]] | None = None, rephrasings: int = 0,
                 steps: int | None = None) -> None:
        """rephrase(instruction, k) -> up to k other wordings: with rephrasings k > 0 the n samples are split
        over the instruction and its rephrasings, each encoded on its own (CoVer: more diverse candidates).
        steps: the samples' DDIM steps (None: the policy's own); fewer make candidates cheaper."""
        if n < 1 or m < 1:
            raise ValueError(f"n and m must be >= 1, got n={n} m={m}")
        if rephrasings < 0 or rephrasings >= n or (rephrasings and rephrase is None):
            raise ValueError(f"rephrasings must be in 0..n-1 (n={n}) and need a rephraser, got {rephrasings}")
        self.rephrase, self.rephrasings = rephrase, rephrasings
        names = [s.name for s in scorers]
        if len(set(names)) != len(names):
            raise ValueError(f"scorer names must be unique, got {names}")
        self.policy, self.proposal, self.scorers, self.selector = policy, proposal, list(scorers), selector
        self.n, self.m, self.steps = n, m, steps
        self.episode = EpisodeEncoder(policy)

    def reset(self) -> None:
        self.episode.reset()

    def act(self, obs, generator: torch.Generator | None) -> StepResult:
        t = {}
        t0 = time.perf_counter()
        ctx = self.episode.encode(obs)
        wordings = self.rephrase(obs.instruction, self.rephrasings) if self.rephrasings else []
        contexts = [ctx] + [self.episode.encode(replace(obs, instruction=w)) for w in wordings]
        t["encode"] = _ms(t0)
        t0 = time.perf_counter()
        counts = [len(part) for part in np.array_split(np.arange(self.n), len(contexts))]
        samples = np.concatenate([self.policy.sample(c, k, generator, steps=self.steps)
                                  for c, k in zip(contexts, counts)])  # (n, H, A)
        t["sample"] = _ms(t0)
        return self._choose(ctx, samples, generator, t)

    def act_batch(self, observations: list, anchors: list[np.ndarray | None],
                  generators: list[torch.Generator]) -> list[StepResult]:
        """B decisions of B different episodes, as B `act` calls would make them (each episode's generator
        is drawn in the same order), but with one encoder pass and one denoising run when the policy batches
        (`encode_batch` / `sample_batch`): how one model copy serves many simulators. anchors[b]: episode
        b's latched anchor (None before its first decision); each result's `context.anchor` is the one to
        latch. Stateless: nothing of an episode stays here, so a restarted server answers the same."""
        if not (len(observations) == len(anchors) == len(generators)):
            raise ValueError(f"need one anchor and one generator per observation, got {len(observations)}, "
                             f"{len(anchors)} and {len(generators)}")
        if self.rephrasings or not hasattr(self.policy, "encode_batch"):
            results = []
            for obs, anchor, generator in zip(observations, anchors, generators):
                self.episode.anchor = anchor
                results.append(self.act(obs, generator))
            self.episode.anchor = None
            return results
        t0 = time.perf_counter()
        contexts = self.policy.encode_batch(observations, anchors)
        encode_ms = _ms(t0) / len(contexts)
        t0 = time.perf_counter()
        shape = (self.n, self.policy.config.horizon, self.policy.config.action_dim)
        noises = [torch.randn(shape, generator=g, dtype=c.cond.dtype) for c, g in zip(contexts, generators)]
        batch = self.policy.sample_batch(contexts, noises, steps=self.steps)  # [(n, H, A)] * B
        sample_ms = _ms(t0) / len(contexts)
        return [self._choose(ctx, samples, g, {"encode": encode_ms, "sample": sample_ms})
                for ctx, samples, g in zip(contexts, batch, generators)]

    def _choose(self, ctx, samples: np.ndarray, generator: torch.Generator | None, t: dict) -> StepResult:
        """samples (n, H, A) -> proposals, scores and the pick (or the mean when nothing scores)."""
        if not self.scorers:  # unsteered: the policy's one sample, or the mean of its n samples
            return StepResult(self._mean(samples), samples, {}, 0, t, context=ctx)
        t0 = time.perf_counter()
        candidates = self.proposal.propose(samples, self.m, generator)  # (m', H, A)
        finite = np.isfinite(candidates).all(axis=(1, 2))
        t["propose"] = _ms(t0)
        if not finite.all():  # never handed to a scorer, never executed
            log.warning("steering: dropped %d of %d candidates holding NaN or inf", int((~finite).sum()),
                        len(candidates))
            candidates = candidates[finite]
            if len(candidates) == 0:
                return StepResult(self._mean(samples), candidates, {}, -1, t, fallback="every candidate was non-finite",
                                  context=ctx)
        scores = {}
        for scorer in self.scorers:
            t0 = time.perf_counter()
            s = np.asarray(scorer.score(ctx, candidates), dtype=np.float64)
            if s.shape != (len(candidates),):
                raise ValueError(f"scorer {scorer.name!r} returned shape {s.shape} for {len(candidates)} candidates")
            scores[scorer.name] = s
            t[scorer.name] = _ms(t0)
        t0 = time.perf_counter()
        combined = self.selector.combine(scores)  # (m',)
        if np.all(np.isneginf(combined)):  # nothing safe to pick: never an unsafe pick
            log.warning("steering: every candidate was rejected (%s); executing the mean of the %d samples",
                        ", ".join(n for n, s in scores.items() if np.isneginf(s).all()), len(samples))
            t["select"] = _ms(t0)
            return StepResult(self._mean(samples), candidates, scores, -1, t, fallback="every candidate was rejected",
                              context=ctx)
        index = self.selector.pick(combined, generator)
        t["select"] = _ms(t0)
        return StepResult(candidates[index], candidates, scores, index, t, context=ctx)

    def _mean(self, samples: np.ndarray) -> np.ndarray:
        """The policy's own execution: its one sample, or the mean of its samples with the gripper voted."""
        return samples[0] if len(samples) == 1 else average_chunks(samples, self.policy.action_spec.gripper_index)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
