"""The sim robot's physics clock: a physics tick runs the substeps due on the wall clock, so a tick delayed
by rendering (one executor thread) does not slow the simulated world; before, a soak on two cores ran
physics at 35 of 60 ticks a second, and the arm at 0.6 of the speed the policy was trained on."""

from __future__ import annotations

import pytest

from ros_nodes.sim_robot_node import MAX_CATCH_UP_SUBSTEPS as CAP
from ros_nodes.sim_robot_node import PHYSICS_HZ, substeps_due

pytestmark = pytest.mark.unit


def test_an_on_time_tick_runs_one_period_of_substeps() -> None:
    assert substeps_due(1 / 60, 0, CAP) == (4, 0)
    assert substeps_due(2 / 60, 4, CAP) == (4, 0)


def test_a_late_tick_catches_up_what_the_wall_clock_says_is_due() -> None:
    """35 ticks a second instead of 60 still simulate one second per second."""
    accounted, t = 0, 0.0
    for _ in range(35):
        t += 1 / 35
        run, dropped = substeps_due(t, accounted, CAP)
        assert dropped == 0
        accounted += run
    assert accounted == pytest.approx(PHYSICS_HZ, abs=1)


def test_an_early_tick_runs_nothing() -> None:
    assert substeps_due(0.001, 0, CAP) == (0, 0)
    assert substeps_due(1 / 60 + 0.001, 4, CAP) == (0, 0)


def test_a_stall_longer_than_the_cap_is_dropped_not_replayed() -> None:
    run, dropped = substeps_due(1.0, 0, CAP)
    assert (run, dropped) == (CAP, PHYSICS_HZ - CAP)
    assert substeps_due(1.0 + 1 / 60, run + dropped, CAP) == (4, 0)  # back to one period a tick
