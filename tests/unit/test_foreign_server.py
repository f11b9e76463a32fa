"""A foreign openpi server (not ours: its own keys, state layout, horizon, action normalisation; its
metadata states none of our extensions) driven through a .json description: requests carry the state in
its order, its chunks come back in our convention, and every mismatch is refused naming what differs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openpi_client", reason="openpi-client is not installed")

from foreign_openpi import DIM, HORIZON, OFFSET, SCALE, STATE, TAKE, ForeignServer

from vla_runtime.backends import load_policy
from vla_runtime.types import PROPRIO_NAMES, Observation

pytestmark = pytest.mark.unit


def describe(folder: Path, url: str, **changes) -> str:
    d = {"url": url, "keys": {"images": {"static": "image/base"}, "state": "state", "prompt": "task",
                              "actions": "actions"},
         "image_size": [64, 64], "state": list(STATE),
         "actions": {"horizon": HORIZON, "dim": DIM, "take": TAKE, "scale": SCALE, "offset": OFFSET},
         "expect_metadata": {"model": "pi0-test"}, **changes}
    path = folder / "foreign.json"
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture
def server():
    s = ForeignServer({"model": "pi0-test"})
    yield s
    s.stop()


def observation(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)},
                       instruction="push the cube", proprio=rng.normal(size=len(PROPRIO_NAMES)).astype(np.float32))


def test_a_foreign_servers_chunks_come_back_in_our_convention(server, tmp_path) -> None:
    policy = load_policy(describe(tmp_path, server.url), "remote")
    assert policy.config.image_size == (64, 64) and not policy.provides_token
    obs = observation()
    chunks = policy.sample(policy.encode(obs), 3, torch.Generator().manual_seed(0))
    spec = policy.action_spec
    assert chunks.shape == (3, spec.chunk_length, spec.dim) and len(server.requests) == 3
    request = server.requests[0]
    expected_state = [obs.proprio[PROPRIO_NAMES.index(n)] for n in STATE]
    np.testing.assert_array_equal(request["state"], np.asarray(expected_state, np.float32))  # its layout
    assert request["task"] == "push the cube" and request["image/base"].shape == (64, 64, 3)
    t, k = np.meshgrid(np.arange(HORIZON), np.arange(DIM), indexing="ij")
    theirs = np.tanh(np.float32(expected_state[0]) + 0.1 * t - 0.05 * k).astype(np.float32)
    ours = np.clip(theirs[: spec.chunk_length][:, TAKE] * np.float32(SCALE) + np.float32(OFFSET),
                   spec.low_array(), spec.high_array())
    np.testing.assert_allclose(chunks[0], ours, atol=1e-6)
    with pytest.raises(ValueError, match="draws its own noise"):
        policy.sample(policy.encode(obs), 2, noise=torch.zeros(2, spec.chunk_length, spec.dim))


def test_what_the_description_gets_wrong_is_refused(server, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"metadata differs .*'model': \('pi0-other', 'pi0-test'\)"):
        load_policy(describe(tmp_path, server.url, expect_metadata={"model": "pi0-other"}), "remote")
    with pytest.raises(ValueError, match=r"foreign\.json.*horizon 4 is shorter than our chunk length 8"):
        load_policy(describe(tmp_path, server.url, actions={"horizon": 4, "dim": DIM, "take": TAKE, "scale": SCALE,
                                                            "offset": OFFSET}), "remote")
    with pytest.raises(ValueError, match=r"unknown \['joint_7'\]"):
        load_policy(describe(tmp_path, server.url, state=["joint_7"]), "remote")
    with pytest.raises(ValueError, match="outside the server's 0..7"):
        load_policy(describe(tmp_path, server.url, actions={"horizon": HORIZON, "dim": DIM, "take": [*TAKE[:-1], 9],
                                                            "scale": SCALE, "offset": OFFSET}), "remote")


def test_a_server_whose_chunks_differ_from_its_description_is_an_error(tmp_path) -> None:
    wrong = ForeignServer({"model": "pi0-test"}, shape=(HORIZON, DIM - 1))
    try:
        policy = load_policy(describe(tmp_path, wrong.url), "remote")
        with pytest.raises(ValueError, match=r"returned actions \(10, 7\), its description says finite \(10, 8\)"):
            policy.sample(policy.encode(observation()), 1)
    finally:
        wrong.stop()


def test_our_server_without_a_description_is_refused_for_a_foreign_one(server) -> None:
    with pytest.raises(ValueError, match="describe a foreign openpi server in a .json file"):
        load_policy(server.url, "remote")
