"""The policy node's safety state: e-stop latch, stale-input watchdog and message ordering (pure Python,
unit-tested without ROS).

Commands flow only in state `OK`. An e-stop latches until an explicit `reset()`, so a bouncing e-stop
button or a dropped `false` message can never restart motion; the node keeps one `Watchdog` for its whole
life, so no lifecycle transition (cleanup, configure, activate) clears the latch either. `reset()` is
refused while the e-stop still reads pressed. Stale inputs clear themselves as soon as fresh data arrive
(the node then replans from the fresh observation).

Staleness is judged by the header stamp and by the arrival time, whichever is older: a sender whose clock
runs ahead (stamps in the future) cannot keep the arm moving after its stream stops, and one whose clock
lags holds the arm (and is reported) rather than acting on old data. `judge_stamp` classifies each stamped
message: older than the newest one kept (a late or repeated frame) -> dropped; stamped ahead of its arrival
or already stale on arrival -> kept but reported (clock skew).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OK, ESTOP, STALE_IMAGE, STALE_JOINTS, WAITING = "OK", "ESTOP", "STALE_IMAGE", "STALE_JOINTS", "WAITING"
IN_ORDER, OUT_OF_ORDER, FUTURE, PAST = "in_order", "out_of_order", "future", "past"


@dataclass(frozen=True)
class WatchdogConfig:
    image_timeout_s: float = 0.5  # newest image older than this (by stamp or by arrival) -> hold
    joint_state_timeout_s: float = 0.5  # newest joint state older than this -> hold
    max_clock_skew_s: float = 0.1  # a stamp further ahead of its arrival than this is reported

    def __post_init__(self) -> None:
        for name in ("image_timeout_s", "joint_state_timeout_s", "max_clock_skew_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {v}")


def judge_stamp(stamp: float, received: float, newest: tuple[float, float] | None, timeout_s: float,
                max_skew_s: float) -> str:
    """How a message stamped `stamp` that arrived at `received` relates to the newest one kept
    (`newest` = (stamp, arrival) or None), all seconds on the node's clock:

    - OUT_OF_ORDER: not newer than the newest kept while that one is still fresh (a late frame between
      fresh ones would roll the observation back): drop it. Once the newest kept is stale by arrival, an
      older stamp is accepted, so a sender whose clock jumped back (a restart) recovers after a timeout.
    - FUTURE: stamped more than `max_skew_s` after its arrival; PAST: already older than `timeout_s` on
      arrival. Both are kept (the watchdog also judges by arrival) and reported as clock skew.
    - IN_ORDER otherwise.
    """
    if newest is not None and stamp <= newest[0] and received - newest[1] <= timeout_s:
        return OUT_OF_ORDER
    if stamp - received > max_skew_s:
        return FUTURE
    if received - stamp > timeout_s:
        return PAST
    return IN_ORDER


class Watchdog:
    def __init__(self, config: WatchdogConfig) -> None:
        self.config = config
        self.estopped = False
        self.pressed = False  # what the e-stop topic said last
        self.estop_count = 0

    def estop(self, engaged: bool) -> None:
        """`false` never clears the latch: only `reset()` does."""
        self.pressed = engaged
        if engaged:
            if not self.estopped:
                self.estop_count += 1
            self.estopped = True

    def reset(self) -> str | None:
        """Clear the latch; refused (-> the reason) while the e-stop still reads pressed, so a reset cannot
        restart motion under a pressed button whose `true` was only sent once."""
        if self.pressed:
            return "the e-stop still reads pressed (last estop message true): release it first"
        self.estopped = False
        return None

    def state(self, now: float, image_stamp: float | None, joints_stamp: float | None,
              instruction: str, image_received: float | None = None) -> tuple[str, str]:
        """(state, reason). Stamps and arrival times are seconds on the node's clock; None = never received.
        The image's age is the larger of its stamp's and its arrival's (`image_received`, when given)."""
        if self.estopped:
            return ESTOP, "e-stop engaged; call ~/reset to clear"
        if image_stamp is None or joints_stamp is None or not instruction:
            missing = [n for n, v in (("image", image_stamp), ("joint_states", joints_stamp),
                                      ("instruction", instruction or None)) if v is None]
            return WAITING, f"waiting for {', '.join(missing)}"
        limit = self.config.image_timeout_s
        stamp_age = now - image_stamp
        arrival_age = stamp_age if image_received is None else now - image_received
        if stamp_age > limit:
            return STALE_IMAGE, f"newest image is {stamp_age:.2f} s old (timeout {limit} s)"
        if arrival_age > limit:
            skew = f"; stamped {-stamp_age:.2f} s in the future" if stamp_age < 0 else ""
            return STALE_IMAGE, f"newest image is {arrival_age:.2f} s old by arrival (timeout {limit} s{skew})"
        age = now - joints_stamp
        if age > self.config.joint_state_timeout_s:
            limit = self.config.joint_state_timeout_s
            return STALE_JOINTS, f"newest joint state is {age:.2f} s old (timeout {limit} s)"
        return OK, "ok"
