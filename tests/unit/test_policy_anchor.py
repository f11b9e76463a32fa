"""The episode anchor: the object head's first-frame target/goal estimate conditions later decisions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.steering import SteeringConfig, build_steered
from vla_app.agents import Agent
from vla_runtime.execution import ChunkExecutor, ExecutorConfig
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.steps import load_steps
from vla_runtime.policy.train import TrainConfig, Trainer, train_policy
from vla_runtime.training import state_dir
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

ANCHORED = dataclasses.replace(TINY, anchor=True)
SPEC = TINY.action_spec
A, P = TINY.action_dim, TINY.proprio_dim


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _anchored_policy(seed: int = 0) -> VLAPolicy:
    """Anchor policy whose zero-initialised output layers are randomised, so the anchor matters."""
    torch.manual_seed(seed)
    model = VLAPolicy(ANCHORED, uniform_normalizer())
    with torch.no_grad():
        for layer in (model.anchor_mlp[-1], model.head.action_out):
            layer.weight.normal_(0.0, 0.3)
            layer.bias.normal_(0.0, 0.1)
    return model.eval()


def _obs(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                       instruction="pick up the red cube", proprio=rng.normal(size=P).astype(np.float32))


def test_config_requires_the_vision_object_head_and_a_sane_noise() -> None:
    with pytest.raises(ValueError, match="aux_object_weight=0.0"):
        dataclasses.replace(ANCHORED, aux_object_weight=0.0)
    with pytest.raises(ValueError, match="'cond'"):
        dataclasses.replace(ANCHORED, aux_object_input="cond")
    with pytest.raises(ValueError, match="anchor_noise .* got 0.5"):
        TrainConfig(anchor_noise=0.5)
    assert VLAPolicy(TINY, uniform_normalizer()).anchor_mlp is None  # off by default: no extra parameters


def test_first_decision_uses_its_own_estimate_and_a_given_anchor_steers_the_condition() -> None:
    model = _anchored_policy()
    obs = _obs()
    ctx = model.encode(obs)
    with torch.no_grad():  # the object head's estimate on this very frame
        images = model.images_to_tensor(obs.images["static"][None])
        from vla_runtime.policy.model import shared_language_encoder

        lang = shared_language_encoder("").encode([obs.instruction])
        vis, _ = model.fused_features(images, lang, torch.from_numpy(obs.proprio)[None], None)
        own = model.object_xy(vis)[0].numpy()
    assert ctx.anchor is not None and ctx.anchor.shape == (4,)
    np.testing.assert_allclose(ctx.anchor, own, atol=1e-6)
    same = model.encode(obs, anchor=own)
    torch.testing.assert_close(same.cond, ctx.cond, rtol=0, atol=1e-6)
    moved = model.encode(obs, anchor=own + np.array([0.05, 0.0, 0.0, 0.0], np.float32))
    np.testing.assert_allclose(moved.anchor, own + [0.05, 0, 0, 0], atol=1e-6)
    assert (moved.cond - ctx.cond).abs().max() > 1e-3
    noise = torch.randn(2, TINY.horizon, A, generator=torch.Generator().manual_seed(0))
    assert not np.allclose(model.sample(moved, 2, noise=noise), model.sample(ctx, 2, noise=noise))


def test_bad_anchors_are_rejected() -> None:
    model = _anchored_policy()
    with pytest.raises(ValueError, match=r"shape \(1, 4\), got \(1, 3\)"):
        model.encode(_obs(), anchor=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="finite"):
        model.encode(_obs(), anchor=np.array([0.5, np.nan, 0.5, 0.0], np.float32))
    with pytest.raises(ValueError, match="not trained with an anchor"):
        VLAPolicy(TINY, uniform_normalizer()).eval().encode(_obs(), anchor=np.zeros(4, np.float32))
    b = 4
    with pytest.raises(ValueError, match="given anchors"):
        model.loss(torch.rand(b, 3, 16, 16), torch.rand(b, TINY.language_dim), torch.rand(b, P),
                   torch.zeros(b, TINY.horizon, A))


def test_agent_latches_the_first_anchor_until_reset() -> None:
    model = _anchored_policy()
    seen: list[np.ndarray | None] = []
    encode = model.encode

    def recording_encode(obs, anchor=None):
        seen.append(None if anchor is None else anchor.copy())
        return encode(obs, anchor=anchor)

    model.encode = recording_encode  # the real encode, with its anchor argument recorded
    steered = build_steered(model, SteeringConfig(method="none"))
    agent = Agent(steered.act, steered.reset, ChunkExecutor(SPEC, ExecutorConfig(replan_every=1)), seed=0)
    env = SimpleNamespace(last_observation=_obs(0))
    agent.reset(env)
    agent.act(env)
    first = steered.episode.anchor.copy()
    env.last_observation = _obs(1)  # a different frame: its own estimate would differ
    agent.act(env)
    agent.act(env)
    assert seen[0] is None and all(np.array_equal(a, first) for a in seen[1:]) and len(seen) == 3
    agent.reset(env)
    assert steered.episode.anchor is None
    agent.act(env)
    assert seen[-1] is None and not np.allclose(steered.episode.anchor, first)


def test_extending_a_parent_keeps_its_outputs_and_refuses_reshaping() -> None:
    torch.manual_seed(0)
    parent = VLAPolicy(TINY, uniform_normalizer()).eval()
    with torch.no_grad():
        parent.head.action_out.weight.normal_(0.0, 0.3)
    child, added = parent.extended(ANCHORED)
    assert added == ["anchor_mlp.0.bias", "anchor_mlp.0.weight", "anchor_mlp.2.bias", "anchor_mlp.2.weight"]
    noise = torch.randn(3, TINY.horizon, A, generator=torch.Generator().manual_seed(1))
    obs = _obs()
    # zero-initialised output layer: the child starts exactly where the parent was
    np.testing.assert_array_equal(child.sample(child.encode(obs), 3, noise=noise),
                                  parent.sample(parent.encode(obs), 3, noise=noise))
    with pytest.raises(ValueError, match="drop or reshape"):
        parent.extended(dataclasses.replace(TINY, d_model=64, dit_heads=2))


def test_training_anchors_are_labels_plus_the_configured_noise(tmp_path: Path, write_tiny_episodes) -> None:
    metas = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": "lift",
              "scene": {"objects": [{"xy": [0.4 + 0.05 * i, 0.1]}], "base_index": None}} for i in range(4)]
    write_tiny_episodes(tmp_path / "data", metas, t=6)
    cfg = TrainConfig(steps=2, batch_size=4, val_every=1, ckpt_every=2, warmup=0, ema_decay=0.0, threads=1,
                      anchor_noise=0.02)
    table = load_steps([tmp_path / "data"], ANCHORED, progress=False)
    trainer = Trainer(table, tmp_path / "out", ANCHORED, cfg)
    labels = torch.from_numpy(np.tile(table.object_xy[:1], (20000, 1)))
    noisy = trainer._anchor(labels, torch.Generator().manual_seed(0))
    err = (noisy - labels).numpy()
    assert abs(err.mean()) < 1e-3 and abs(err.std() - 0.02) < 1e-3
    assert np.isfinite(trainer.train_step()) and "val_action_mae" in trainer.validate()
    # episodes without the scene record an anchor trains on are refused by name
    write_tiny_episodes(tmp_path / "bare", [{"task": "pick_lift", "quality": "expert", "seed": 0,
                                             "instruction": "lift"}], t=6)
    with pytest.raises(ValueError, match="episode_000000.*no scene record"):
        load_steps([tmp_path / "bare"], ANCHORED, progress=False)


def test_cli_init_adds_an_anchor_to_a_trained_parent(tmp_path: Path, write_tiny_episodes) -> None:
    from vla_app.cli import main

    metas = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": "lift",
              "scene": {"objects": [{"xy": [0.4 + 0.05 * i, 0.1]}], "base_index": None}} for i in range(4)]
    write_tiny_episodes(tmp_path / "data", metas, t=6)
    cfg = TrainConfig(steps=1, batch_size=4, val_every=1, ckpt_every=1, warmup=0, ema_decay=0.0, threads=1)
    train_policy([tmp_path / "data"], tmp_path / "parent", TINY, cfg, progress=False)
    assert main(["train", "policy", "--data", str(tmp_path / "data"), "--init", str(tmp_path / "parent"),
                 "--anchor", "--anchor-noise", "0.005", "--out", str(tmp_path / "child"), "--steps", "1",
                 "--batch-size", "4", "--threads", "1", "--no-progress"]) == 0
    child, parent = VLAPolicy.from_pretrained(tmp_path / "child"), VLAPolicy.from_pretrained(tmp_path / "parent")
    assert child.config == dataclasses.replace(parent.config, anchor=True)
    assert json.loads((state_dir(tmp_path / "child") / "trainer.json").read_text())["train_config"]["anchor_noise"] \
        == 0.005
    card = (tmp_path / "child" / "README.md").read_text()
    assert "Episode anchor (added to the `--init` parent" in card and "5 mm of noise" in card
    # round trip: the saved anchor policy reproduces itself
    noise = torch.randn(2, TINY.horizon, A, generator=torch.Generator().manual_seed(0))
    anchor = np.array([0.5, 0.1, 0.6, -0.1], np.float32)
    again = VLAPolicy.from_pretrained(tmp_path / "child")
    np.testing.assert_array_equal(child.sample(child.encode(_obs(), anchor=anchor), 2, noise=noise),
                                  again.sample(again.encode(_obs(), anchor=anchor), 2, noise=noise))
