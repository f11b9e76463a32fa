"""The expert asked from any state (`ScriptedExpert.resume`, `expert_chunk`), the oracle that steers with it,
and the DAgger relabelling that records it (`vla sim relabel`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pybullet as p
import pytest

from sim.env import ArmEnv, EnvConfig
from sim.experts import ExpertConfig, ScriptedExpert, expert_chunk
from sim.tasks import TASKS
from verifiers.relabelled import read_decisions
from verifiers.steering import SteeringConfig
from vla_app.agents import AgentFactory
from vla_app.evaluate import EvalConfig, evaluate
from vla_app.oracle import ExpertScorer
from vla_app.relabel import RelabelConfig, relabel
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.policy.model import VLAPolicy

pytestmark = pytest.mark.sim


def _world(env: ArmEnv) -> list[float]:
    """Every body's pose and every arm joint, flattened: what a lookahead must leave untouched."""
    out = []
    for b in env.world.objects:
        pos, quat = p.getBasePositionAndOrientation(b, physicsClientId=env.client)
        out += [*pos, *quat]
    out += env.arm.joint_positions().tolist()
    return out


def test_a_lookahead_leaves_the_episode_where_it_was() -> None:
    env, twin = (ArmEnv(EnvConfig(task="place_in", render_images=False)) for _ in range(2))
    for e in (env, twin):
        e.reset(seed=3)
    expert = ScriptedExpert(ExpertConfig(), np.random.default_rng(0))
    before = (_world(env), env.target_pose, env.steps, env.gripper_command)
    chunk = expert_chunk(env, expert, 8)
    assert chunk.shape == (8, 7) and np.isfinite(chunk).all()
    assert np.abs(chunk[:, :3]).max() > 0.005  # the expert moves: the lookahead really ran physics
    after = (_world(env), env.target_pose, env.steps, env.gripper_command)
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1][0], after[1][0])
    for a in chunk[:4]:  # and the episode goes on as it would have without the lookahead
        env.step(a)
        twin.step(a)
    np.testing.assert_allclose(env.proprio(), twin.proprio(), atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_the_expert_resumed_from_every_fourth_state_still_solves_the_task(task: str) -> None:
    """Each query re-infers the phase from privileged state, so a wrong inference (a released object grasped
    again, a carry that restarts its lift) shows up as a failed or timed-out episode."""
    env = ArmEnv(EnvConfig(task=task, render_images=False))
    env.reset(seed=0)
    expert = ScriptedExpert(ExpertConfig(), np.random.default_rng(0))
    info = {"success": False}
    done = False
    while not done:
        for a in expert_chunk(env, expert, 8)[:4]:
            _, _, terminated, truncated, info = env.step(a)
            done = terminated or truncated
            if done:
                break
    assert info["success"], f"{task}: the resumed expert failed in {env.steps} steps"


def test_the_oracle_scores_the_experts_own_chunk_best() -> None:
    env = ArmEnv(EnvConfig(task="pick_lift", render_images=False))
    env.reset(seed=1)
    scorer = ExpertScorer(env.spec_actions, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="bind"):
        scorer.score(None, np.zeros((2, 8, 7), np.float32))
    scorer.bind(env)
    best = expert_chunk(env, ScriptedExpert(ExpertConfig(), np.random.default_rng(0)), 8)
    rng = np.random.default_rng(0)
    candidates = np.stack([np.clip(best + rng.normal(0, s, best.shape), env.spec_actions.low_array(),
                                   env.spec_actions.high_array()) for s in (0.02, 0.01, 0.0, 0.05)]).astype(np.float32)
    scores = scorer.score(None, candidates)
    assert int(np.argmax(scores)) == 2 and scores[2] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(scorer.last_expert, best, atol=1e-6)


def test_oracle_rows_name_the_candidate_recipe_and_a_method_without_candidates_is_refused(models) -> None:
    steering = SteeringConfig(method="robomonkey", n=4, m=4, verifier=str(models["verifier"]), keep_samples=True)
    factory = AgentFactory(str(models["policy"]), steering, oracle=True)
    rows = evaluate(EvalConfig(policy=str(models["policy"]), tasks=("pick_lift",), episodes=1, workers=1),
                    progress=False, factory=factory)
    assert (rows[0]["method"], rows[0]["proposal"], rows[0]["n"], rows[0]["m"]) == ("oracle", "gaussian+samples", 4, 4)
    with pytest.raises(ValueError, match="oracle picks among"):
        AgentFactory(str(models["policy"]), SteeringConfig(method="mean", n=4), oracle=True)


def test_relabel_records_every_decision_resumes_and_refuses_other_settings(models, tmp_path: Path) -> None:
    out = tmp_path / "relabel"
    cfg = RelabelConfig(policy=str(models["policy"]), out=str(out), verifier=str(models["verifier"]), episodes=4,
                        workers=1, n=4, m=4, tasks=("pick_lift", "push_to"))
    first = relabel(cfg, progress=False)
    assert first["new_episodes"] == 4 and first["episodes"] == 4
    modes = {}
    for f in sorted(out.glob("decisions_*.npz")):
        with np.load(f) as z:
            meta = json.loads(str(z["meta"]))
            modes.setdefault(meta["task"], set()).add(meta["mode"])
    assert modes == {"pick_lift": {"mean", "steered"}, "push_to": {"mean", "steered"}}  # every task gets both
    policy = VLAPolicy.from_pretrained(models["policy"])
    d = read_decisions([out], weights_fingerprint(policy), 8, 7)
    assert len(d.cond) == first["decisions"] and d.cond.shape[1] == 32
    assert d.candidates.shape[1:] == (8, 8, 7)  # 4 Gaussian draws + the 4 samples (keep_samples)
    assert np.isfinite(d.candidates).all() and np.isfinite(d.expert).all()
    with np.load(sorted(out.glob("decisions_*.npz"))[0]) as z:
        meta = json.loads(str(z["meta"]))
        assert z["image"].shape[1:] == (16, 16, 3) and meta["seed"] == cfg.seed and meta["task"] == "pick_lift"
        assert (np.diff(z["step"]) > 0).all()
    assert relabel(cfg, progress=False)["new_episodes"] == 0  # resumed: nothing left to run
    with pytest.raises(ValueError, match="other settings"):
        relabel(RelabelConfig(**{**cfg.__dict__, "n": 8}), progress=False)
    with pytest.raises(ValueError, match="another policy"):
        read_decisions([out], "0123456789abcdef", 8, 7)
    with pytest.raises(ValueError, match="overlap the evaluation"):
        RelabelConfig(policy=str(models["policy"]), out=str(out), seed=29_990, episodes=20)


def test_the_demo_puts_unsteered_and_steered_side_by_side_with_candidates_drawn(models, tmp_path: Path) -> None:
    from PIL import Image

    from vla_app.demo import run_demo
    from vla_app.demo_gifs import project
    from vla_runtime.types import CameraInfo

    steering = SteeringConfig(method="robomonkey", n=4, m=4, verifier=str(models["verifier"]))
    report = run_demo(tmp_path / "demo", policy=str(models["policy"]), episodes_per_task=1, workers=1, samples=4,
                      steering=steering)
    assert [r["task"] for r in report["steered_results"]] == [r["task"] for r in report["results"]] == list(TASKS)
    assert [r["seed"] for r in report["steered_results"]] == [r["seed"] for r in report["results"]]
    assert report["steered_results"][0]["method"] == "robomonkey" and report["results"][0]["samples"] == 4
    assert len(report["gifs"]) >= len(TASKS)  # one per task at least (its changed episodes, else the first)
    gif = Image.open(report["gifs"][0])
    assert gif.n_frames > 1 and gif.width > 2 * 16
    table = (tmp_path / "demo" / "report.md").read_text()
    assert "| task | unsteered | steered | steering won | steering lost | episodes |" in table
    assert len(list((tmp_path / "demo" / "decisions").glob("decisions_*.npz"))) == len(TASKS)
    cam = CameraInfo(width=64, height=48, fx=50.0, fy=50.0, cx=32.0, cy=24.0, pose_base_cam=np.eye(4))
    np.testing.assert_allclose(project(np.array([[0.0, 0.0, 1.0], [0.1, -0.05, 0.5]]), cam),
                               [[32.0, 24.0], [42.0, 19.0]])
