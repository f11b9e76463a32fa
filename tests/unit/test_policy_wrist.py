"""The optional second (wrist) camera: config checks, a live second encoder, data loading and training."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.steps import load_steps
from vla_runtime.policy.train import TrainConfig, Trainer
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

WRIST = dataclasses.replace(TINY, wrist_camera="wrist", wrist_image_size=(20, 20), wrist_vision_strides=(2, 1, 1))
A, P = TINY.action_dim, TINY.proprio_dim


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _policy(config: PolicyConfig = WRIST, seed: int = 0) -> VLAPolicy:
    torch.manual_seed(seed)
    norm = Normalizer(np.full(A, -0.03), np.full(A, 0.03), np.zeros(P), np.ones(P))
    return VLAPolicy(config, norm).eval()


def _obs(wrist_seed: int = 1, cameras: tuple[str, ...] = ("static", "wrist")) -> Observation:
    images = {c: np.random.default_rng(wrist_seed if c == "wrist" else 0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
              for c in cameras}
    return Observation(images=images, instruction="pick up the red cube",
                       proprio=np.random.default_rng(2).normal(size=P).astype(np.float32))


@pytest.mark.parametrize(("change", "message"), [
    ({"wrist_camera": "static"}, "must differ from camera"),
    ({"wrist_camera": "wrist", "wrist_image_size": (8, 8)}, re.escape("(8, 8)")),
    ({"wrist_camera": "wrist", "wrist_vision_strides": (2, 1)}, re.escape("(2, 1)")),
    ({"wrist_camera": "wrist", "wrist_vision_strides": (4, 1, 1)}, re.escape("(4, 1, 1)")),
])
def test_config_rejects_bad_wrist_settings(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **change)


def test_wrist_image_changes_the_condition_and_is_required() -> None:
    policy = _policy()
    assert WRIST.camera_sizes == {"static": (16, 16), "wrist": (20, 20)} and TINY.camera_sizes == {"static": (16, 16)}
    a, b = policy.encode(_obs(wrist_seed=1)).cond, policy.encode(_obs(wrist_seed=5)).cond
    assert not torch.allclose(a, b)  # the second encoder is wired into the condition
    with pytest.raises(ValueError, match=r"camera\(s\) \['wrist'\]"):
        policy.encode(_obs(cameras=("static",)))
    images, lang, proprio = torch.rand(2, 3, 16, 16), torch.randn(2, 384), torch.randn(2, P)
    with pytest.raises(ValueError, match="pass wrist images"):
        policy.features(images, lang, proprio)
    with pytest.raises(ValueError, match="do not pass wrist"):
        _policy(TINY).features(images, lang, proprio, wrist=torch.rand(2, 3, 20, 20))


def test_wrist_policy_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    policy = _policy()
    policy.save_pretrained(tmp_path / "p")
    loaded = VLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config == WRIST
    obs = _obs()
    noise = torch.randn(3, WRIST.horizon, A, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(policy.sample(policy.encode(obs), 3, noise=noise),
                                  loaded.sample(loaded.encode(obs), 3, noise=noise))


def _write(write, root: Path, cameras: tuple[str, ...]) -> None:
    metas = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": f"lift {i}"} for i in range(3)]
    write(root, metas, t=5, seed=3, cameras=cameras)


def test_load_steps_reads_and_resizes_the_wrist_frames(tmp_path: Path, write_tiny_episodes) -> None:
    _write(write_tiny_episodes, tmp_path, ("static", "wrist"))
    table = load_steps([tmp_path], WRIST, progress=False)
    assert table.wrist_images.shape == (15, 20, 20, 3) and table.wrist_images.dtype == np.uint8
    assert table.images.shape == (15, 16, 16, 3)
    assert load_steps([tmp_path], TINY, progress=False).wrist_images is None


def test_load_steps_names_the_missing_wrist_camera(tmp_path: Path, write_tiny_episodes) -> None:
    _write(write_tiny_episodes, tmp_path, ("static",))
    with pytest.raises(ValueError, match=r"no camera\(s\) \['wrist'\].*--wrist"):
        load_steps([tmp_path], WRIST, progress=False)


def test_training_updates_the_wrist_encoder(tmp_path: Path, write_tiny_episodes) -> None:
    _write(write_tiny_episodes, tmp_path / "data", ("static", "wrist"))
    table = load_steps([tmp_path / "data"], WRIST, progress=False)
    cfg = TrainConfig(steps=2, batch_size=4, warmup=0, ema_decay=0.0, threads=1)
    trainer = Trainer(table, tmp_path / "out", WRIST, cfg)
    before = {k: v.clone() for k, v in trainer.model.wrist_vision.state_dict().items()}
    trainer.train_step()
    after = trainer.model.wrist_vision.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(trainer.validate()["val_loss"])
