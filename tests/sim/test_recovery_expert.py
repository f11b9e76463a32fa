"""The `recovery` expert quality: induced missed grasps that are executed but never recorded as labels, and the
expert's re-grasp after an empty close (live and when resumed from a state a policy reached)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.env import ArmEnv, EnvConfig
from sim.experts import ExpertConfig, ExpertFactory, ScriptedExpert, expert_chunk
from sim.tasks import TASKS, body_pos
from vla_app.runner import EpisodeJob, run_episodes

pytestmark = pytest.mark.sim

GRASP_TASKS = tuple(t for t in TASKS if t != "push_to")


def _episode(task: str, seed: int, quality: str = "recovery") -> dict:
    """One episode, step by step: executed actions, labels, TCP and object xy, and the expert's counters."""
    env = ArmEnv(EnvConfig(task=task, depth=False, render_images=False))
    env.reset(seed=seed)
    expert = ExpertFactory(quality)(seed)
    expert.reset(env)
    rows, info = [], {"success": False}
    while True:
        tcp, obj = env.arm.tcp_pose()[0], body_pos(env.client, expert._obj)
        action = expert.act(env)
        rows.append((action, expert.label.copy(), tcp[:2].copy(), obj[:2].copy()))
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    env.close()
    executed, labels, tcp, obj = (np.stack(c) for c in zip(*rows))
    return {"executed": executed, "labels": labels, "tcp": tcp, "obj": obj, "success": bool(info["success"]),
            **expert.episode_stats()}


@pytest.mark.parametrize("task", TASKS)
def test_the_recovery_expert_solves_every_task_and_recovers_its_induced_misses(task: str) -> None:
    jobs = [EpisodeJob(index=k, seed=1000 + k, env=EnvConfig(task=task, depth=False, render_images=False))
            for k in range(6)]
    runs = list(run_episodes(jobs, ExpertFactory("recovery")))
    assert sum(s.success for s in runs) >= 5, [(s.seed, s.success) for s in runs]
    misses = [s for s in runs if s.stats["induced_miss"]]
    if task == "push_to":  # nothing is grasped: only DART's bursts
        assert not misses
        return
    assert misses and all(s.stats["empty_grasps"] >= 1 for s in misses), [(s.seed, s.stats) for s in runs]
    assert sum(s.success for s in misses) >= len(misses) - 1, [(s.seed, s.success) for s in misses]


def test_labels_never_teach_the_miss() -> None:
    """While the induced miss closes the hand beside the object, every label keeps it open; every close a label
    starts is over the object."""
    run = _episode("place_in", 1000)
    assert run["induced_miss"] and run["success"]
    ex_closed, lb_closed = run["executed"][:, 6] < 0.5, run["labels"][:, 6] < 0.5
    induced = np.flatnonzero(ex_closed & ~lb_closed)
    assert len(induced) >= 3  # the miss really closed the executed hand
    off = np.linalg.norm(run["tcp"] - run["obj"], axis=1)
    assert off[induced].min() > 0.02  # ... beside the object
    onsets = np.flatnonzero(lb_closed[1:] & ~lb_closed[:-1]) + 1
    assert len(onsets) >= 1 and off[onsets].max() < 0.012, off[onsets]


def test_episodes_repeat_from_the_seed() -> None:
    a, b = _episode("stack", 1002), _episode("stack", 1002)
    np.testing.assert_array_equal(a["executed"], b["executed"])
    np.testing.assert_array_equal(a["labels"], b["labels"])


def test_the_plain_expert_regrasps_from_an_empty_closed_hand() -> None:
    """A policy that missed leaves the hand closed and empty beside the object: the plain expert resumed there
    (what DAgger relabelling asks) reopens and rises first, then finishes the task."""
    env = ArmEnv(EnvConfig(task="pick_lift", depth=False, render_images=False))
    env.reset(seed=1000)
    miss = ScriptedExpert(ExpertConfig.named("recovery"), np.random.default_rng([1000, 0xE7]))
    miss.reset(env)
    assert miss._miss is not None
    while miss._miss_stage != "done":
        env.step(miss.act(env))
    for _ in range(2):  # let the fingers shut
        env.step(np.array([0, 0, 0, 0, 0, 0, 0.0], np.float32))
    assert env.arm.gripper_width() < 0.01 and not env.arm.in_contact_with(miss._obj)
    expert = ScriptedExpert(ExpertConfig(), np.random.default_rng(0))
    chunk = expert_chunk(env, expert, 4)
    assert (chunk[:, 6] > 0.5).all() and (chunk[:, 2] > 0).all(), chunk  # reopen and rise
    expert.resume(env)
    for _ in range(60):
        _, _, terminated, _, info = env.step(expert.act(env))
        if terminated:
            break
    assert info["success"]


def test_miss_prob_is_validated() -> None:
    with pytest.raises(ValueError, match="1.5"):
        ExpertConfig("recovery", miss_prob=1.5)
