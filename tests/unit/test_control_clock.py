"""`ControlClock`: when the policy node's control steps run (fixed grid, early/late plans, deadline misses)."""

import pytest

from ros_nodes.control_clock import ControlClock

pytestmark = pytest.mark.unit

PERIOD = 0.1


def ticks(clock: ControlClock, start: float, end: float, awaiting: bool = False) -> list[tuple[float, float]]:
    """Drive the timer from start to end; run every step it asks for -> [(time, due)]."""
    out = []
    n = round((end - start) / clock.timer_period_s)
    for i in range(n + 1):
        now = start + i * clock.timer_period_s
        due = clock.on_timer(now, awaiting)
        if due is not None:
            due = clock.run(now, due)
            clock.finished(now, due)
            out.append((round(now, 6), round(due, 6)))
    return out


def test_steps_follow_a_fixed_grid_one_period_apart() -> None:
    clock = ControlClock(PERIOD)
    steps = ticks(clock, 0.0, 0.5)
    assert [t for t, _ in steps] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert clock.ticks == 6 and clock.misses == 0
    assert clock.due == pytest.approx(0.5)  # the step run last was due at 0.5
    assert clock.rate(0.5) == pytest.approx(12.0)  # 6 steps over 0.5 s from the first


def test_a_plan_landing_shortly_before_its_step_commands_at_once_and_restarts_the_grid() -> None:
    clock = ControlClock(PERIOD)
    ticks(clock, 0.0, 0.1)  # steps at 0.0 and 0.1: the next is due at 0.2
    assert clock.on_landing(0.17) == pytest.approx(0.17)  # 30 ms early, within half a period
    clock.run(0.17, 0.17)
    assert clock.next_due == pytest.approx(0.27)  # the grid restarts from the landing
    assert clock.on_timer(0.2) is None  # the old grid's tick does not run a second step
    assert clock.misses == 0


def test_a_plan_landing_far_too_early_waits_for_its_step() -> None:
    clock = ControlClock(PERIOD)
    ticks(clock, 0.0, 0.1)
    assert clock.on_landing(0.12) is None  # 80 ms early: that would cut the running command to 20 ms
    assert clock.on_timer(0.2) == pytest.approx(0.2)


def test_a_takeover_waits_for_its_plan_at_most_half_a_period() -> None:
    clock = ControlClock(PERIOD)
    ticks(clock, 0.0, 0.1)
    assert clock.on_timer(0.2, awaiting_plan=True) is None
    assert clock.on_timer(0.225, awaiting_plan=True) is None
    assert clock.on_landing(0.24) == pytest.approx(0.24)  # landed 40 ms late: its command leaves now
    clock.run(0.24, 0.24)
    assert clock.misses == 0 and clock.next_due == pytest.approx(0.34)
    # A plan that does not land within half a period: the old chunk runs on, on the old grid.
    assert clock.on_timer(0.34, awaiting_plan=True) is None
    assert clock.on_timer(0.39, awaiting_plan=True) == pytest.approx(0.34)
    clock.run(0.39, 0.34)
    # landing 5 ms after that fallback command: it would last 5 ms, so the plan waits for the next step
    assert clock.on_landing(0.395) is None
    assert clock.on_landing(0.445) == pytest.approx(0.445)  # 55 ms after it: past its minimum


def test_skipped_steps_and_late_commands_are_deadline_misses() -> None:
    clock = ControlClock(PERIOD)
    ticks(clock, 0.0, 0.0)
    due = clock.run(0.35, clock.on_timer(0.35))  # steps due at 0.1 and 0.2 never ran; 0.3 runs late
    assert due == pytest.approx(0.3)
    assert clock.misses == 2 and clock.ticks == 4
    clock.finished(0.45, due)  # its command left after the step due at 0.4
    assert clock.misses == 3


def test_restart_starts_a_new_grid_at_the_next_timer_callback() -> None:
    clock = ControlClock(PERIOD)
    ticks(clock, 0.0, 0.2)
    clock.restart()
    assert clock.on_landing(5.0) is None  # nothing to move before the first step
    assert clock.on_timer(5.013) == pytest.approx(5.013)
    assert clock.ticks == 3  # counts carry on over restarts


@pytest.mark.parametrize("kwargs, needle", [({"period_s": 0.0}, "period_s"), ({"max_early": 1.0}, "max_early"),
                                            ({"max_late": -0.1}, "max_late"), ({"fine_ticks": 0}, "fine_ticks")])
def test_bad_settings_are_refused_naming_the_value(kwargs, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        ControlClock(**{"period_s": PERIOD, **kwargs})
