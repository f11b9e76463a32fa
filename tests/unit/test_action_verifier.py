"""The learned action verifier: shapes, checkpoints, and that preference training teaches it to rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.preferences import nrmse, perturb, preference_loss, preference_pairs
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.protocol import Context
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.unit

SPEC = ActionSpec()
H, A = SPEC.chunk_length, SPEC.dim
CFG = VerifierConfig(cond_dim=64, hidden=64, layers=2)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def toy_states(n: int, seed: int, norm: Normalizer) -> tuple[torch.Tensor, np.ndarray]:
    """n states whose conditioning token encodes the expert chunk (what a trained policy token carries)."""
    rng = np.random.default_rng(seed)
    expert = rng.uniform(SPEC.low_array() / 2, SPEC.high_array() / 2, (n, H, A)).astype(np.float32)
    expert[:, :, SPEC.gripper_index] = rng.integers(0, 2, (n, 1))
    flat = norm.normalize_actions(torch.from_numpy(expert)).flatten(1)  # (n, 56)
    cond = torch.cat([flat, torch.zeros(n, CFG.cond_dim - flat.shape[1])], dim=1)
    return cond, expert


def pairs_for(cond: torch.Tensor, expert: np.ndarray, norm: Normalizer, seed: int):
    rng = np.random.default_rng(seed)
    lo, hi = norm.action_low, norm.action_high
    rows = []
    for i in range(len(expert)):
        cand, _ = perturb(expert[i], 16, SPEC, lo, hi, rng)
        w, lo_idx, d = preference_pairs(nrmse(cand, expert[i], lo, hi), 8, rng)
        rows += [(i, cand[a], cand[b], dd) for a, b, dd in zip(w, lo_idx, d)]
    idx = torch.tensor([r[0] for r in rows])
    win = torch.from_numpy(np.stack([r[1] for r in rows]))
    lose = torch.from_numpy(np.stack([r[2] for r in rows]))
    return cond[idx], win, lose, torch.tensor([r[3] for r in rows], dtype=torch.float32)


def test_preference_training_teaches_it_to_rank_held_out_pairs() -> None:
    torch.manual_seed(0)
    norm = uniform_normalizer(256)
    model = ActionVerifier(CFG, norm)
    train = pairs_for(*toy_states(200, 0, norm), norm, seed=1)
    test = pairs_for(*toy_states(60, 2, norm), norm, seed=3)

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(test[0], test[1]) > model(test[0], test[2])).float().mean())

    before = accuracy()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        pick = torch.randint(0, len(train[0]), (128,), generator=gen)
        c, w, lose, d = (t[pick] for t in train)
        loss = preference_loss(model(c, w), model(c, lose), d, alpha=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy() > 0.8 > before + 0.15


def test_scores_have_one_value_per_candidate_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ActionVerifier(CFG, uniform_normalizer(256)).eval()
    cond = Context(cond=torch.randn(1, CFG.cond_dim))
    cand = np.random.default_rng(0).uniform(SPEC.low_array(), SPEC.high_array(), (5, H, A)).astype(np.float32)
    scores = model.score(cond, cand)
    assert scores.shape == (5,) and np.all(np.isfinite(scores)) and len(set(scores.round(9))) == 5
    loaded = ActionVerifier.from_pretrained(model.save_pretrained(tmp_path / "verifier"))
    np.testing.assert_array_equal(loaded.score(cond, cand), scores)
    assert sorted(p.name for p in (tmp_path / "verifier").iterdir()) == ["config.json", "model.safetensors",
                                                                          "normalization.json"]


def test_bad_inputs_and_checkpoints_fail_with_the_problem_named(tmp_path: Path) -> None:
    model = ActionVerifier(CFG, uniform_normalizer(256)).eval()
    cond = Context(cond=torch.randn(1, CFG.cond_dim))
    with pytest.raises(ValueError, match=r"candidates must be \(m >= 1, 8, 7\)"):
        model.score(cond, np.zeros((H, A), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.score(cond, np.full((2, H, A), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"cond must be \(1, 64\)"):
        model.score(Context(cond=torch.randn(2, CFG.cond_dim)), np.zeros((2, H, A), np.float32))
    with pytest.raises(ValueError, match="hidden must be an integer >= 1, got 0"):
        VerifierConfig(hidden=0)
    ckpt = model.save_pretrained(tmp_path / "v")
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="unreadable"):
        ActionVerifier.from_pretrained(ckpt)
    (ckpt / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        ActionVerifier.from_pretrained(ckpt)
