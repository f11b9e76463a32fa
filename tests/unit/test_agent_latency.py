"""vla_app.agents.Agent under decision latency (`delay_steps`): which chunk runs at which step, idles, plan-ahead,
and the `vla eval` flags that set it up. The policy is a stand-in returning known chunks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vla_app import cli
from vla_app.agents import Agent, AgentFactory
from vla_runtime.execution import ChunkExecutor, ExecutorConfig
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.unit

SPEC = ActionSpec(chunk_length=8)
H, A, GRIP = SPEC.chunk_length, SPEC.dim, SPEC.gripper_index
REPLAN = 4
UNIT = 0.001  # tag unit: a chunk's dx is (decision + 1) * UNIT, its dy row * UNIT (no clamp touches these)


class World:
    """The env an Agent reads (`last_observation`: here the step index) and a decide stand-in that records the
    observation of each decision and returns a chunk tagged with the decision's number."""

    def __init__(self, chunk_length: int = H) -> None:
        self.chunk_length = chunk_length
        self.last_observation = 0
        self.observed: list[int] = []  # the observation (step) each decision was made from

    def decide(self, observation, generator) -> SimpleNamespace:
        self.observed.append(observation)
        chunk = np.zeros((self.chunk_length, A), np.float32)
        chunk[:, 0] = len(self.observed) * UNIT
        chunk[:, 1] = np.arange(self.chunk_length) * UNIT
        chunk[:, GRIP] = 0.5
        return SimpleNamespace(chunk=chunk, index=len(self.observed) - 1)


def run(delay: int, steps: int, spec: ActionSpec = SPEC, **executor) -> tuple[World, Agent, list]:
    """-> (the world, the agent, per step (decision, row) executed or None where the arm idled)."""
    world = World(spec.chunk_length)
    agent = Agent(world.decide, lambda: None, ChunkExecutor(spec, ExecutorConfig(replan_every=REPLAN, **executor)),
                  seed=0, delay_steps=delay)
    agent.reset(world)
    executed = []
    for t in range(steps):
        world.last_observation = t
        a = agent.act(world)
        if not np.any(a[:GRIP]):
            assert a[GRIP] in (0.5, 1.0)  # a hold: no motion, the gripper as last commanded (open before any)
            executed.append(None)
        else:
            executed.append((round(float(a[0]) / UNIT) - 1, round(float(a[1]) / UNIT)))
    return world, agent, executed


def first_steps(executed: list) -> dict[int, int]:
    """decision -> the first step it ran."""
    out: dict[int, int] = {}
    for t, e in enumerate(executed):
        if e is not None:
            out.setdefault(e[0], t)
    return out


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_a_chunk_takes_over_delay_steps_after_its_observation_skipping_them(delay: int) -> None:
    world, agent, executed = run(delay, 30)
    for t, e in enumerate(executed):
        if e is not None:
            decision, row = e
            assert row == t - world.observed[decision]  # the row for this step, counted from its observation
    starts = first_steps(executed)
    assert len(starts) >= 3
    for decision, step in starts.items():
        assert step == world.observed[decision] + delay
        assert executed[step][1] == delay  # its first `delay` actions were skipped
    assert executed[:delay] == [None] * delay
    for t, e in enumerate(executed):  # the arm holds exactly where the newest chunk landed has run out
        landed = [i for i, s in enumerate(world.observed) if s + delay <= t]
        assert (e is None) == (not landed or t - world.observed[landed[-1]] >= H)
    assert agent.idle_steps == executed.count(None)
    # replan_every 4 + 2 * delay <= 8: the chunk lasts until the next one lands, else it starves
    assert (agent.idle_steps == delay) == (REPLAN + 2 * delay <= H)


def test_the_arm_idles_where_no_chunk_covers_the_step() -> None:
    """4-step chunks replanned every 4 steps, decisions 2 steps late: each chunk has 2 actions left when it
    lands and the next plan is due 4 steps after the takeover, so the arm holds for the gaps."""
    world, agent, executed = run(2, 12, spec=ActionSpec(chunk_length=4))
    assert world.observed == [0, 6]
    assert executed == [None, None, (0, 2), (0, 3), None, None, None, None, (1, 2), (1, 3), None, None]
    assert agent.idle_steps == 8 and agent.episode_stats()["idle_steps"] == 8


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_plan_ahead_keeps_each_chunk_running_exactly_replan_every_steps(delay: int) -> None:
    _, agent, executed = run(delay, 40, lead_steps=delay)
    starts = sorted(first_steps(executed).values())
    assert len(starts) >= 8
    assert np.diff(starts).tolist() == [REPLAN] * (len(starts) - 1)
    assert agent.idle_steps == delay  # the first plan only
    assert all(e is not None for e in executed[delay:])


def test_without_plan_ahead_a_late_chunk_stretches_the_old_one() -> None:
    delay = 2
    _, _, executed = run(delay, 40)
    starts = sorted(first_steps(executed).values())
    assert np.diff(starts).tolist() == [REPLAN + delay] * (len(starts) - 1)


def test_delay_zero_is_the_synchronous_loop() -> None:
    world, agent, executed = run(0, 13)
    assert world.observed == [0, 4, 8, 12]
    assert executed == [(t // REPLAN, t % REPLAN) for t in range(13)]
    assert agent.idle_steps == 0


def test_reset_drops_a_decision_still_in_flight() -> None:
    world, agent, _ = run(3, 1)  # a decision from step 0 is still computing
    agent.reset(world)
    world.last_observation = 100
    agent.act(world)  # a fresh episode decides from its own observation, not the stale chunk
    assert world.observed == [0, 100] and agent.idle_steps == 1


def test_a_negative_delay_is_refused() -> None:
    world = World()
    with pytest.raises(ValueError, match="delay_steps must be >= 0, got -1"):
        Agent(world.decide, lambda: None, ChunkExecutor(SPEC), seed=0, delay_steps=-1)


# --------------------------------------------------------------------------- the factory and the CLI


@pytest.mark.parametrize(("ms", "hz", "steps"), [
    (0.0, 10.0, 0),
    (100.0, 10.0, 1),  # exactly one control period: lands at the next tick
    (101.0, 10.0, 2),
    (99.0, 10.0, 1),
    (250.0, 10.0, 3),
    (1000 / 30, 30.0, 1),  # one 30 Hz period is 1.0000000000000002 periods in floats: still 1
    (1.0, 10.0, 1),
])
def test_factory_delay_steps_is_the_ceiling_of_the_periods(ms: float, hz: float, steps: int) -> None:
    assert AgentFactory("unused", decision_ms=ms).delay_steps(hz) == steps


@pytest.mark.parametrize("ms", [-1.0, float("nan"), float("inf")])
def test_factory_refuses_a_bad_decision_time(ms: float) -> None:
    with pytest.raises(ValueError, match="decision_ms must be a finite number >= 0"):
        AgentFactory("unused", decision_ms=ms)


@pytest.mark.parametrize("value", ["-5", "nan", "soon"])
def test_eval_refuses_a_bad_decision_ms(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval", "--policy", "expert", "--decision-ms", value])
    assert exc.value.code == 2 and "argument --decision-ms" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--plan-ahead"], ["--decision-ms", "100"], ["--blend", "2"]])
def test_eval_refuses_latency_flags_with_the_expert(flags: list[str], capsys) -> None:
    assert cli.main(["eval", "--policy", "expert", *flags]) == 2
    assert "not the expert's" in capsys.readouterr().err
