"""When the policy node's control steps run (pure Python, no ROS: the node's timer and guard condition call it).

Steps follow a grid one control period apart, checked by a timer `fine_ticks` times a period. Two events move
the grid, so that a new chunk's first command leaves as its plan lands instead of up to a period later:
- a plan landing at most `max_early` periods before its step is due runs that step at once (unless the
  running command has not had 1 - max_early periods yet), and the grid restarts from the landing;
- a takeover step whose plan is still in flight waits for it up to `max_late` periods (then the old chunk
  runs on, and the plan's first command leaves when it lands, if that is `max_early` before the next step).
So every command lasts at least 1 - max_early periods, the one before a chunk switch at most 1 + max_late;
every other step lasts one period. A step that runs after its successor was due, or never runs, is a deadline miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ControlClock:
    period_s: float
    max_early: float = 0.5  # periods
    max_late: float = 0.5  # periods
    fine_ticks: int = 4  # timer callbacks per period
    next_due: float | None = None  # s: when the next step is due
    first: float | None = None  # s: the first step since `restart`
    last_run: float = -math.inf  # s: when the last step ran
    ticks: int = 0  # steps run or missed
    misses: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"period_s must be a positive number, got {self.period_s}")
        for name in ("max_early", "max_late"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1) periods, got {value}")
        if self.fine_ticks < 1:
            raise ValueError(f"fine_ticks must be >= 1, got {self.fine_ticks}")

    @property
    def due(self) -> float:
        """When the step running now (or last run) was due."""
        return self.next_due - self.period_s

    @property
    def timer_period_s(self) -> float:
        return self.period_s / self.fine_ticks

    def restart(self) -> None:
        """Activation: the next timer callback runs a step and starts the grid."""
        self.next_due = self.first = None

    def on_timer(self, now: float, awaiting_plan: bool = False) -> float | None:
        """A timer callback -> the due time of the step to run now, or None. `awaiting_plan`: this would be a
        takeover step and its plan is in flight (it then waits up to `max_late`)."""
        if self.next_due is None:
            self.first = self.next_due = now
            return now
        if now < self.next_due - self.timer_period_s / 2:
            return None
        if awaiting_plan and now < self.next_due + self.max_late * self.period_s:
            return None
        return self.next_due

    def on_landing(self, now: float) -> float | None:
        """A new plan landed -> `now` when its first command should leave now (the grid restarts here), or
        None when its step is due more than `max_early` away (it runs when due)."""
        if self.next_due is None or now < self.next_due - self.max_early * self.period_s:
            return None
        if now - self.last_run < (1 - self.max_early) * self.period_s:
            return None  # the running command (a late takeover's fallback) would be cut too short
        return now

    def run(self, now: float, due: float) -> float:
        """A step due at `due` starts now -> its due time after counting the steps skipped since (misses)."""
        while now >= due + self.period_s:
            self.ticks += 1
            self.misses += 1
            due += self.period_s
        self.ticks += 1
        self.next_due, self.last_run = due + self.period_s, now
        return due

    def finished(self, now: float, due: float) -> None:
        """The step due at `due` published its command at `now`: a miss when its successor was due by then."""
        if now > due + self.period_s:
            self.misses += 1

    def rate(self, now: float) -> float:
        """Steps per second since the first (0 before two)."""
        if self.first is None or self.ticks < 2:
            return 0.0
        return self.ticks / max(now - self.first, 1e-9)
