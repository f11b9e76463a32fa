"""Training options: DART chunk masks, fine-tuning from a checkpoint, grounding pre-training, the
object head's input, and which proprio entries the policy sees."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.steps import consistent_chunk_mask, load_steps
from vla_runtime.policy.train import TrainConfig, Trainer, train_policy
from vla_runtime.training import state_dir

pytestmark = pytest.mark.unit

SPEC = TINY.action_spec
A, P = TINY.action_dim, TINY.proprio_dim


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_chunk_mask_stops_after_a_relabelled_step() -> None:
    # T=5, H=3, step 1 relabelled: chunks starting at 0 and 1 keep their first label past step 1 only
    # if they start after it; the position right after a relabelled step is the first invalid one.
    got = consistent_chunk_mask(5, 3, [1])
    want = np.array([
        [1, 1, 0],  # t=0: labels 0, 1 valid (state at 1 reached by the clean action 0), 2 follows step 1
        [1, 0, 0],  # t=1: label 1 valid, later ones follow the perturbed step 1
        [1, 1, 1],
        [1, 1, 1],  # past the end (padding) stays valid
        [1, 1, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(consistent_chunk_mask(3, 2, []), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="relabelled step 7"):
        consistent_chunk_mask(5, 3, [7])


def test_loss_ignores_the_labels_the_chunk_mask_excludes() -> None:
    torch.manual_seed(0)
    model = VLAPolicy(TINY, uniform_normalizer()).eval()
    rng = np.random.default_rng(0)
    n, h = 8, TINY.horizon
    images = torch.rand(n, 3, 16, 16)
    lang, proprio = torch.rand(n, TINY.language_dim), torch.rand(n, P)
    actions = torch.from_numpy(rng.uniform(SPEC.low_array(), SPEC.high_array(), (n, h, A)).astype(np.float32))
    mask = torch.ones(n, h, dtype=torch.bool)
    mask[:, 2:] = False
    changed = actions.clone()
    changed[:, 2:] = 0.0

    def loss(acts: torch.Tensor, m: torch.Tensor | None) -> float:
        with torch.no_grad():  # same noise and timesteps every call
            return float(model.loss(images, lang, proprio, acts, generator=torch.Generator().manual_seed(3),
                                    chunk_mask=m))

    full = loss(actions, None)
    assert loss(actions, torch.ones(n, h, dtype=torch.bool)) == pytest.approx(full, rel=1e-6)
    assert loss(actions, mask) != pytest.approx(full, rel=1e-3)  # the mask changes which positions count
    # At initialisation the DiT's output layer is zero, so its noise error does not depend on the
    # labels: only the chunk-regression term does. Labels the mask excludes must then not matter...
    assert not model.head.action_out.weight.any()
    assert loss(changed, mask) == pytest.approx(loss(actions, mask), rel=1e-6)
    # ...while without the mask they do.
    assert loss(changed, None) != pytest.approx(full, rel=1e-3)


def _write_dataset(write, root: Path, episodes: int = 4, t: int = 6, relabelled: list[int] | None = None,
                   with_scene: bool = False) -> None:
    metas = []
    for i in range(episodes):
        meta = {"task": "pick_lift", "quality": "dart", "seed": i, "instruction": f"lift {i % 2}"}
        if relabelled is not None:
            meta["relabelled_steps"] = relabelled
        if with_scene:  # the first frames then carry object labels
            meta["scene"] = {"objects": [{"xy": [0.4 + 0.05 * i, 0.1]}], "base_index": None}
        metas.append(meta)
    write(root, metas, t=t, seed=1)


def test_load_steps_reads_relabelled_steps_from_the_episode_meta(tmp_path: Path, write_tiny_episodes) -> None:
    _write_dataset(write_tiny_episodes, tmp_path, episodes=2, t=6, relabelled=[2])
    table = load_steps([tmp_path], TINY, progress=False)
    np.testing.assert_array_equal(table.chunk_mask[:6], consistent_chunk_mask(6, TINY.horizon, [2]))
    assert table.chunk_mask.shape == (12, TINY.horizon) and not table.chunk_mask.all()


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_its_normalisation(tmp_path: Path,
                                                                            write_tiny_episodes) -> None:
    _write_dataset(write_tiny_episodes, tmp_path / "data", episodes=4, t=6)
    cfg = TrainConfig(steps=2, batch_size=4, val_every=1, ckpt_every=2, warmup=0, ema_decay=0.0, threads=1)
    base = tmp_path / "base"
    train_policy([tmp_path / "data"], base, TINY, cfg, progress=False)
    init = VLAPolicy.from_pretrained(base)
    table = load_steps([tmp_path / "data"], init.config, progress=False)
    trainer = Trainer(table, tmp_path / "ft", init.config, cfg, init=init)
    for (k, v), (k2, v2) in zip(trainer.model.state_dict().items(), init.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert trainer.model.normalizer.to_dict() == init.normalizer.to_dict()
    trainer.train_step()
    moved = any(not torch.equal(v, init.state_dict()[k]) for k, v in trainer.model.state_dict().items())
    assert moved  # the copy trains; the loaded checkpoint object is untouched
    assert all(torch.equal(v, VLAPolicy.from_pretrained(base).state_dict()[k]) for k, v in init.state_dict().items())


def test_hidden_proprio_entries_cannot_change_the_condition() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, proprio_inputs=("ee_yaw", "gripper_width"))
    model = VLAPolicy(cfg, uniform_normalizer()).eval()
    images, lang = torch.rand(2, 3, 16, 16), torch.rand(2, cfg.language_dim)
    proprio = torch.rand(2, P)
    moved = proprio.clone()
    moved[:, [0, 1, 2, 5, 11]] += 1.0  # ee xyz and joints: hidden
    with torch.no_grad():
        assert torch.equal(model.condition(images, lang, proprio), model.condition(images, lang, moved))
        seen = proprio.clone()
        seen[:, 4] += 1.0  # gripper width: seen
        assert not torch.allclose(model.condition(images, lang, proprio), model.condition(images, lang, seen))
    with pytest.raises(ValueError, match="'ee_roll'"):
        dataclasses.replace(TINY, proprio_inputs=("ee_roll",))
    with pytest.raises(ValueError, match="distinct"):
        dataclasses.replace(TINY, proprio_inputs=("ee_z", "ee_z"))
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("source", "reaches_proprio"), [("cond", True), ("vision", False)])
def test_object_head_reads_the_features_its_config_names(source: str, reaches_proprio: bool) -> None:
    """With "vision" the object loss cannot be satisfied through proprio (the arm's own progress)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, aux_object_input=source, aux_weight=0.0)
    model = VLAPolicy(cfg, uniform_normalizer())
    n = 4
    images, lang, proprio = torch.rand(n, 3, 16, 16), torch.rand(n, cfg.language_dim), torch.rand(n, P)
    actions = torch.zeros(n, cfg.horizon, A)
    xy = torch.tensor([[0.45, -0.1, 0.6, 0.2]] * n)
    mask = torch.ones(n, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    with_obj = model.loss(images, lang, proprio, actions, generator=g, object_xy=xy, object_mask=mask)
    g = torch.Generator().manual_seed(0)
    without = model.loss(images, lang, proprio, actions, generator=g)
    (with_obj - without).backward()  # the object term alone
    grad = model.proprio_mlp[0].weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == reaches_proprio
    assert model.vision.out[0].weight.grad.abs().sum() > 0  # vision always learns from it
    with pytest.raises(ValueError, match="'pixels'"):
        dataclasses.replace(TINY, aux_object_input="pixels")


def test_grounding_steps_train_only_the_object_loss_on_labelled_frames(tmp_path: Path, write_tiny_episodes) -> None:
    _write_dataset(write_tiny_episodes, tmp_path / "data", episodes=4, t=6, with_scene=True)
    cfg = dataclasses.replace(TINY, aux_object_input="vision")
    table = load_steps([tmp_path / "data"], cfg, object_label_steps=2, progress=False)
    tcfg = TrainConfig(steps=3, grounding_steps=2, batch_size=4, warmup=0, ema_decay=0.0, threads=1,
                       val_fraction=0.25)
    trainer = Trainer(table, tmp_path / "out", cfg, tcfg)
    assert table.object_mask[trainer.ground_idx].all() and len(trainer.ground_idx) > 0
    head0 = {k: v.clone() for k, v in trainer.model.head.state_dict().items()}
    vision0 = trainer.model.vision.out[0].weight.clone()

    def step() -> None:  # what `Run.loop` does per step
        trainer.train_step()
        trainer.run.step += 1

    step()
    step()
    assert all(torch.equal(v, head0[k]) for k, v in trainer.model.head.state_dict().items())  # DiT untouched
    assert not torch.equal(trainer.model.vision.out[0].weight, vision0)
    step()  # the joint phase trains the DiT
    assert any(not torch.equal(v, head0[k]) for k, v in trainer.model.head.state_dict().items())
    with pytest.raises(ValueError, match="grounding_steps must be in"):
        TrainConfig(steps=3, grounding_steps=3)
    with pytest.raises(ValueError, match="needs object labels"):
        Trainer(table, tmp_path / "out2", dataclasses.replace(cfg, aux_object_weight=0.0), tcfg)


def test_cli_sets_vision_strides_and_shift_and_rejects_bad_strides(tmp_path: Path, write_tiny_episodes,
                                                                     capsys) -> None:
    from vla_app.cli import main

    _write_dataset(write_tiny_episodes, tmp_path / "data", episodes=2, t=6)
    common = ["train", "policy", "--data", str(tmp_path / "data"), "--steps", "1", "--batch-size", "4",
              "--image-size", "16", "--threads", "1", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "p"), "--vision-strides", "2,1,1", "--random-shift", "3"]) == 0
    cfg = VLAPolicy.from_pretrained(tmp_path / "p").config
    train_config = json.loads((state_dir(tmp_path / "p") / "trainer.json").read_text())["train_config"]
    assert cfg.vision_strides == (2, 1, 1) and train_config["random_shift"] == 3
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "q"), "--vision-strides", "3,1,1"]) != 0
    assert "(3, 1, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--out", str(tmp_path / "q"), "--vision-strides", "2,x"])
    assert "comma-separated integers" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
