"""A (tiny, untrained) policy checkpoint closed-loop in the simulator: `evaluate`, determinism, `vla eval`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

from sim.env import EnvConfig
from vla_app.agents import AgentFactory, unsteered
from vla_app.cli import main
from vla_app.evaluate import EvalConfig, evaluate
from vla_app.runner import EpisodeJob, run_episode
from vla_runtime.dataset import EpisodeDataset, write_dataset_header
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.stats import wilson_interval
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.sim

SPEC = ActionSpec()
ROW_KEYS = {"task", "variation", "method", "episodes", "successes", "success_rate", "ci95"}


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny policy with a non-trivial head (the zero-initialised output layer is randomised)."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(SPEC.low_array(), SPEC.high_array(), size=(64, SPEC.dim))
    proprio = rng.normal(size=(64, TINY.proprio_dim))
    torch.manual_seed(0)
    model = VLAPolicy(TINY, Normalizer.fit(actions, proprio))
    with torch.no_grad():
        model.head.action_out.weight.normal_(0.0, 0.3)
    return model.save_pretrained(tmp_path_factory.mktemp("policy") / "ckpt")


def test_evaluate_policy_rows_schema(checkpoint: Path) -> None:
    rows = evaluate(EvalConfig(policy=str(checkpoint), tasks=("pick_lift",), episodes=2, workers=1), progress=False)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= ROW_KEYS
    assert (row["task"], row["variation"], row["method"], row["episodes"]) == ("pick_lift", "id", "base", 2)
    assert row["policy"] == str(checkpoint)  # tables tell two policies' rows apart by it
    assert isinstance(row["successes"], int) and 0 <= row["successes"] <= 2
    assert row["success_rate"] == row["successes"] / 2
    lo, hi = wilson_interval(row["successes"], 2)
    assert row["ci95"] == [round(lo, 4), round(hi, 4)]
    json.dumps(rows)  # the rows go straight into --json


def _record(checkpoint: Path, root: Path, seed: int) -> np.ndarray:
    write_dataset_header(root, {"test": "policy determinism"})
    job = EpisodeJob(index=0, seed=seed, env=EnvConfig(task="pick_lift", image_size=TINY.image_size, depth=False,
                                                       max_steps=20), meta={"quality": "base"})
    summary = run_episode(job, AgentFactory(str(checkpoint)), record_root=str(root))
    episode = EpisodeDataset(root).load_episode(0)
    assert summary.steps == episode.length == len(episode.actions)
    assert episode.images["static"].shape[1:3] == TINY.image_size
    return episode.actions


def test_policy_agent_is_deterministic_for_a_seed(checkpoint: Path, tmp_path: Path) -> None:
    a = _record(checkpoint, tmp_path / "a", seed=10_000)
    b = _record(checkpoint, tmp_path / "b", seed=10_000)
    assert a.shape == (20, SPEC.dim)
    np.testing.assert_array_equal(a, b)
    assert np.all(a >= SPEC.low_array()) and np.all(a <= SPEC.high_array())
    assert np.abs(a[:, :6]).max() > 0  # the policy actually moves the arm
    c = _record(checkpoint, tmp_path / "c", seed=10_001)
    assert not np.array_equal(a, c)


def test_cli_eval_expert_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    rc, stdout, stderr = run_main(["eval", "--policy", "expert", "--task", "pick_lift", "--episodes", "2",
                                   "--workers", "1", "--json", str(out), "--no-progress"])
    assert rc == 0, stderr
    assert "pick_lift" in stdout and "average" in stdout
    data = json.loads(out.read_text())
    assert list(data) == ["results", "complete"] and data["complete"] is True and len(data["results"]) == 1
    row = data["results"][0]
    assert set(row) >= ROW_KEYS
    assert (row["task"], row["method"], row["episodes"], row["successes"]) == ("pick_lift", "expert", 2, 2)
    assert row["success_rate"] == 1.0


def test_cli_eval_missing_policy_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    rc, stdout, stderr = run_main(["eval", "--policy", str(missing), "--task", "pick_lift", "--episodes", "1",
                                   "--workers", "1", "--no-progress"])
    assert rc == 2
    assert stderr.startswith("vla: error:") and str(missing) in stderr and "does not exist" in stderr
    assert "Traceback" not in stderr and stdout == ""


def test_wrist_policy_gets_the_wrist_camera_rendered_and_recorded(tmp_path: Path) -> None:
    import dataclasses

    config = dataclasses.replace(TINY, wrist_camera="wrist", wrist_image_size=(16, 16))
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = VLAPolicy(config, Normalizer.fit(rng.uniform(SPEC.low_array(), SPEC.high_array(), (64, SPEC.dim)),
                                             rng.normal(size=(64, config.proprio_dim))))
    ckpt = model.save_pretrained(tmp_path / "wrist_policy")
    assert AgentFactory(str(ckpt)).env_options() == {"image_size": (16, 16), "wrist_camera": True}
    rows = evaluate(EvalConfig(policy=str(ckpt), tasks=("pick_lift",), episodes=1, workers=1,
                               record=str(tmp_path / "rec")), progress=False)
    assert rows[0]["episodes"] == 1
    episode = EpisodeDataset(tmp_path / "rec").load_episode(0)
    assert set(episode.images) == {"static", "wrist"}
    assert episode.images["wrist"].std() > 0  # a real render the policy read, not a blank frame


def test_factory_rejects_a_camera_the_simulator_cannot_render(tmp_path: Path) -> None:
    import dataclasses

    config = dataclasses.replace(TINY, wrist_camera="left_shoulder")
    model = VLAPolicy(config, Normalizer(np.full(SPEC.dim, -0.03), np.full(SPEC.dim, 0.03),
                                         np.zeros(config.proprio_dim), np.ones(config.proprio_dim)))
    ckpt = model.save_pretrained(tmp_path / "p")
    with pytest.raises(ValueError, match="left_shoulder"):
        AgentFactory(str(ckpt)).env_options()


def test_averaging_agent_executes_the_mean_of_its_samples(checkpoint: Path) -> None:
    from sim.env import ArmEnv
    from vla_runtime.execution import ChunkExecutor, average_chunks

    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        unsteered(0)
    env = ArmEnv(EnvConfig(task="pick_lift", image_size=TINY.image_size, depth=False))
    env.reset(seed=3)
    factory = AgentFactory(str(checkpoint), unsteered(8))
    agent = factory(seed=5)
    agent.reset(env)
    first = agent.act(env)
    policy = factory.pipeline().policy
    draws = policy.sample(policy.encode(env.last_observation), 8, torch.Generator().manual_seed(5))
    clamp = ChunkExecutor(policy.config.action_spec).clamp
    np.testing.assert_allclose(first, clamp(average_chunks(draws, SPEC.gripper_index)[0]), atol=1e-6)
    assert not np.allclose(first, clamp(draws[0][0]))  # not just the first draw


def test_demo_reports_every_task_with_gifs_and_the_averaged_execution(checkpoint: Path, tmp_path: Path) -> None:
    from vla_app.demo import run_demo

    report = run_demo(tmp_path / "demo", policy=str(checkpoint), episodes_per_task=1, workers=1, samples=4)
    assert [r["task"] for r in report["results"]] == ["pick_lift", "place_in", "push_to", "stack"]
    assert all(r["samples"] == 4 and r["episodes"] == 1 for r in report["results"])
    assert len(report["gifs"]) == 4 and all(Path(g).stat().st_size > 0 for g in report["gifs"])
    assert "mean of 4 samples" in (tmp_path / "demo" / "report.md").read_text()
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["average"]["episodes"] == 4
