"""SteeringConfig: bad parameters are refused with the value named; methods map to their scorers."""

from __future__ import annotations

import pytest

from verifiers.steering import SteeringConfig

pytestmark = pytest.mark.unit


def test_methods_name_their_scorers() -> None:
    assert SteeringConfig(method="none").scorer_names == ()
    assert SteeringConfig(method="robomonkey").scorer_names == ("verifier",)
    assert SteeringConfig(method="vgps").scorer_names == ("value",)
    assert SteeringConfig(method="both", safety=True).scorer_names == ("verifier", "value", "safety")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "beam"}, "unknown steering method 'beam'"),
    ({"n": 0}, "n and m must be >= 1, got n=0"),
    ({"method": "vgps", "n": 4, "m": 8}, "m=8 must be <= n=4"),
    ({"selection": "top-k"}, "unknown selection 'top-k'"),
    ({"temperature": 0.0}, "temperature must be a positive number, got 0.0"),
    ({"method": "vgps", "weights": (("verifier", 1.0),)}, "weights name scorers \\['verifier'\\]"),
])
def test_bad_parameters_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SteeringConfig(**kwargs)
