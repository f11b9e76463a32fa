"""ros_nodes.safety_stage: the velocity, acceleration and position limits every joint command passes, the
blend-in ramp, holds on violations, and the events reported for each intervention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros_nodes.arm_commander import ArmCommander, CommanderConfig
from ros_nodes.safety_stage import (
    CLAMPED_ACCELERATION,
    CLAMPED_BRAKING,
    CLAMPED_POSITION,
    CLAMPED_VELOCITY,
    HELD_JUMP,
    HELD_NONFINITE,
    INTERVENTIONS,
    JointLimits,
    SafetyConfig,
    SafetyStage,
    SafetyState,
)
from sim.arms import DOWN_QUAT

pytestmark = pytest.mark.unit

DT = 0.01  # s: a 100 Hz control period
ACCEL = 10.0  # rad/s^2 given to every Panda joint (URDF has no acceleration limit)
HUGE_ACCEL = 1e6  # rad/s^2: an acceleration limit that never binds, to isolate the velocity clamp
TOL = 1e-9  # rad of float slack in the position and step checks
V_TOL = 1e-7  # rad/s of float slack in velocity checks (position rounding divided by DT)
PANDA_VELOCITY = np.array([2.175] * 4 + [2.61] * 3)  # rad/s, panda.urdf's <limit velocity>


@pytest.fixture(scope="module")
def commander():
    c = ArmCommander(CommanderConfig())
    yield c
    c.close()


@pytest.fixture(scope="module")
def panda(commander) -> JointLimits:
    return commander.joint_limits(ACCEL)


@pytest.fixture(scope="module")
def panda_fast(commander) -> JointLimits:
    """The Panda's URDF limits with an acceleration limit that never binds."""
    return commander.joint_limits(HUGE_ACCEL)


@pytest.fixture(scope="module")
def mid(panda) -> np.ndarray:
    """A pose well inside every joint's limits."""
    return (panda.lower + panda.upper) / 2


def toy_limits(acceleration=(10.0, 20.0)) -> JointLimits:
    """Two joints with different limits, so a limit applied to the wrong joint shows."""
    return JointLimits(("a", "b"), np.array([-1.0, -2.0]), np.array([1.0, 1.5]), np.array([1.0, 2.0]),
                       np.array(acceleration, dtype=np.float64))


def stage(limits: JointLimits, q0: np.ndarray, **config) -> SafetyStage:
    s = SafetyStage(limits, SafetyConfig(**{"period_s": DT, "ramp_s": 0.0, **config}))
    s.reset(q0)
    return s


def run_at_speed(s: SafetyStage, direction: np.ndarray, periods: int) -> None:
    """Command towards a target 2 full-speed steps ahead each period (never a jump): the stage reaches full
    speed in `direction`."""
    for _ in range(periods):
        s.command(s.state.q + 2 * direction * s.v_max * DT)


# --------------------------------------------------------------------------- limits from the URDF


def test_panda_limits_come_from_the_urdf(panda) -> None:
    assert panda.names == tuple(f"panda_joint{i}" for i in range(1, 8))
    np.testing.assert_array_equal(panda.velocity, PANDA_VELOCITY)
    np.testing.assert_array_equal(panda.acceleration, np.full(7, ACCEL))
    assert np.all(panda.lower < panda.upper) and panda.upper[3] == 0.0  # the elbow only bends one way


# --------------------------------------------------------------------------- velocity, acceleration, ramp


def test_velocity_is_clamped_per_joint(panda_fast, mid) -> None:
    s = stage(panda_fast, mid)
    q = s.command(mid + 3 * PANDA_VELOCITY * DT)  # 3 full-speed steps away: within the jump factor 4
    np.testing.assert_allclose(q - mid, PANDA_VELOCITY * DT, rtol=0, atol=TOL)
    assert s.last_events == [CLAMPED_VELOCITY]
    half = stage(panda_fast, mid, velocity_scale=0.5)
    np.testing.assert_allclose(half.command(mid - PANDA_VELOCITY * DT) - mid, -0.5 * PANDA_VELOCITY * DT,
                               rtol=0, atol=TOL)


def test_max_joint_step_caps_the_urdf_velocity(panda_fast, mid) -> None:
    cap = 0.005  # rad per period: 0.5 rad/s, below every URDF limit
    s = stage(panda_fast, mid, max_joint_step=cap)
    np.testing.assert_allclose(s.v_max, np.full(7, cap / DT))
    q = s.command(mid + 3 * cap)  # 3 capped steps: followed (the jump test uses the capped speed too)
    np.testing.assert_allclose(q - mid, np.full(7, cap), rtol=0, atol=TOL)
    assert s.last_events == [CLAMPED_VELOCITY]


def test_a_small_step_inside_every_limit_passes_unchanged() -> None:
    s = stage(toy_limits((1e6, 1e6)), np.zeros(2))
    target = np.array([0.003, -0.004])
    np.testing.assert_array_equal(s.command(target), target)
    assert s.last_events == []


def test_acceleration_is_clamped_until_full_speed() -> None:
    lim = toy_limits()
    s = stage(lim, np.zeros(2))
    dv = lim.acceleration * DT  # the most the velocity may change per period: [0.1, 0.2] rad/s
    for k in range(1, 15):
        before = s.state.q
        s.command(before + 3 * s.v_max * DT)
        np.testing.assert_allclose(s.state.v, np.minimum(k * dv, lim.velocity), rtol=0, atol=V_TOL)
        np.testing.assert_allclose(s.state.q - before, s.state.v * DT, rtol=0, atol=TOL)
        if k == 1:
            assert CLAMPED_ACCELERATION in s.last_events and CLAMPED_VELOCITY in s.last_events
    np.testing.assert_allclose(s.state.v, lim.velocity, rtol=0, atol=V_TOL)  # joint a after 10, b after 10


def test_blend_in_ramp_after_every_reset() -> None:
    lim = toy_limits((1e6, 1e6))
    ramp_s = 0.1  # 10 periods
    s = stage(lim, np.zeros(2), ramp_s=ramp_s)
    ramp_periods = round(ramp_s / DT)
    for k in range(ramp_periods + 3):
        before = s.state.q
        s.command(before + 3 * lim.velocity * DT)
        fraction = min(1.0, (k + 1) / ramp_periods)
        np.testing.assert_allclose(s.state.q - before, fraction * lim.velocity * DT, rtol=0, atol=TOL)
    s.reset(s.state.q)  # e-stop reset, activation, episode reset: the ramp starts again
    before = s.state.q
    s.command(before + 3 * lim.velocity * DT)
    np.testing.assert_allclose(s.state.q - before, lim.velocity * DT / ramp_periods, rtol=0, atol=TOL)
    assert s.ramp(0) == pytest.approx(1 / ramp_periods) and s.ramp(ramp_periods - 1) == 1.0
    assert SafetyStage(lim, SafetyConfig(period_s=DT, ramp_s=0.0)).ramp(0) == 1.0


# --------------------------------------------------------------------------- holds


def test_a_nan_target_holds_and_brakes_instead_of_following() -> None:
    lim = toy_limits()
    s = stage(lim, np.zeros(2))
    run_at_speed(s, np.array([1.0, -1.0]), 25)
    v0 = s.state.v.copy()
    np.testing.assert_allclose(np.abs(v0), lim.velocity, rtol=0, atol=V_TOL)
    target = np.array([np.nan, 0.0])
    for _ in range(10):  # both joints: 1.0 / (10 * 0.01) = 2.0 / (20 * 0.01) = 10 periods to rest
        v_before = s.state.v
        s.command(target)
        assert s.last_events[0] == HELD_NONFINITE
        # braking: the speed falls by the acceleration limit per period, never grows, never reverses
        np.testing.assert_allclose(np.abs(s.state.v), np.maximum(np.abs(v_before) - lim.acceleration * DT, 0),
                                   rtol=0, atol=V_TOL)
        assert np.all(s.state.v * v0 >= 0)
    np.testing.assert_allclose(s.state.v, 0.0, rtol=0, atol=V_TOL)
    s.command(target)  # a rounding residue of the velocity, if any, is gone after one more period
    at_rest = s.state.q.copy()
    np.testing.assert_array_equal(s.command(np.array([0.0, np.inf])), at_rest)  # held: stays put
    np.testing.assert_array_equal(s.command(np.zeros(3)), at_rest)  # a target of the wrong size likewise
    assert s.last_events == [HELD_NONFINITE]


def test_a_jump_beyond_the_jump_factor_holds() -> None:
    lim = toy_limits((1e6, 1e6))
    s = stage(lim, np.zeros(2), jump_factor=4.0)
    full_step = lim.velocity * DT
    far = np.array([4.5 * full_step[0], 0.0])  # 4.5 full-speed steps on joint a
    np.testing.assert_array_equal(s.command(far), np.zeros(2))  # from rest: the arm stays, it does not follow
    assert s.last_events == [HELD_JUMP]
    near = np.array([3.9 * full_step[0], 0.0])
    np.testing.assert_allclose(s.command(near), [full_step[0], 0.0], rtol=0, atol=TOL)
    assert s.last_events == [CLAMPED_VELOCITY]


def test_the_jump_test_counts_full_speed_steps_during_the_ramp() -> None:
    lim = toy_limits((1e6, 1e6))
    s = stage(lim, np.zeros(2), ramp_s=1.0)  # the first command may move 1/100 of a full step
    q = s.command(np.array([3.0 * lim.velocity[0] * DT, 0.0]))
    assert HELD_JUMP not in s.last_events and q[0] == pytest.approx(lim.velocity[0] * DT / 100, abs=TOL)


def test_a_jump_while_moving_brakes_at_the_acceleration_limit() -> None:
    lim = toy_limits()
    s = stage(lim, np.zeros(2))
    run_at_speed(s, np.array([1.0, 0.0]), 15)
    v0 = s.state.v[0]
    q = s.command(s.state.q + np.array([-0.9, 0.0]))  # 90 full-speed steps back: a violation
    assert s.last_events[0] == HELD_JUMP
    assert s.state.v[0] == pytest.approx(v0 - lim.acceleration[0] * DT, abs=V_TOL) and q[0] > 0


# --------------------------------------------------------------------------- position limits


def test_targets_beyond_a_limit_are_clamped_to_it() -> None:
    lim = toy_limits((1e6, 1e6))
    s = stage(lim, np.array([0.99, -1.99]))
    q = s.command(np.array([1.01, -2.01]))
    np.testing.assert_allclose(q, [1.0, -2.0], rtol=0, atol=TOL)
    assert s.last_events == [CLAMPED_POSITION]


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_braking_before_a_limit_never_overshoots_and_arrives_at_rest(panda, direction: float) -> None:
    """At full speed towards a limit the stage starts braking early enough to stop on the limit within the
    acceleration limit (not at it still moving, with an instant stop)."""
    j = 0
    q0 = (panda.lower + panda.upper) / 2
    s = stage(panda, q0)
    limit = panda.upper[j] if direction > 0 else panda.lower[j]
    events = set()
    for _ in range(600):
        v_before = s.state.v.copy()
        target = s.state.q.copy()
        target[j] += direction * 3 * s.v_max[j] * DT  # always ahead, beyond the limit at the end
        s.command(target)
        events.update(s.last_events)
        assert panda.lower[j] <= s.state.q[j] <= panda.upper[j]
        assert abs(s.state.v[j] - v_before[j]) <= panda.acceleration[j] * DT + V_TOL
        assert abs(s.state.v[j]) <= s.v_max[j] + V_TOL
    assert s.state.q[j] == pytest.approx(limit, abs=TOL) and s.state.v[j] == pytest.approx(0.0, abs=V_TOL)
    assert {CLAMPED_VELOCITY, CLAMPED_BRAKING, CLAMPED_POSITION} <= events


def test_a_joint_measured_beyond_a_limit_moves_back_without_a_jump(panda, mid) -> None:
    """The commander accepts joint states up to its margin outside the URDF limits: from there the stage
    moves back in at its velocity and acceleration limits, never further out."""
    q0 = mid.copy()
    q0[3] = panda.upper[3] + 0.05  # the elbow 0.05 rad past its limit
    s = stage(panda, q0)
    target = q0.copy()
    target[3] = panda.upper[3] - 0.01  # within reach: not a jump
    prev_q, prev_v = q0, np.zeros(7)
    for _ in range(100):
        q = s.command(target)
        v = (q - prev_q) / DT
        assert np.all(np.abs(v) <= s.v_max + V_TOL) and np.all(np.abs(v - prev_v) <= panda.acceleration * DT + V_TOL)
        assert q[3] <= q0[3]
        prev_q, prev_v = q, v
    assert q[3] == pytest.approx(target[3], abs=TOL)


# --------------------------------------------------------------------------- paths


def test_limit_path_equals_successive_commands_without_committing() -> None:
    lim = toy_limits()
    ahead, stepped = stage(lim, np.zeros(2), ramp_s=0.05), stage(lim, np.zeros(2), ramp_s=0.05)
    targets = np.array([[0.02, -0.01], [0.05, 0.03], [np.nan, 0.0], [0.9, 0.0], [1.5, -0.6], [0.06, 0.02]])
    start = ahead.state
    qs, states, events = ahead.limit_path(targets)
    assert ahead.state is start  # nothing committed
    assert qs.shape == (len(targets), 2) and len(states) == len(events) == len(targets)
    for k, target in enumerate(targets):
        np.testing.assert_array_equal(stepped.command(target), qs[k])
        assert stepped.last_events == events[k]
        np.testing.assert_array_equal(stepped.state.v, states[k].v)
        assert stepped.state.ticks == states[k].ticks == k + 1
    assert HELD_NONFINITE in events[2] and HELD_JUMP in events[3]
    ahead.state = states[2]  # the caller commits a state as its point runs; the stage continues from there
    stepped.reset(np.zeros(2))
    for target in targets[:3]:
        stepped.command(target)
    np.testing.assert_array_equal(ahead.command(targets[3]), stepped.command(targets[3]))


def test_brake_path_ends_at_rest_within_the_acceleration_limit() -> None:
    lim = toy_limits()
    s = stage(lim, np.zeros(2))
    run_at_speed(s, np.array([1.0, -1.0]), 20)
    start = s.state
    qs, states = s.brake_path()
    assert s.state is start and len(qs) == len(states) <= 10 + 1  # 10 periods, + 1 for a rounding residue
    np.testing.assert_allclose(states[9].v, 0.0, rtol=0, atol=V_TOL)
    v = np.array([start.v] + [st.v for st in states])
    assert np.all(np.abs(np.diff(v, axis=0)) <= lim.acceleration * DT + V_TOL)
    np.testing.assert_array_equal(states[-1].v, np.zeros(2))
    np.testing.assert_array_equal(qs[-1], states[-1].q)
    assert np.all(np.sign(np.diff(qs[:, 0])) >= 0) and np.all(np.sign(np.diff(qs[:, 1])) <= 0)  # no reversal
    s.state = states[-1]
    rest_q, _ = s.brake_path()  # from rest: one point, where it stands
    assert len(rest_q) == 1
    np.testing.assert_array_equal(rest_q[0], states[-1].q)


def test_a_hold_starts_from_the_last_command_not_the_measurement() -> None:
    """Ported from the commander's old hold: after stale joint states the last measurement is a whole timeout
    window old; a hold brakes from the last command, it never jumps back to the measurement."""
    lim = toy_limits()
    measured = np.zeros(2)
    s = stage(lim, measured)
    run_at_speed(s, np.array([1.0, 1.0]), 30)  # the arm moved on while its joint states were stale
    last = s.state
    assert np.max(np.abs(last.q - measured)) > 0.2
    qs, _ = s.brake_path()
    assert np.all(np.abs(qs[0] - last.q) <= np.abs(last.v) * DT + TOL)
    np.testing.assert_array_equal(s.command(np.array([np.nan, np.nan])), qs[0])  # a held command: the same


def test_stage_needs_a_reset_before_commands() -> None:
    s = SafetyStage(toy_limits(), SafetyConfig(period_s=DT))
    for call in (lambda: s.command(np.zeros(2)), lambda: s.limit_path(np.zeros((1, 2))), s.brake_path):
        with pytest.raises(RuntimeError, match="before reset"):
            call()
    with pytest.raises(ValueError, match="2 finite joint positions"):
        s.reset(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="2 finite joint positions"):
        s.reset(np.zeros(3))


# --------------------------------------------------------------------------- the commander's IK through the stage


def test_a_far_ik_target_moves_one_capped_step_inside_the_limits(commander, panda) -> None:
    """Ported from the commander's old clamp: a far TCP target needs more than one joint step; through the stage
    the command moves at most `max_joint_step` per joint and stays within the limits."""
    rest = np.asarray(commander.spec.rest_pose)
    home = commander.ik.solve(np.array([0.5, 0.0, 0.25]), np.asarray(DOWN_QUAT), rest)[0]
    commander.sync(home)
    q_ik, _, _ = commander.step(np.array([0.25, 0.3, 0.0, 0, 0, 0, 1.0]), home)
    cap = 0.01  # rad per period: 1 rad/s, below the URDF's limits
    s = stage(commander.joint_limits(HUGE_ACCEL), home, max_joint_step=cap, jump_factor=1e3)
    assert np.max(np.abs(q_ik - home)) > cap
    q = s.command(q_ik)
    assert np.max(np.abs(q - home)) == pytest.approx(cap, abs=TOL)
    assert np.all(q >= panda.lower) and np.all(q <= panda.upper)


# --------------------------------------------------------------------------- a wild policy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_wild_policy_stand_in_never_breaks_a_limit(panda, seed: int) -> None:
    """Random targets mixing NaNs, huge jumps, out-of-limit positions and plausible moves: every command is
    finite, inside the position limits, within the velocity limit and the acceleration limit."""
    rng = np.random.default_rng(seed)
    s = SafetyStage(panda, SafetyConfig(period_s=DT, ramp_s=0.2))
    q0 = rng.uniform(panda.lower, panda.upper)
    s.reset(q0)
    prev_q, prev_v, seen = q0, np.zeros(7), set()
    for k in range(400):
        if k % 50 == 0:
            drift = rng.choice([-1.0, 1.0], 7)  # the policy pushes each joint one way for a while
        r = rng.random()
        if r < 0.1:
            target = np.where(rng.random(7) < 0.5, np.nan, prev_q)
        elif r < 0.2:
            target = prev_q + rng.normal(0.0, 3.0, 7)  # a huge jump
        elif r < 0.45:
            target = rng.uniform(panda.lower - 1.0, panda.upper + 1.0)  # often beyond a limit
        else:  # plausible, often too fast, drifting into the limits
            target = prev_q + (1.5 * drift + rng.uniform(-0.5, 0.5, 7)) * s.v_max * DT
        q = s.command(target)
        seen.update(s.last_events)
        v = (q - prev_q) / DT
        assert np.all(np.isfinite(q))
        assert np.all(q >= panda.lower) and np.all(q <= panda.upper)
        assert np.all(np.abs(q - prev_q) <= s.v_max * DT + TOL)
        assert np.all(np.abs(v - prev_v) <= panda.acceleration * DT + V_TOL)
        prev_q, prev_v = q, v
    assert set(INTERVENTIONS) <= seen  # every kind of intervention was exercised


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("kw", "needle"), [
    ({"period_s": 0.0}, "period_s must be positive, got 0.0"),
    ({"period_s": math.nan}, "period_s must be positive, got nan"),
    ({"period_s": math.inf}, "got inf"),
    ({"velocity_scale": -0.5}, "velocity_scale must be positive, got -0.5"),
    ({"velocity_scale": 1.5}, "velocity_scale <= 1, got 0.01 and 1.5"),
    ({"max_joint_step": 0.0}, "max_joint_step must be positive, got 0.0"),
    ({"jump_factor": -1.0}, "jump_factor must be positive, got -1.0"),
    ({"ramp_s": -0.1}, "ramp_s must be a finite number >= 0, got -0.1"),
    ({"ramp_s": math.inf}, "ramp_s must be a finite number >= 0, got inf"),
])
def test_safety_config_refuses_bad_values_naming_them(kw: dict, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        SafetyConfig(**{"period_s": DT, **kw})
    assert needle in str(exc.value)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"lower": np.array([0.0])}, "lower must have one entry per joint (2), got (1,)"),
    ({"lower": np.array([2.0, 0.0])}, "lower limits above upper"),
    ({"velocity": np.array([1.0, 0.0])}, "must be positive, got [1. 0.]"),
    ({"acceleration": np.array([-1.0, 1.0])}, "must be positive"),
])
def test_joint_limits_refuse_bad_values_naming_them(kw: dict, needle: str) -> None:
    base = toy_limits()
    fields = {"names": base.names, "lower": base.lower, "upper": base.upper, "velocity": base.velocity,
              "acceleration": base.acceleration, **kw}
    with pytest.raises(ValueError) as exc:
        JointLimits(**fields)
    assert needle in str(exc.value)


def test_safety_state_is_frozen() -> None:
    state = SafetyState(np.zeros(2), np.zeros(2))
    with pytest.raises(AttributeError):
        state.ticks = 3
