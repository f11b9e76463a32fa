"""Synthetic preference data (perturbations of the expert chunk ranked by NRMSE) and RoboMonkey's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verifiers.preferences import PerturbConfig, nrmse, perturb, preference_loss, preference_pairs
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.unit

SPEC = ActionSpec()
H, A, G = SPEC.chunk_length, SPEC.dim, SPEC.gripper_index
LOW = np.array([-0.02, -0.03, -0.03, -0.001, -0.001, -0.2, 0.0], np.float32)  # q01-like, narrower than the spec
HIGH = np.array([0.024, 0.03, 0.03, 0.001, 0.001, 0.27, 1.0], np.float32)


def expert_chunk() -> np.ndarray:
    e = np.zeros((H, A), np.float32)
    e[:, 0], e[:, 2], e[:, G] = 0.01, -0.02, 1.0
    return e


def test_nrmse_divides_each_dimension_by_its_range() -> None:
    e = expert_chunk()
    c = np.repeat(e[None], 2, axis=0)
    c[0, :, 0] += 0.0044  # a tenth of dx's range
    c[1, :, 2] += 0.006  # a tenth of dz's range
    err = nrmse(c, e, LOW, HIGH)
    np.testing.assert_allclose(err, [0.1 / np.sqrt(A), 0.1 / np.sqrt(A)], rtol=1e-5)
    assert nrmse(e[None], e, LOW, HIGH)[0] == 0.0


def test_perturbations_cover_every_kind_stay_in_bounds_and_are_seeded() -> None:
    e = expert_chunk()
    cand, kinds = perturb(e, 600, SPEC, LOW, HIGH, np.random.default_rng(0))
    assert cand.shape == (600, H, A) and set(kinds.tolist()) == {0, 1, 2}
    assert np.all(cand >= SPEC.low_array()) and np.all(cand <= SPEC.high_array())
    flips = cand[kinds == 2]
    assert np.all(flips[:, -1, G] == 0.0) and np.all(flips[:, :, :G] == e[:, :G])  # only the gripper changed
    shifted = cand[kinds == 1] - e  # one motion dimension, one constant offset over the chunk
    assert all(len(np.flatnonzero(np.abs(s).max(0) > 0)) <= 1 for s in shifted)
    assert np.all(cand[kinds != 2][:, :, G] == 1.0)  # motion perturbations leave the gripper decision
    again, _ = perturb(e, 600, SPEC, LOW, HIGH, np.random.default_rng(0))
    np.testing.assert_array_equal(cand, again)


def test_larger_perturbations_rank_worse() -> None:
    e = expert_chunk()
    rng = np.random.default_rng(1)
    small = perturb(e, 200, SPEC, LOW, HIGH, rng, PerturbConfig(gaussian_stds=(0.05,), kind_probs=(1, 0, 0)))[0]
    large = perturb(e, 200, SPEC, LOW, HIGH, rng, PerturbConfig(gaussian_stds=(0.5,), kind_probs=(1, 0, 0)))[0]
    assert nrmse(small, e, LOW, HIGH).max() < nrmse(large, e, LOW, HIGH).min()


def test_pairs_put_the_closer_candidate_first_and_skip_near_ties() -> None:
    errors = np.array([0.0, 0.005, 0.2, 0.5])
    w, lo, d = preference_pairs(errors, 500, np.random.default_rng(0), min_gap=0.01)
    assert len(w) > 100 and np.all(errors[w] < errors[lo]) and np.all(d > 0.01)
    np.testing.assert_allclose(d, errors[lo] - errors[w])
    assert not any({a, b} == {0, 1} for a, b in zip(w, lo))  # |0.0 - 0.005| is a near-tie
    with pytest.raises(ValueError, match=r"\(k >= 2,\)"):
        preference_pairs(np.array([0.1]), 5, np.random.default_rng(0))


def test_loss_is_bradley_terry_plus_the_gap_term() -> None:
    r_w, r_l, d = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5]), torch.tensor([1.0, 0.2])
    terms = [g - 0.1 * (ds - abs(g)) ** 2 for g, ds in [(1.0, 1.0), (-0.5, 0.2)]]  # gap, d* per pair
    want = -np.mean([math.log(1 / (1 + math.exp(-x))) for x in terms])
    assert preference_loss(r_w, r_l, d, alpha=0.1).item() == pytest.approx(want, rel=1e-6)
    bt = -torch.nn.functional.logsigmoid(r_w - r_l).mean()
    assert preference_loss(r_w, r_l, d, alpha=0.0).item() == pytest.approx(bt.item())
    # a reward gap that matches d* costs less than one that overshoots it by the same order margin
    assert preference_loss(torch.tensor([0.3]), torch.tensor([0.0]), torch.tensor([0.3]), alpha=10.0) < \
        preference_loss(torch.tensor([3.0]), torch.tensor([0.0]), torch.tensor([0.3]), alpha=10.0)
    with pytest.raises(ValueError, match="share a shape"):
        preference_loss(r_w, r_l, torch.zeros(3))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"shape \(8, 7\), got \(8, 6\)"):
        perturb(np.zeros((H, A - 1)), 4, SPEC, LOW, HIGH, np.random.default_rng(0))
    with pytest.raises(ValueError, match="kind_probs"):
        PerturbConfig(kind_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="gaussian_stds"):
        PerturbConfig(gaussian_stds=(0.1, -0.2))
