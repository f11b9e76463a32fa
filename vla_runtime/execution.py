"""Turning action chunks into per-step commands: replanning, plan-ahead, continuity, CogACT ensemble, clamps.

A decision takes time. A chunk planned from an observation taken at step s lands d steps later and its
first d actions belong to steps already executed, so they are skipped (`add_chunk(start=s)`). Two
settings keep that from hurting:
- `lead_steps` (plan ahead): a plan is due `lead_steps` before the replan point, so with a decision
  latency of `lead_steps` steps the new chunk takes over exactly at the replan point instead of the old
  chunk being stretched (past its end: the arm starves and holds);
- `blend_steps` (continuity with the committed prefix, the aim of real-time chunking, applied after
  sampling): actions are end-effector deltas, so skipping the new chunk's first d actions loses the
  motion they planned, and the old chunk's actions executed meanwhile moved the arm elsewhere. The
  difference (what the skipped actions would have moved, less what the committed ones did) is spread
  over the new chunk's first `blend_steps` executed actions: from there on the arm follows the new
  chunk's path as planned from its observation, and the correction never lands as one jump. With it,
  the first action of a new chunk also changes the translation by at most `max_translation` (and each
  rotation axis by at most `max_rotation`) from the action executed before it: the continuity bound.
`boundary_jumps` records, per chunk switch, how far the executed translation moved from one step to the
next (m): the figure the continuity goal is stated in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_runtime.types import ActionSpec


@dataclass(frozen=True)
class ExecutorConfig:
    replan_every: int = 4  # k: ask for a new chunk every k steps (<= chunk length)
    ensemble: bool = False  # CogACT adaptive action ensemble over overlapping chunks
    ensemble_alpha: float = 0.1  # temperature of the cosine-similarity weights
    max_translation: float = 0.055  # metres per step (norm of dx, dy, dz); > sqrt(3) * 0.03 so in-bound moves pass
    max_rotation: float = 0.3  # radians per step, per axis
    lead_steps: int = 0  # plan ahead: a plan is due this many steps before the replan point
    blend_steps: int = 0  # continuity: spread the skipped-prefix correction over this many steps (0: none)

    def __post_init__(self) -> None:
        if self.replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {self.replan_every}")
        if self.lead_steps < 0 or self.blend_steps < 0:
            raise ValueError(f"lead_steps and blend_steps must be >= 0, got {self.lead_steps} and "
                             f"{self.blend_steps}")
        if self.blend_steps and self.ensemble:
            raise ValueError("blend_steps and ensemble both smooth chunk switches: choose one")
        if not math.isfinite(self.ensemble_alpha):
            raise ValueError(f"ensemble_alpha must be finite, got {self.ensemble_alpha}")
        if not (self.max_translation > 0 and self.max_rotation > 0):
            raise ValueError(f"step limits must be positive, got translation={self.max_translation} "
                             f"rotation={self.max_rotation}")


def adaptive_ensemble(preds: np.ndarray, alpha: float) -> np.ndarray:
    """CogACT: preds (K, A) for the same step, newest first -> weighted mean.

    Weights are softmax(alpha * cos(newest, pred_j)): older predictions that
    agree with the newest one count more, disagreeing ones fade out.
    """
    newest = preds[0]
    norms = np.linalg.norm(preds, axis=1) * np.linalg.norm(newest)
    cos = np.where(norms > 1e-12, preds @ newest / np.maximum(norms, 1e-12), 0.0)
    w = np.exp(alpha * cos)
    w /= w.sum()
    return (w[:, None] * preds).sum(axis=0)


def average_chunks(samples: np.ndarray, gripper_index: int) -> np.ndarray:
    """samples (n, H, A) -> (H, A): the mean chunk, gripper set by majority vote (open/closed).

    One diffusion sample is a random draw; early in an episode the draws scatter widely in xy and a
    single one often stops centimetres off the object. Their mean is the policy's best estimate
    (measured in benchmarks/results/policy.md); the gripper is voted, not averaged, so it stays
    a decisive open/close command.
    """
    if samples.ndim != 3 or samples.shape[0] < 1:
        raise ValueError(f"samples must be (n >= 1, H, A), got {samples.shape}")
    chunk = samples.mean(axis=0)
    chunk[:, gripper_index] = gripper_vote(samples, gripper_index)
    return chunk


def gripper_vote(samples: np.ndarray, gripper_index: int) -> np.ndarray:
    """samples (n, H, A) -> (H,) 1.0 (open) where more than half the samples open (> 0.5), else 0.0
    (a tie closes)."""
    return (np.mean(samples[:, :, gripper_index] > 0.5, axis=0) > 0.5).astype(samples.dtype)


def check_replan(replan_every: int, chunk_length: int) -> None:
    """A plan must come before the chunk runs out."""
    if replan_every > chunk_length:
        raise ValueError(f"replan_every={replan_every} exceeds the chunk length {chunk_length}")


class ChunkExecutor:
    """Queue of chunk predictions; `next_action()` pops one safe per-step command."""

    def __init__(self, spec: ActionSpec, config: ExecutorConfig | None = None) -> None:
        self.spec = spec
        self.configure(config or ExecutorConfig())
        self.reset()

    def configure(self, config: ExecutorConfig) -> None:
        """Take new settings (a running node's live parameters); the queued chunks stay."""
        check_replan(config.replan_every, self.spec.chunk_length)
        self.config = config

    def reset(self) -> None:
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (step the chunk starts at, (H, A))
        self._t = 0
        self._last_plan = None
        self._last_action: np.ndarray | None = None  # (A,) the action executed last
        self._executed: deque[np.ndarray] = deque(maxlen=self.spec.chunk_length)  # the last executed actions
        self.switching = False  # the next action is the first from a new chunk
        self.boundary_jumps: list[float] = []  # m: |translation change| at each chunk switch

    @property
    def horizon(self) -> int:
        """Steps each chunk runs before the next takes over: `replan_every`, or fewer when the chunk's
        actions from index `lead_steps` on would run out first."""
        return max(min(self.config.replan_every, self.spec.chunk_length - self.config.lead_steps), 1)

    @property
    def needs_plan(self) -> bool:
        """A plan is due: none yet, or the next takeover is at most `lead_steps` steps away."""
        if self._last_plan is None:
            return True
        return self._t - self._last_plan >= max(self.horizon - self.config.lead_steps, 0)

    @property
    def replan_step(self) -> int | None:
        """The step at which the next chunk should take over (None before the first plan)."""
        return None if self._last_plan is None else self._last_plan + self.horizon

    @property
    def step(self) -> int:
        """Steps executed since `reset()`."""
        return self._t

    def covers_step(self) -> bool:
        """Whether some chunk has an action for the current step (an asynchronous planner may be late)."""
        return any(self._t - start < self.spec.chunk_length for start, _ in self._chunks)

    def add_chunk(self, chunk: np.ndarray, start: int | None = None) -> None:
        """start: the step the chunk's first action belongs to (default: now). An asynchronous planner passes
        the step at which it took its observation, so actions for steps executed while it ran are skipped."""
        c = self.spec.validate(chunk)
        if c.shape != (self.spec.chunk_length, self.spec.dim):
            raise ValueError(f"chunk must be ({self.spec.chunk_length}, {self.spec.dim}), got {c.shape}")
        start = self._t if start is None else int(start)
        if not 0 <= start <= self._t:
            raise ValueError(f"chunk start {start} must lie within 0..{self._t} (the current step)")
        if self.config.blend_steps and start < self._t:
            c = self._catch_up(c, start)
        self._chunks.appendleft((start, c))
        self.switching = True
        self._last_plan = self._t  # the takeover step: the replan point counts from here
        # Keep only chunks that still cover the current step.
        while self._chunks and self._chunks[-1][0] + self.spec.chunk_length <= self._t:
            self._chunks.pop()
        if not self.config.ensemble:
            while len(self._chunks) > 1:
                self._chunks.pop()

    def _catch_up(self, new: np.ndarray, start: int) -> np.ndarray:
        """new (H, A) with the motion of its skipped actions, less the motion executed since `start`, spread
        over its first `blend_steps` actions from now (motion dims only; the gripper is the new chunk's)."""
        d = self._t - start
        if d > len(self._executed) or d >= self.spec.chunk_length:
            return new  # the executed prefix is not known (a reset since) or nothing of the chunk is left
        keep = [i for i in range(self.spec.dim) if i != self.spec.gripper_index]
        executed = np.stack(list(self._executed)[-d:])
        error = new[:d, keep].sum(axis=0) - executed[:, keep].sum(axis=0)
        b = min(self.config.blend_steps, self.spec.chunk_length - d)
        new = new.copy()
        new[d:d + b, keep] += error / b
        return new

    def _continuous(self, a: np.ndarray, last: np.ndarray) -> np.ndarray:
        """a (A,) moved towards `last` so the change is within one step's bound (translation norm, rotation
        per axis); clamped again, so it stays a valid action."""
        a = a.copy()
        change = a[:3] - last[:3]
        norm = float(np.linalg.norm(change))
        if norm > self.config.max_translation:
            a[:3] = last[:3] + change * (self.config.max_translation / norm)
        r = self.config.max_rotation
        a[3:6] = last[3:6] + np.clip(a[3:6] - last[3:6], -r, r)
        return self.clamp(a)

    def next_action(self) -> np.ndarray:
        preds = [c[self._t - start] for start, c in self._chunks if self._t - start < self.spec.chunk_length]
        if not preds:
            raise RuntimeError("no chunk covers this step: call add_chunk() when needs_plan is True")
        a = adaptive_ensemble(np.stack(preds), self.config.ensemble_alpha) if self.config.ensemble else preds[0]
        self._t += 1
        a = self.clamp(a)
        if self.switching and self._last_action is not None and self.config.blend_steps:
            a = self._continuous(a, self._last_action)
        if self.switching and self._last_action is not None:
            self.boundary_jumps.append(float(np.linalg.norm(a[:3] - self._last_action[:3])))
        self.switching = False
        self._last_action = a
        self._executed.append(a)
        return a

    def upcoming(self) -> np.ndarray:
        """(K, A) the clamped actions the newest chunk holds from the current step to its end (what
        `next_action` will return while no other chunk arrives; without the ensemble)."""
        if self.config.ensemble:
            raise RuntimeError("upcoming() is undefined with the ensemble: its actions depend on later chunks")
        if not self.covers_step():
            return np.zeros((0, self.spec.dim), np.float32)
        start, chunk = self._chunks[0]
        return np.stack([self.clamp(a) for a in chunk[self._t - start:]])

    def idle(self) -> np.ndarray:
        """No chunk covers this step (the plan is late): a hold action (no motion, the gripper as last
        commanded, open before any), and the step still counts, since time passed."""
        a = np.zeros(self.spec.dim, np.float32)
        a[self.spec.gripper_index] = 1.0 if self._last_action is None else self._last_action[self.spec.gripper_index]
        self._t += 1
        self._last_action = a
        self._executed.append(a)
        return a

    def clamp(self, action: np.ndarray) -> np.ndarray:
        a = self.spec.validate(action).copy()
        norm = float(np.linalg.norm(a[:3]))
        if norm > self.config.max_translation:
            a[:3] *= self.config.max_translation / norm
        a[3:6] = np.clip(a[3:6], -self.config.max_rotation, self.config.max_rotation)
        return a
