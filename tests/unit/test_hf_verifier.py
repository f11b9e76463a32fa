"""HFVLMVerifier over a tiny randomly initialised LLaVA built in the test: the scorer contract, the prompt,
checkpoints that reference the base folder, and preference training lowering the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_llava

from verifiers.hf_verifier import HFVerifierConfig, HFVLMVerifier, action_text, fit_preferences
from vla_runtime.policy.protocol import Context
from vla_runtime.types import ActionSpec, Observation

pytestmark = pytest.mark.unit
SPEC = ActionSpec()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return tiny_llava(tmp_path_factory.mktemp("llava") / "tiny")


def _obs(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                       instruction="pick up the red cube", proprio=np.zeros(8, np.float32))


def _chunks(m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(SPEC.low_array(), SPEC.high_array(), (m, SPEC.chunk_length, SPEC.dim)).astype(np.float32)


def test_action_text_writes_every_step_and_dimension() -> None:
    chunk = np.zeros((2, SPEC.dim), np.float32)
    chunk[0, 0], chunk[1, 6] = 0.0125, 1.0
    text = action_text(chunk, SPEC, decimals=3)
    assert text.split(" | ")[0].startswith("dx 0.013 dy 0.000") and text.endswith("gripper 1.000")
    assert text.count("|") == 1


def test_scores_follow_the_contract_and_depend_on_the_action(base: str) -> None:
    v = HFVLMVerifier(HFVerifierConfig(base_model=base), SPEC).eval()
    ctx = Context(cond=torch.zeros(1, 4), observation=_obs())
    cands = _chunks(4)
    s = v.score(ctx, cands)
    assert s.shape == (4,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    assert np.ptp(s) > 0  # the action text reaches the head
    np.testing.assert_allclose(v.score(ctx, cands[::-1]), s[::-1], rtol=1e-5, atol=1e-6)  # batch order (padding)
    with pytest.raises(ValueError, match="NaN"):
        v.score(ctx, np.full((1, SPEC.chunk_length, SPEC.dim), np.nan, np.float32))
    with pytest.raises(ValueError, match="reads camera 'static'"):
        v.score(Context(cond=torch.zeros(1, 4), observation=None), cands)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        HFVLMVerifier(HFVerifierConfig(base_model=str(Path(base) / "missing")), SPEC)
    with pytest.raises(ValueError, match="must contain"):
        HFVerifierConfig(base_model=base, prompt="no placeholders")


def test_preference_training_lowers_the_loss_and_round_trips(base: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    v = HFVLMVerifier(HFVerifierConfig(base_model=base), SPEC)
    frozen = {k: p.clone() for k, p in v.vlm.named_parameters()}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    experts = _chunks(1, seed=1) * 0.2
    losses = fit_preferences(v, images, ["lift the cube"], experts, SPEC.low_array(), SPEC.high_array(),
                             steps=40, rng=rng, lr=3e-2)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert all(torch.equal(p, frozen[k]) for k, p in v.vlm.named_parameters())  # only the head trains
    ckpt = v.save_pretrained(tmp_path / "hfv")
    assert sorted(f.name for f in ckpt.iterdir()) == ["config.json", "model.safetensors"]  # the base is referenced
    again = HFVLMVerifier.from_pretrained(ckpt)
    ctx = Context(cond=torch.zeros(1, 4), observation=_obs())
    np.testing.assert_allclose(again.score(ctx, _chunks(3)), v.eval().score(ctx, _chunks(3)), rtol=1e-5)
