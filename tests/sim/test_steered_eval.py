"""`vla eval --steer`: tiny policy + verifier + value checkpoints closed-loop in the simulator."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

from sim.env import ArmEnv, EnvConfig
from verifiers.steering import SteeringConfig
from vla_app.agents import AgentFactory
from vla_app.cli import main
from vla_app.evaluate import EvalConfig, evaluate
from vla_runtime.execution import ChunkExecutor
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.sim

SPEC = ActionSpec()


def steering(models: dict[str, Path], **kw) -> SteeringConfig:
    return SteeringConfig(verifier=str(models["verifier"]), value=str(models["value"]), **kw)


@pytest.mark.parametrize("method", ["robomonkey", "vgps", "both"])
def test_steered_evaluation_rows_carry_the_method_and_its_parameters(models, method: str) -> None:
    weights = (("value", 0.5),) if method == "both" else ()
    factory = AgentFactory(str(models["policy"]), steering(models, method=method, n=4, m=4, weights=weights))
    rows = evaluate(EvalConfig(policy=str(models["policy"]), tasks=("pick_lift",), episodes=1, workers=1),
                    progress=False, factory=factory)
    row = rows[0]
    assert (row["method"], row["n"], row["m"], row["episodes"]) == (method, 4, 4, 1)
    assert row["scorers"] == {"robomonkey": ["verifier"], "vgps": ["value"], "both": ["verifier", "value"]}[method]


def test_safety_scorer_joins_with_rendered_depth(models) -> None:
    factory = AgentFactory(str(models["policy"]), steering(models, method="robomonkey", n=4, m=4, safety=True))
    assert factory.env_options()["depth"] is True
    env = ArmEnv(EnvConfig(task="pick_lift", **factory.env_options()))
    env.reset(seed=1)
    agent = factory(seed=0)
    agent.reset(env)
    agent.act(env)
    result = factory.pipeline().act(env.last_observation, torch.Generator().manual_seed(0))
    assert set(result.scores) == {"verifier", "safety"}
    assert np.all(np.isfinite(result.scores["safety"]) | np.isneginf(result.scores["safety"]))
    # a rejected candidate is never executed: the pick is safe, or the mean ran with the reason
    assert np.isfinite(result.scores["safety"][result.index]) if result.index >= 0 else result.fallback


def test_the_steered_agent_executes_the_selected_candidate(models) -> None:
    factory = AgentFactory(str(models["policy"]), steering(models, method="both", n=8, m=8))
    env = ArmEnv(EnvConfig(task="pick_lift", image_size=TINY.image_size, depth=False))
    env.reset(seed=7)
    agent = factory(seed=3)
    agent.reset(env)
    first = agent.act(env)
    # replay the decision with the same generator stream: the executed step is the argmax candidate's first
    steered = factory.pipeline()
    steered.reset()
    result = steered.act(env.last_observation, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(first, ChunkExecutor(SPEC).clamp(result.chunk[0]), atol=1e-6)
    combined = steered.selector.combine(result.scores)
    assert result.index == int(np.argmax(combined)) and agent.picks == [result.index]
    assert set(result.timings_ms) >= {"encode", "sample", "propose", "verifier", "value", "select"}


def test_cli_steered_eval_writes_json_and_refuses_bad_pairings(models, tmp_path: Path) -> None:
    out = tmp_path / "steer.json"
    base = ["eval", "--policy", str(models["policy"]), "--task", "pick_lift", "--episodes", "1", "--workers", "1",
            "--no-progress", "--verifier", str(models["verifier"]), "--value", str(models["value"])]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*base, "--steer", "vgps", "--n", "4", "--m", "2", "--selection", "softmax",
                     "--json", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    assert (row["method"], row["n"], row["m"], row["selection"]) == ("vgps", 4, 2, "softmax")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main([*base, "--steer", "vgps", "--n", "2", "--m", "4"]) == 2
        assert main([*base[:-4], "--verifier", str(models["other"]), "--steer", "robomonkey"]) == 2
        assert main([*base, "--steer", "robomonkey", "--average", "4"]) == 2
        assert main([*base, "--steer", "robomonkey", "--weights", "value=0.5"]) == 2
    text = err.getvalue()
    assert "m=4 must be <= n=2" in text and "another policy's features" in text and "--average" in text
    assert "weights name scorers ['value'] that method 'robomonkey' does not use" in text


def test_a_vlm_verifier_folder_steers_through_the_same_flag(models, tmp_path: Path) -> None:
    """`--verifier DIR` holding an HFVLMVerifier (tiny LLaVA built here) runs the robomonkey pipeline."""
    from tiny import tiny_llava

    from verifiers.hf_verifier import HFVerifierConfig, HFVLMVerifier

    base = tiny_llava(tmp_path / "llava")
    ckpt = HFVLMVerifier(HFVerifierConfig(base_model=base), SPEC).save_pretrained(tmp_path / "hfv")
    cfg = SteeringConfig(method="robomonkey", n=4, m=4, verifier=str(ckpt))
    factory = AgentFactory(str(models["policy"]), cfg)
    env = ArmEnv(EnvConfig(task="pick_lift", **factory.env_options()))
    env.reset(seed=2)
    agent = factory(seed=0)
    agent.reset(env)
    agent.act(env)
    assert isinstance(factory.pipeline().scorers[0], HFVLMVerifier)
    result = factory.pipeline().act(env.last_observation, torch.Generator().manual_seed(0))
    assert result.scores["verifier"].shape == (len(result.candidates),) and result.index == int(
        np.argmax(result.scores["verifier"]))
