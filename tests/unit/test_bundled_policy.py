"""The committed `models/policy` checkpoint loads, samples sanely and documents how it was made."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_runtime.checkpoint import weights_fingerprint
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


# --------------------------------------------------------------------------- golden actions
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "bundled_policy_actions.json"
# Robot units (metres, radians, gripper 0..1). Float32 CPU kernels differ between machines by ~1e-6;
# a changed weight, scheduler, step count or noise order moves the chunks by 1e-3 or more.
GOLDEN_ATOL = 2e-4


def golden_observation(config) -> Observation:
    """A fixed synthetic observation: seeded noise images, a mid-workspace proprio, a task instruction."""
    rng = np.random.default_rng(2026)
    return Observation(images={c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
                               for c, hw in config.camera_sizes.items()},
                       instruction="put the blue cube in the bowl",
                       proprio=np.array([0.5, 0.05, 0.25, 0, 0.08, 0, -0.3, 0, -2.2, 0, 2.0, 0.8], np.float32))


def golden_actions(policy: VLAPolicy) -> np.ndarray:
    """(2, H, A): two samples from generator seed 7 (an anchor policy estimates its anchor here)."""
    return policy.sample(policy.encode(golden_observation(policy.config)), 2, torch.Generator().manual_seed(7))


def test_bundled_policy_reproduces_its_golden_actions(policy: VLAPolicy) -> None:
    """A silent change of the bundled weights, the sampler or the encoders fails here; a deliberate one
    regenerates the file: `python tests/unit/test_bundled_policy.py --update`."""
    stored = json.loads(GOLDEN.read_text())
    assert stored["fingerprint"] == weights_fingerprint(policy), "models/policy changed: regenerate the golden file"
    got = golden_actions(policy)
    np.testing.assert_allclose(got, np.array(stored["actions"], np.float32), rtol=0, atol=GOLDEN_ATOL)


if __name__ == "__main__" and "--update" in sys.argv:
    torch.set_num_threads(1)
    bundled = VLAPolicy.from_pretrained(CKPT)
    GOLDEN.write_text(json.dumps({"fingerprint": weights_fingerprint(bundled), "seed": 7,
                                  "actions": golden_actions(bundled).round(7).tolist()}) + "\n")
    print(f"wrote {GOLDEN}")
