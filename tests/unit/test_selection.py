"""Selector: z-scored combination across scorers, rejections, argmax and seeded softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verifiers.selection import Selector

pytestmark = pytest.mark.unit


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_zscores_put_scorers_of_different_units_on_one_scale() -> None:
    # verifier logits in units, Q-values in tens: a raw sum lets Q decide alone
    scores = {"verifier": np.array([0.0, 2.0, 1.0]), "value": np.array([100.0, 0.0, 60.0])}
    combined = Selector().combine(scores)
    z_v = (scores["verifier"] - 1.0) / scores["verifier"].std()
    z_q = (scores["value"] - scores["value"].mean()) / scores["value"].std()
    np.testing.assert_allclose(combined, z_v + z_q)
    assert Selector().select(scores) == 2  # good on both scorers
    assert Selector(zscore=False).select(scores) == 0  # raw: the large-unit scorer wins
    assert Selector(weights={"verifier": 0.1}).select(scores) == 0


def test_rejected_candidates_are_never_chosen_and_all_rejected_is_an_error() -> None:
    scores = {"verifier": np.array([9.0, 1.0, 2.0]), "safety": np.array([-np.inf, 0.0, 0.0])}
    combined = Selector().combine(scores)
    assert np.isneginf(combined[0]) and Selector().select(scores) == 2
    picks = {Selector("softmax", temperature=100.0).select(scores, gen(s)) for s in range(200)}
    assert picks == {1, 2}
    with pytest.raises(ValueError, match="every candidate was rejected"):
        Selector().select({"safety": np.full(3, -np.inf)})


def test_softmax_follows_the_temperature_and_the_generator() -> None:
    scores = {"value": np.array([0.0, 1.0])}
    sel = Selector("softmax", temperature=1.0, zscore=False)
    picks = np.array([sel.select(scores, gen(s)) for s in range(4000)])
    assert picks.mean() == pytest.approx(np.exp(1) / (1 + np.exp(1)), abs=0.03)  # p(1) = 0.731
    cold = Selector("softmax", temperature=0.01, zscore=False)
    assert all(cold.select(scores, gen(s)) == 1 for s in range(50))
    assert [sel.select(scores, gen(7)) for _ in range(5)] == [sel.select(scores, gen(7))] * 5


def test_ties_pick_the_first_candidate_and_a_tied_scorer_is_neutral() -> None:
    assert Selector().select({"v": np.array([1.0, 1.0, 1.0])}) == 0
    scores = {"flat": np.full(3, 5.0), "value": np.array([0.0, 2.0, 1.0])}
    assert Selector().select(scores) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "best"}, "unknown selection mode 'best'"), ({"temperature": 0.0}, "temperature .* got 0.0"),
     ({"weights": {"value": -1.0}}, "weights .*'value': -1.0")],
)
def test_bad_parameters_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Selector(**kwargs)


def test_bad_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="no scores"):
        Selector().combine({})
    with pytest.raises(ValueError, match="one score per candidate"):
        Selector().combine({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="one score per candidate"):
        Selector().combine({"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="'a' returned NaN"):
        Selector().combine({"a": np.array([0.0, np.nan])})


def test_margin_keeps_the_mean_unless_the_best_beats_it_clearly() -> None:
    scores = {"verifier": np.array([1.0, 1.4, 0.2, -np.inf])}
    assert Selector(zscore=False).select(scores) == 1
    assert Selector(zscore=False, margin=0.5).select(scores) == 0  # 1.4 - 1.0 <= 0.5: the mean stays
    assert Selector(zscore=False, margin=0.3).select(scores) == 1
    rejected_mean = {"verifier": np.array([-np.inf, 1.4, 0.2])}
    assert Selector(zscore=False, margin=5.0).select(rejected_mean) == 1  # a rejected mean is never kept
    with pytest.raises(ValueError, match="margin must be a finite number >= 0, got -1"):
        Selector(margin=-1.0)
