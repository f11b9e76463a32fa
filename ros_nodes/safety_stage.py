"""The safety stage every joint command passes: the role of a safety controller in front of the arm.

joint_trajectory_controller interpolates whatever it is sent and enforces neither velocity nor
acceleration limits, so the node does it before a command leaves. Per control period, per joint:
- a target that is not finite, or further than `jump_factor` periods at the URDF's (scaled) velocity
  limit away, is a
  violation: the arm holds (brakes to rest at the acceleration limit) instead of following it;
- otherwise the target is clamped to the position limits, the step to the velocity limit (scaled by the
  blend-in ramp, which grows from 0 to 1 over `ramp_s` after every `reset`: enable, e-stop reset,
  activation, episode reset), the velocity change to the acceleration limit, and the speed to what can
  still stop before a position limit.
Every intervention is reported by kind, for the node's diagnostics to count. The stage is a pure
function of its `SafetyState`, so a whole chunk can be limited ahead (`limit_path`) and the state
committed point by point as the points are executed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HELD_NONFINITE = "held_nonfinite"
HELD_JUMP = "held_jump"
CLAMPED_POSITION = "clamped_position"
CLAMPED_VELOCITY = "clamped_velocity"
CLAMPED_ACCELERATION = "clamped_acceleration"
CLAMPED_BRAKING = "clamped_braking"
INTERVENTIONS = (HELD_NONFINITE, HELD_JUMP, CLAMPED_POSITION, CLAMPED_VELOCITY, CLAMPED_ACCELERATION,
                 CLAMPED_BRAKING)


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits in the order of `names`: rad (m for prismatic), rad/s, rad/s^2; inf where the model has
    none (the stage's `max_joint_step` then caps the speed)."""

    names: tuple[str, ...]
    lower: np.ndarray  # (J,)
    upper: np.ndarray  # (J,)
    velocity: np.ndarray  # (J,) > 0
    acceleration: np.ndarray  # (J,) > 0

    def __post_init__(self) -> None:
        j = len(self.names)
        for field in ("lower", "upper", "velocity", "acceleration"):
            if np.shape(getattr(self, field)) != (j,):
                raise ValueError(f"{field} must have one entry per joint ({j}), got {np.shape(getattr(self, field))}")
        if np.any(self.lower > self.upper):
            raise ValueError(f"lower limits above upper: {self.lower} > {self.upper}")
        if not (np.all(self.velocity > 0) and np.all(self.acceleration > 0)):
            raise ValueError(f"velocity and acceleration limits must be positive, got {self.velocity} and "
                             f"{self.acceleration}")


@dataclass(frozen=True)
class SafetyConfig:
    period_s: float  # control period: one command per period
    velocity_scale: float = 1.0  # fraction of the URDF velocity limits used
    max_joint_step: float = math.inf  # rad per period, a cap below the URDF's velocity limit
    ramp_s: float = 1.0  # blend-in: the velocity limit grows from 0 to full over this after a reset
    jump_factor: float = 4.0  # a target more than this many URDF-speed periods away is a violation (hold)

    def __post_init__(self) -> None:
        for name in ("period_s", "velocity_scale", "max_joint_step", "jump_factor"):
            value = getattr(self, name)
            if not (value > 0 and not math.isnan(value)):
                raise ValueError(f"{name} must be positive, got {value}")
        if not math.isfinite(self.period_s) or self.velocity_scale > 1:
            raise ValueError(f"period_s must be finite and velocity_scale <= 1, got {self.period_s} and "
                             f"{self.velocity_scale}")
        if not (math.isfinite(self.ramp_s) and self.ramp_s >= 0):
            raise ValueError(f"ramp_s must be a finite number >= 0, got {self.ramp_s}")


@dataclass(frozen=True)
class SafetyState:
    q: np.ndarray  # (J,) the last command
    v: np.ndarray  # (J,) its velocity, rad/s
    ticks: int = 0  # commands since the last reset (the ramp's clock)


def _stopping_speed(room: np.ndarray, a_max: np.ndarray, dt: float) -> np.ndarray:
    """The fastest speed for this period from which braking by a_max * dt every later period stops within
    `room`: the inverse of D(v) = dt * sum_i max(v - i a_max dt, 0). The continuous sqrt(2 a room) is too
    fast in discrete time: the arm reaches the limit still moving and stops in one period, beyond a_max."""
    room = np.asarray(room, dtype=np.float64)
    u = a_max * dt * dt
    with np.errstate(invalid="ignore"):
        n = np.floor(np.sqrt(0.25 + 2 * room / u) - 0.5)  # whole braking periods D covers
        v = (room + u * n * (n + 1) / 2) / (dt * (n + 1))
    return np.where(np.isfinite(room), v, np.inf)


def _bounds(lim: JointLimits, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The position limits widened to include `q`: a joint measured beyond a limit (within the commander's
    margin) moves back at the velocity limit instead of jumping onto the limit in one period."""
    return np.minimum(lim.lower, q), np.maximum(lim.upper, q)


class SafetyStage:
    def __init__(self, limits: JointLimits, config: SafetyConfig) -> None:
        self.limits, self.config = limits, config
        self.v_max = np.minimum(limits.velocity * config.velocity_scale, config.max_joint_step / config.period_s)
        # The violation threshold: the model's own speed (not the max_joint_step cap, which a normal
        # command exceeds and is clamped to); the cap where the model states none.
        urdf = limits.velocity * config.velocity_scale
        self.v_jump = np.where(np.isfinite(urdf), urdf, self.v_max)
        self.state: SafetyState | None = None
        self.last_events: list[str] = []

    def reset(self, q: np.ndarray) -> None:
        """Start from the measured joints at rest; the blend-in ramp starts again."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != self.v_max.shape or not np.all(np.isfinite(q)):
            raise ValueError(f"reset needs {self.v_max.shape[0]} finite joint positions, got {q}")
        self.state = SafetyState(q.copy(), np.zeros_like(q))

    def ramp(self, ticks: int) -> float:
        """The blend-in factor of the velocity limit at this many commands after a reset."""
        n = self.config.ramp_s / self.config.period_s
        return 1.0 if n <= 1 else min(1.0, (ticks + 1) / n)

    def step(self, state: SafetyState, target: np.ndarray) -> tuple[SafetyState, list[str]]:
        """One period towards `target` (J,) -> (the new state, whose `q` is the command; interventions)."""
        dt, lim = self.config.period_s, self.limits
        v_max = self.v_max * self.ramp(state.ticks)
        a_max = lim.acceleration
        target = np.asarray(target, dtype=np.float64)
        events = []
        if target.shape != state.q.shape or not np.all(np.isfinite(target)):
            events.append(HELD_NONFINITE)
        elif np.any(np.abs(target - state.q) > self.config.jump_factor * self.v_jump * dt):
            events.append(HELD_JUMP)
        held = bool(events)
        if held:  # brake to rest
            v_des = np.zeros_like(state.q)
        else:
            clipped = np.clip(target, lim.lower, lim.upper)
            if not np.array_equal(clipped, target):
                events.append(CLAMPED_POSITION)
            v_des = (clipped - state.q) / dt
            if np.any(np.abs(v_des) > v_max + 1e-12):
                events.append(CLAMPED_VELOCITY)
                v_des = np.clip(v_des, -v_max, v_max)
        dv = np.clip(v_des - state.v, -a_max * dt, a_max * dt)
        if not held and np.any(np.abs(v_des - state.v) > a_max * dt + 1e-12):
            events.append(CLAMPED_ACCELERATION)
        v = state.v + dv
        # Never faster than what can still stop before a position limit, braking at a_max per period.
        room_up = np.maximum(lim.upper - state.q, 0.0)
        room_down = np.maximum(state.q - lim.lower, 0.0)
        v_stop = _stopping_speed(np.where(v > 0, room_up, room_down), a_max, dt)
        if np.any(np.abs(v) > v_stop + 1e-12):
            events.append(CLAMPED_BRAKING)
            v = np.clip(v, -v_stop, v_stop)
        q = np.clip(state.q + v * dt, *_bounds(lim, state.q))
        return SafetyState(q, (q - state.q) / dt, state.ticks + 1), events

    def command(self, target: np.ndarray) -> np.ndarray:
        """Limit one command and commit it -> the joint command (J,); its interventions in `last_events`."""
        if self.state is None:
            raise RuntimeError("command() before reset(): the stage needs the measured joints")
        self.state, self.last_events = self.step(self.state, target)
        return self.state.q.copy()

    def limit_path(self, targets: np.ndarray) -> tuple[np.ndarray, list[SafetyState], list[list[str]]]:
        """targets (K, J), one per period from now -> (commands (K, J), the state after each, the
        interventions at each), without committing: the caller commits each state as its point runs."""
        if self.state is None:
            raise RuntimeError("limit_path() before reset(): the stage needs the measured joints")
        state, states, events = self.state, [], []
        for target in np.asarray(targets, dtype=np.float64):
            state, point_events = self.step(state, target)
            states.append(state)
            events.append(point_events)
        return np.stack([s.q for s in states]), states, events

    def brake_path(self, max_points: int = 50) -> tuple[np.ndarray, list[SafetyState]]:
        """From the current state to rest at the acceleration limit (a hold): (K, J) commands, K >= 1."""
        if self.state is None:
            raise RuntimeError("brake_path() before reset(): the stage needs the measured joints")
        dt, a_max = self.config.period_s, self.limits.acceleration
        state, states = self.state, []
        for _ in range(max_points):
            v = state.v - np.clip(state.v, -a_max * dt, a_max * dt)
            q = np.clip(state.q + v * dt, *_bounds(self.limits, state.q))
            state = SafetyState(q, (q - state.q) / dt, state.ticks + 1)
            states.append(state)
            if not np.any(state.v):
                break
        return np.stack([s.q for s in states]), states
