"""The committed `models/policy` checkpoint loads, samples sanely and documents how it was made."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vla_runtime.policy.model import VLAPolicy
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

CKPT = Path(__file__).resolve().parents[2] / "models" / "policy"


@pytest.fixture(scope="module")
def policy() -> VLAPolicy:
    torch.set_num_threads(1)
    return VLAPolicy.from_pretrained(CKPT)


def test_bundled_policy_is_safetensors_json_only_and_small() -> None:
    names = sorted(p.name for p in CKPT.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "normalization.json"]
    assert (CKPT / "model.safetensors").stat().st_size < 25 * 2**20
    card = (CKPT / "README.md").read_text()
    assert "vla train policy" in card and "--seed" in card  # the command that made it


def test_bundled_policy_samples_bounded_deterministic_chunks(policy: VLAPolicy) -> None:
    obs = Observation(images={c: np.full((*hw, 3), 120, np.uint8) for c, hw in policy.config.camera_sizes.items()},
                      instruction="pick up the red cube",
                      proprio=np.array([0.5, 0, 0.25, 0, 0.08, 0, -0.3, 0, -2.2, 0, 2.0, 0.8], np.float32))
    ctx = policy.encode(obs)
    a = policy.sample(ctx, 16, torch.Generator().manual_seed(3))
    b = policy.sample(ctx, 16, torch.Generator().manual_seed(3))
    spec = policy.config.action_spec
    assert a.shape == (16, spec.chunk_length, spec.dim) and np.array_equal(a, b)
    assert np.all(a >= spec.low_array()) and np.all(a <= spec.high_array())
    assert a.std(axis=0).max() > 0  # different noise rows give different chunks
