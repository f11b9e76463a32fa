"""`vla serve` and the `remote` backend over real localhost websockets: the maintained openpi client reads
our server, the remote policy draws the in-process policy's chunks from the same generator, steering over
it refuses token scorers, and bad frames, oversized frames, a mapping mismatch and a server that goes away
and comes back are handled without the server going down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openpi_client", reason="openpi-client is not installed")

from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from verifiers.steering import SteeringConfig, build_steered
from vla_app.serve import ServerThread
from vla_runtime.backends import load_policy
from vla_runtime.backends.remote import RemotePolicy
from vla_runtime.remote_protocol import MAX_FRAME_BYTES, RemoteMapping
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "models" / "policy"


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICY, "torch")


@pytest.fixture
def server(policy):
    with ServerThread(policy) as running:
        yield running


def observation(policy, seed: int = 0, instruction: str = "pick up the red cube") -> Observation:
    cfg = policy.config
    rng = np.random.default_rng(seed)
    return Observation(images={c: rng.integers(0, 256, (*cfg.camera_sizes[c], 3), dtype=np.uint8)
                               for c in cfg.cameras},
                       instruction=instruction, proprio=rng.normal(size=cfg.proprio_dim).astype(np.float32))


def openpi_request(policy, obs: Observation) -> dict:
    keys = RemoteMapping()
    return {**{keys.images[c]: obs.images[c] for c in policy.config.cameras}, keys.state: obs.proprio,
            keys.prompt: obs.instruction}


def test_the_maintained_openpi_client_reads_our_server(policy, server) -> None:
    client = WebsocketClientPolicy(server.url)
    meta = client.get_server_metadata()
    assert meta["server"] == "vla_steering" and meta["action_horizon"] == policy.config.horizon
    reply = client.infer(openpi_request(policy, observation(policy)))
    actions = reply["actions"]
    spec = policy.config.action_spec
    assert actions.shape == (spec.chunk_length, spec.dim) and np.isfinite(actions).all()
    assert np.all(actions >= spec.low_array() - 1e-6) and np.all(actions <= spec.high_array() + 1e-6)


def test_the_remote_policy_draws_the_in_process_chunks_from_the_same_generator(policy, server) -> None:
    remote = RemotePolicy(server.url)
    assert remote.config == policy.config
    obs = observation(policy, 1)
    ctx_local, ctx_remote = policy.encode(obs), remote.encode(obs)
    np.testing.assert_array_equal(ctx_remote.anchor, ctx_local.anchor)  # the anchor an episode latches
    local = policy.sample(ctx_local, 5, torch.Generator().manual_seed(3))
    far = remote.sample(ctx_remote, 5, torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(far, local)  # same noise, same torch code: bit for bit
    later = policy.encode(observation(policy, 2), anchor=ctx_local.anchor)  # a latched anchor travels
    np.testing.assert_array_equal(remote.encode(observation(policy, 2), anchor=ctx_remote.anchor).anchor,
                                  later.anchor)


def test_steering_a_remote_policy_refuses_token_scorers_and_runs_the_mean(policy, server) -> None:
    remote = RemotePolicy(server.url)
    with pytest.raises(ValueError, match="conditioning token"):
        build_steered(remote, SteeringConfig(method="robomonkey", n=4, m=4, verifier=str(ROOT / "models" / "verifier")))
    from verifiers.steering import load_scorer

    token_scorer = load_scorer("value", ROOT / "models" / "value", policy)  # loaded for the local policy, then
    with pytest.raises(ValueError, match=r"\['value'\] read the policy's conditioning token"):  # handed over
        build_steered(remote, SteeringConfig(method="vgps", n=4, m=4), scorers={"value": token_scorer})
    steered = build_steered(remote, SteeringConfig(method="mean", n=4))
    local = build_steered(policy, SteeringConfig(method="mean", n=4))
    obs = observation(policy, 4)
    np.testing.assert_array_equal(steered.act(obs, torch.Generator().manual_seed(0)).chunk,
                                  local.act(obs, torch.Generator().manual_seed(0)).chunk)


def test_bad_frames_are_refused_and_the_connection_keeps_serving(policy, server) -> None:
    good = msgpack_numpy.packb(openpi_request(policy, observation(policy)))
    with connect(server.url, max_size=None) as ws:
        ws.recv()  # metadata
        for frame, expected in ((b"\xc1\xff not msgpack", "request failed"), (msgpack_numpy.packb([1, 2]), "a map"),
                                ("text", "binary msgpack")):
            ws.send(frame)
            reply = ws.recv()
            assert isinstance(reply, str) and expected in reply, reply
        wrong = openpi_request(policy, observation(policy))
        wrong["observation/image"] = wrong["observation/image"][:10]
        ws.send(msgpack_numpy.packb(wrong))
        assert "observation/image" in ws.recv()
        nan = openpi_request(policy, observation(policy))
        nan["observation/state"] = np.full_like(nan["observation/state"], np.nan)
        ws.send(msgpack_numpy.packb(nan))
        assert "finite" in ws.recv()
        ws.send(msgpack_numpy.packb({**openpi_request(policy, observation(policy)), "n": 0}))
        assert "'n'" in ws.recv()
        ws.send(good)
        assert msgpack_numpy.unpackb(ws.recv())["actions"].shape == (policy.config.horizon, policy.config.action_dim)


def test_an_oversized_frame_closes_only_its_connection(policy, server) -> None:
    with connect(server.url, max_size=None) as ws:
        ws.recv()
        ws.send(b"\x00" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    reply = WebsocketClientPolicy(server.url).infer(openpi_request(policy, observation(policy)))
    assert np.isfinite(reply["actions"]).all()  # the server still serves


def test_a_mapping_mismatch_is_refused_naming_both_sides(server) -> None:
    with pytest.raises(ValueError, match="mapping mismatch") as e:
        RemotePolicy(server.url, mapping=RemoteMapping(state="observation/joint_position"))
    assert "observation/joint_position" in str(e.value) and "observation/state" in str(e.value)


def test_a_server_that_goes_away_is_a_connection_error_and_its_return_is_picked_up(policy) -> None:
    first = ServerThread(policy)
    remote = RemotePolicy(first.url)
    obs = observation(policy)
    ctx = remote.encode(obs)
    first.stop()
    with pytest.raises(ConnectionError, match=first.url):
        remote.sample(ctx, 2, torch.Generator().manual_seed(0))
    again = ServerThread(policy, port=first.port)  # the server restarts on the same port
    try:
        chunks = remote.sample(ctx, 2, torch.Generator().manual_seed(0))
        np.testing.assert_array_equal(chunks, policy.sample(policy.encode(obs), 2, torch.Generator().manual_seed(0)))
    finally:
        again.stop()
    with pytest.raises(ConnectionError, match="cannot reach"):
        RemotePolicy(first.url)


def test_an_observation_scorer_steers_a_remote_policy_as_it_steers_the_local_one(policy, server) -> None:
    from verifiers.perception_verifier import PerceptionVerifier

    torch.manual_seed(0)
    verifier = PerceptionVerifier.from_policy(policy, hidden=16, layers=1).eval()
    assert verifier.reads == "observation"
    cfg = SteeringConfig(method="robomonkey", n=4, m=6)
    remote = build_steered(RemotePolicy(server.url), cfg, scorers={"verifier": verifier})
    local = build_steered(policy, cfg, scorers={"verifier": verifier})
    obs = observation(policy, 5)
    far, near = remote.act(obs, torch.Generator().manual_seed(1)), local.act(obs, torch.Generator().manual_seed(1))
    assert far.index == near.index
    np.testing.assert_array_equal(far.chunk, near.chunk)
    np.testing.assert_allclose(far.scores["verifier"], near.scores["verifier"], atol=1e-9)


def test_the_vlm_verifier_and_the_safety_scorer_steer_a_remote_policy(policy, server, tmp_path) -> None:
    from tiny import tiny_llava

    from verifiers.hf_verifier import HFVerifierConfig, HFVLMVerifier
    from verifiers.safety import SafetyScorer

    torch.manual_seed(0)
    vlm = HFVLMVerifier(HFVerifierConfig(base_model=tiny_llava(tmp_path / "llava")), policy.action_spec).eval()
    scorers = {"verifier": vlm, "safety": SafetyScorer(policy.action_spec)}
    assert {s.reads for s in scorers.values()} == {"observation"}
    cfg = SteeringConfig(method="robomonkey", n=4, m=4, safety=True)
    remote = build_steered(RemotePolicy(server.url), cfg, scorers=scorers)
    local = build_steered(policy, cfg, scorers=scorers)
    from dataclasses import replace

    from vla_runtime.types import CameraInfo

    size = policy.config.image_size  # the safety scorer reads depth + the camera's pose; only the client does
    camera = CameraInfo(width=size[1], height=size[0], fx=60.0, fy=60.0, cx=size[1] / 2, cy=size[0] / 2,
                        pose_base_cam=np.eye(4))
    obs = replace(observation(policy, 6), depth={"static": np.full(size, 2.0, np.float32)},
                  cameras={"static": camera})
    far, near = remote.act(obs, torch.Generator().manual_seed(2)), local.act(obs, torch.Generator().manual_seed(2))
    assert set(far.scores) == {"verifier", "safety"} and far.index == near.index
    np.testing.assert_array_equal(far.chunk, near.chunk)
