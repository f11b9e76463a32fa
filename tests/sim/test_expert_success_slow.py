"""Acceptance: each scripted expert solves >= 95% of 50 seeded `id` episodes per task (slow tier)."""

import pytest

from sim.env import EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS
from vla_app.runner import EpisodeJob, run_episodes

pytestmark = [pytest.mark.sim, pytest.mark.slow]


@pytest.mark.parametrize("arm", ["panda", "kuka"])
def test_expert_success_at_least_95_percent(arm: str) -> None:
    jobs = [EpisodeJob(index=i, seed=1000 + k, env=EnvConfig(task=t, arm=arm, depth=False, render_images=False))
            for i, (t, k) in enumerate((t, k) for t in TASKS for k in range(50))]
    wins: dict[str, int] = dict.fromkeys(TASKS, 0)
    for s in run_episodes(jobs, ExpertFactory("expert"), workers=2):
        wins[s.task] += s.success
    assert all(w >= 48 for w in wins.values()), wins  # 48/50 = 96%
