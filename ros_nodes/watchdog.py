"""The policy node's safety state: e-stop latch and stale-input watchdog (pure Python, unit-tested without ROS).

Commands flow only in state `OK`. An e-stop latches until an explicit `reset()`, so a bouncing e-stop
button or a dropped `false` message can never restart motion; stale inputs clear themselves as soon as
fresh data arrives (the node then replans from the fresh observation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OK, ESTOP, STALE_IMAGE, STALE_JOINTS, WAITING = "OK", "ESTOP", "STALE_IMAGE", "STALE_JOINTS", "WAITING"


@dataclass(frozen=True)
class WatchdogConfig:
    image_timeout_s: float = 0.5  # newest image older than this -> hold
    joint_state_timeout_s: float = 0.5  # newest joint state older than this -> hold

    def __post_init__(self) -> None:
        for name in ("image_timeout_s", "joint_state_timeout_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")


class Watchdog:
    def __init__(self, config: WatchdogConfig) -> None:
        self.config = config
        self.estopped = False
        self.estop_count = 0

    def estop(self, engaged: bool) -> None:
        """`false` never clears the latch: only `reset()` does."""
        if engaged:
            if not self.estopped:
                self.estop_count += 1
            self.estopped = True

    def reset(self) -> None:
        self.estopped = False

    def state(self, now: float, image_stamp: float | None, joints_stamp: float | None,
              instruction: str) -> tuple[str, str]:
        """(state, reason). Stamps are seconds on the node's clock; None = never received."""
        if self.estopped:
            return ESTOP, "e-stop engaged; call ~/reset to clear"
        if image_stamp is None or joints_stamp is None or not instruction:
            missing = [n for n, v in (("image", image_stamp), ("joint_states", joints_stamp),
                                      ("instruction", instruction or None)) if v is None]
            return WAITING, f"waiting for {', '.join(missing)}"
        age = now - image_stamp
        if age > self.config.image_timeout_s:
            return STALE_IMAGE, f"newest image is {age:.2f} s old (timeout {self.config.image_timeout_s} s)"
        age = now - joints_stamp
        if age > self.config.joint_state_timeout_s:
            limit = self.config.joint_state_timeout_s
            return STALE_JOINTS, f"newest joint state is {age:.2f} s old (timeout {limit} s)"
        return OK, "ok"
