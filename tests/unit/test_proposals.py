"""Proposal samplers: Identity (V-GPS) and GaussianVote (RoboMonkey)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verifiers.proposals import GaussianVote, Identity
from vla_runtime.execution import average_chunks
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.unit

SPEC = ActionSpec()
H, A, G = SPEC.chunk_length, SPEC.dim, SPEC.gripper_index


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def policy_samples(n: int = 8, seed: int = 0, open_fraction: float = 0.75) -> np.ndarray:
    """(n, H, A) chunks scattered around a motion, the first `open_fraction` of them with the gripper open."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 0.004, (n, H, A)).astype(np.float32)
    s[:, :, 0] += 0.01  # a common +x motion
    s[:, :, G] = 0.0
    s[: int(round(open_fraction * n)), :, G] = 1.0
    return s


def test_gaussian_candidates_follow_the_fitted_distribution_and_the_vote() -> None:
    samples = policy_samples(n=8, open_fraction=0.75)
    cand = GaussianVote(SPEC, include_mean=False).propose(samples, 20_000, gen(0))
    assert cand.shape == (20_000, H, A) and cand.dtype == np.float32
    motion = [d for d in range(A) if d != G]
    mean, std = samples.mean(0), samples.std(0)
    sem = std[:, motion].max() / np.sqrt(20_000)  # standard error of a candidate mean
    np.testing.assert_allclose(cand[:, :, motion].mean(0), mean[:, motion], atol=5 * sem + 1e-6)
    np.testing.assert_allclose(cand[:, :, motion].std(0), std[:, motion], rtol=0.05, atol=1e-6)
    assert np.all(cand[:, :, G] == 1.0)  # 6 of 8 samples open: every candidate opens


def test_gripper_ties_close_and_candidates_stay_within_bounds() -> None:
    samples = policy_samples(n=4, open_fraction=0.5)
    samples[:, :, 1] = np.array([0.029, 0.03, -0.03, 0.03], np.float32)[:, None]  # wide spread at the y bound
    cand = GaussianVote(SPEC).propose(samples, 256, gen(1))
    assert np.all(cand[:, :, G] == 0.0)
    assert np.all(cand >= SPEC.low_array()) and np.all(cand <= SPEC.high_array())
    assert cand[:, :, 1].max() == pytest.approx(0.03)  # draws beyond the bound are clipped onto it


def test_first_candidate_is_the_averaged_chunk() -> None:
    samples = policy_samples(n=16, seed=3)
    cand = GaussianVote(SPEC).propose(samples, 8, gen(2))
    np.testing.assert_allclose(cand[0], average_chunks(samples, G), atol=1e-7)
    assert not np.allclose(cand[1], cand[0])


def test_same_generator_seed_same_candidates_other_seed_different() -> None:
    samples = policy_samples()
    prop = GaussianVote(SPEC)
    np.testing.assert_array_equal(prop.propose(samples, 32, gen(5)), prop.propose(samples, 32, gen(5)))
    assert not np.array_equal(prop.propose(samples, 32, gen(5)), prop.propose(samples, 32, gen(6)))


def test_duplicates_are_dropped_and_min_std_restores_exploration() -> None:
    one = policy_samples(n=1)
    cand = GaussianVote(SPEC).propose(one, 16, gen(0))  # std 0: every draw is the sample itself
    assert cand.shape == (1, H, A)
    np.testing.assert_allclose(cand[0], one[0], atol=1e-7)
    spread = GaussianVote(SPEC, min_std=0.002).propose(one, 16, gen(0))
    assert spread.shape == (16, H, A) and len(np.unique(spread.reshape(16, -1), axis=0)) == 16
    with pytest.raises(ValueError, match="min_std .* got -1"):
        GaussianVote(SPEC, min_std=-1.0)


def test_identity_returns_the_policys_own_samples() -> None:
    samples = policy_samples(n=8)
    out = Identity(SPEC).propose(samples, 5, gen(0))
    np.testing.assert_array_equal(out, samples[:5])
    out[0] += 1  # a copy: the caller's samples stay intact
    assert not np.array_equal(out[0], samples[0])
    with pytest.raises(ValueError, match="m=9 > n=8"):
        Identity(SPEC).propose(samples, 9, gen(0))


@pytest.mark.parametrize("bad", [np.zeros((H, A)), np.zeros((2, H, A + 1)), np.zeros((0, H, A))])
def test_bad_sample_shapes_are_rejected(bad: np.ndarray) -> None:
    for prop in (GaussianVote(SPEC), Identity(SPEC)):
        with pytest.raises(ValueError, match=r"samples must be \(n >= 1, 8, 7\)"):
            prop.propose(bad, 4, gen(0))


def test_nan_samples_and_bad_m_are_rejected() -> None:
    samples = policy_samples()
    samples[2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GaussianVote(SPEC).propose(samples, 4, gen(0))
    for m in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="m must be an integer >= 1"):
            GaussianVote(SPEC).propose(policy_samples(), m, gen(0))


def test_keep_samples_appends_the_policy_samples_with_their_own_gripper() -> None:
    samples = policy_samples(n=6, seed=4, open_fraction=0.5)  # 3 of 6 open: the tie closes
    draws = GaussianVote(SPEC).propose(samples, 5, gen(3))
    both = GaussianVote(SPEC, keep_samples=True).propose(samples, 5, gen(3))
    assert both.shape == (11, H, A)
    np.testing.assert_array_equal(both[:5], draws)  # the same draws first, from the same generator stream
    np.testing.assert_array_equal(both[5:], samples)  # then the samples, unchanged (their own gripper)
    assert np.all(both[:5, :, G] == 0.0) and set(both[5:, 0, G]) == {0.0, 1.0}  # draws carry the vote
    again = GaussianVote(SPEC, keep_samples=True).propose(np.repeat(samples[:1], 3, axis=0), 4, gen(0))
    assert len(again) == 1  # identical samples: the mean, the draws (std 0) and the samples are one chunk
