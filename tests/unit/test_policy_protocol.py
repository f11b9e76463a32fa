"""Every backend implements the `Policy` contract, checked by behaviour, not only by attribute names."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from vla_runtime.backends import load_policy
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.protocol import Context, EpisodeEncoder, Policy
from vla_runtime.types import PROPRIO_NAMES, Observation

pytestmark = pytest.mark.unit

H, A = TINY.horizon, TINY.action_dim
PARITY_ATOL = 1e-4  # robot units: onnxruntime vs eager torch on the same noise


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return VLAPolicy(TINY, uniform_normalizer()).eval().save_pretrained(tmp_path_factory.mktemp("p") / "policy")


def _obs(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                       proprio=rng.normal(size=len(PROPRIO_NAMES)).astype(np.float32), instruction="lift the cube")


def _backends() -> list:
    from vla_runtime.backends.tensorrt import trt_available

    trt = pytest.mark.skipif(not trt_available()[0], reason=f"tensorrt: {trt_available()[1]}")
    return ["torch", "onnx", pytest.param("tensorrt", marks=trt), "remote"]


@contextmanager
def _served(checkpoint: Path, backend: str):
    """The path `load_policy` takes for `backend`: the checkpoint, or (remote) the URL of `vla serve` on it."""
    if backend != "remote":
        yield checkpoint
        return
    pytest.importorskip("openpi_client", reason="openpi-client is not installed")
    from vla_app.serve import ServerThread

    with ServerThread(load_policy(checkpoint, "torch")) as server:
        yield server.url


@pytest.mark.parametrize("backend", _backends())
def test_backend_keeps_the_policy_contract(backend: str, checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # onnx / tensorrt export the checkpoint into ./runs on first use
    with _served(checkpoint, backend) as path:
        _check_contract(load_policy(path, backend), checkpoint)


def _check_contract(policy, checkpoint: Path) -> None:
    assert isinstance(policy, Policy)
    assert policy.action_spec == TINY.action_spec and policy.config == TINY
    ctx = policy.encode(_obs())
    assert isinstance(ctx, Context)
    if getattr(policy, "provides_token", True):  # a remote policy's token stays on its server
        assert tuple(ctx.cond.shape) == (1, TINY.d_model)
    chunks = policy.sample(ctx, 3, torch.Generator().manual_seed(7))
    assert chunks.shape == (3, H, A) and chunks.dtype == np.float32
    spec = policy.action_spec
    assert np.all(chunks >= spec.low_array() - 1e-6) and np.all(chunks <= spec.high_array() + 1e-6)
    again = policy.sample(ctx, 3, torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(chunks, again)  # same generator state, same chunks
    assert not np.allclose(chunks, policy.sample(ctx, 3, torch.Generator().manual_seed(8)))
    reference = load_policy(checkpoint, "torch")
    expected = reference.sample(reference.encode(_obs()), 3, torch.Generator().manual_seed(7))
    assert np.abs(chunks - expected).max() <= PARITY_ATOL  # the same actions as the eager model
    policy.reset()
    with pytest.raises(ValueError, match="n must be >= 1"):
        policy.sample(ctx, 0, torch.Generator())


def test_the_torch_backend_refuses_an_export_folder(checkpoint: Path, tmp_path: Path) -> None:
    from vla_runtime.export import export_onnx

    out = export_onnx(checkpoint, tmp_path / "onnx")
    with pytest.raises(ValueError, match="is an ONNX export; the torch backend loads the checkpoint"):
        load_policy(out, "torch")
    assert isinstance(load_policy(out, "onnx"), Policy)  # the export itself loads on onnx


def test_a_policy_without_reset_is_not_a_policy(checkpoint: Path) -> None:
    class Partial:
        config = TINY
        action_spec = TINY.action_spec

        def encode(self, obs, anchor=None): ...

        def sample(self, ctx, n, generator=None, noise=None): ...

    assert not isinstance(Partial(), Policy)


def test_episode_encoder_resets_the_policy(checkpoint: Path) -> None:
    policy = load_policy(checkpoint, "torch")
    calls = []
    policy.reset = lambda: calls.append("reset")
    encoder = EpisodeEncoder(policy)
    encoder.reset()
    assert calls == ["reset"]
