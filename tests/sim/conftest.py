"""Shared simulator-tier fixtures: tiny policy, verifier and value checkpoints that steer closed loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.value import ValueConfig, ValueFunction
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.types import ActionSpec

SPEC = ActionSpec()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("steer")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    norm = Normalizer.fit(rng.uniform(SPEC.low_array(), SPEC.high_array(), (64, SPEC.dim)),
                          rng.normal(size=(64, TINY.proprio_dim)))
    policy = VLAPolicy(TINY, norm)
    with torch.no_grad():
        policy.head.action_out.weight.normal_(0.0, 0.3)
    fp = weights_fingerprint(policy)
    verifier = ActionVerifier(VerifierConfig(cond_dim=32, hidden=16, layers=1, policy=fp), norm)
    value = ValueFunction(ValueConfig(cond_dim=32, hidden=16, layers=1, bins=11, policy=fp), norm)
    other = ActionVerifier(VerifierConfig(cond_dim=32, hidden=16, layers=1, policy="0123456789abcdef"), norm)
    return {"policy": policy.save_pretrained(root / "policy"), "verifier": verifier.save_pretrained(root / "v"),
            "value": value.save_pretrained(root / "q"), "other": other.save_pretrained(root / "other")}


