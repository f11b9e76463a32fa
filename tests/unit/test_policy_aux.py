"""The training-only auxiliary losses: chunk regression and target/goal localisation from scene labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.steps import load_steps, object_targets

pytestmark = pytest.mark.unit

SPEC = TINY.action_spec
H, A, P = TINY.horizon, TINY.action_dim, TINY.proprio_dim
OBJ = [{"name": "red cube", "xy": [0.45, -0.1]}, {"name": "blue cube", "xy": [0.6, 0.2]}]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _batch(n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    f = lambda *s: torch.from_numpy(rng.uniform(0, 1, s).astype(np.float32))  # noqa: E731
    actions = torch.from_numpy(rng.uniform(SPEC.low_array(), SPEC.high_array(), (n, H, A)).astype(np.float32))
    object_xy = torch.from_numpy(rng.uniform([0.3, -0.3] * 2, [0.7, 0.3] * 2, (n, 4)).astype(np.float32))
    return f(n, 3, 16, 16), f(n, TINY.language_dim), f(n, P), actions, object_xy


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        ({"objects": OBJ, "container": {"xy": [0.6, 0.05]}}, [0.45, -0.1, 0.6, 0.05]),  # place_in
        ({"objects": OBJ, "base_index": 1}, [0.45, -0.1, 0.6, 0.2]),  # stack
        ({"objects": OBJ, "regions": [{"name": "left", "xy": [0.5, 0.2]}, {"name": "right", "xy": [0.5, -0.2]}],
          "goal_region": "right"}, [0.45, -0.1, 0.5, -0.2]),  # push_to
        ({"objects": OBJ, "base_index": None, "container": None, "goal_region": None}, [0.45, -0.1, 0.45, -0.1]),
    ],
)
def test_object_targets_pick_the_goal_of_each_task(scene: dict, expected: list[float]) -> None:
    np.testing.assert_allclose(object_targets(scene), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("scene", [{}, {"objects": []}, {"objects": OBJ, "goal_region": "nowhere", "regions": []},
                                   {"objects": [{"xy": [float("nan"), 0.0]}]}])
def test_object_targets_is_none_for_unusable_scenes(scene: dict) -> None:
    assert object_targets(scene) is None


def test_object_loss_counts_only_masked_rows_and_weight_zero_drops_the_head() -> None:
    torch.manual_seed(0)
    model = VLAPolicy(TINY, uniform_normalizer()).eval()
    images, lang, proprio, actions, object_xy = _batch()
    with torch.no_grad():
        base = float(model.loss(images, lang, proprio, actions, generator=torch.Generator().manual_seed(1)))
        none = float(model.loss(images, lang, proprio, actions, generator=torch.Generator().manual_seed(1),
                                object_xy=object_xy, object_mask=torch.zeros(16, dtype=torch.bool)))
        full = float(model.loss(images, lang, proprio, actions, generator=torch.Generator().manual_seed(1),
                                object_xy=object_xy, object_mask=torch.ones(16, dtype=torch.bool)))
    assert none == base and full > base  # the labels add a term only where the mask says so
    off = VLAPolicy(dataclasses.replace(TINY, aux_weight=0.0, aux_object_weight=0.0), uniform_normalizer())
    assert not [k for k in off.state_dict() if k.startswith(("aux_head", "aux_object_head"))]
    with pytest.raises(ValueError, match="no object head"):
        off.object_xy(torch.zeros(1, TINY.d_model))


def test_object_head_learns_the_labels_it_is_given() -> None:
    """A real gradient path: the object error drops when the tiny model overfits one batch."""
    torch.manual_seed(0)
    model = VLAPolicy(TINY, uniform_normalizer())
    images, lang, proprio, actions, object_xy = _batch()
    mask = torch.ones(16, dtype=torch.bool)

    def err() -> float:
        with torch.no_grad():
            vis, _ = model.features(images, lang, proprio)  # TINY's object head reads the vision features
            return float((model.object_xy(vis) - object_xy).abs().mean())

    start = err()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        loss = model.loss(images, lang, proprio, actions, generator=g, object_xy=object_xy, object_mask=mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert err() < 0.3 * start, (start, err())


def test_load_steps_labels_only_early_steps_of_episodes_with_a_scene(tmp_path: Path, write_tiny_episodes) -> None:
    base = {"task": "stack", "quality": "expert", "instruction": "stack it"}
    write_tiny_episodes(tmp_path, [{**base, "seed": 0, "scene": {"objects": OBJ, "base_index": 1}},
                                   {**base, "seed": 1}], t=5)
    table = load_steps([tmp_path], TINY, object_label_steps=3, progress=False)
    assert table.object_mask.tolist() == [True] * 3 + [False] * 2 + [False] * 5  # labels on 3 frames
    np.testing.assert_allclose(table.object_xy[:5], np.tile([0.45, -0.1, 0.6, 0.2], (5, 1)), atol=1e-7)


@pytest.mark.parametrize(("strides", "side"), [((1, 1, 1), 8), ((1, 2, 1), 4), ((2, 2, 1), 2)])
def test_vision_strides_set_the_keypoint_map_size(strides: tuple[int, ...], side: int) -> None:
    from vla_runtime.policy.vision import VisionEncoder

    enc = VisionEncoder((8, 8, 8), 4, 4, cond_dim=32, out_dim=32, strides=strides)
    seen = []
    enc.keypoints.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    out = enc(torch.zeros(2, 3, 16, 16), torch.zeros(2, 32))
    assert seen == [(2, 8, side, side)] and out.shape == (2, 32)
    with pytest.raises(ValueError, match="one stride per block"):
        VisionEncoder((8, 8), 4, 4, cond_dim=32, out_dim=32, strides=(1, 1, 1))
