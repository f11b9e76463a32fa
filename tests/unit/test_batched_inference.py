"""The batched inference path of `vla eval --executor ray`, without Ray: `SteeredPolicy.act_batch` makes the
decisions B `act` calls would make (same generator draws, parity within float rounding), and the
`InferenceServer` gathers concurrent requests into batches and carries each episode's state both ways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from verifiers.steering import SteeringConfig, steered_pipeline
from vla_app.agents import AgentFactory
from vla_app.ray_eval import InferenceServer
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

POLICY = str(Path(__file__).resolve().parents[2] / "models" / "policy")
BATCH_TOL = 1e-5  # robot units: batched encoder/denoiser rows vs single ones differ by float rounding (~1e-7)


def observations(policy, b: int) -> list[Observation]:
    cfg = policy.config
    rng = np.random.default_rng(0)
    words = ["pick up the red cube", "put the blue cube in the bowl", "push the green cylinder to the left",
             "stack the red cube on the blue cube"]
    return [Observation(images={c: rng.integers(0, 256, (*cfg.image_size, 3), dtype=np.uint8) for c in cfg.cameras},
                        instruction=words[k % len(words)],
                        proprio=rng.normal(size=cfg.proprio_dim).astype(np.float32)) for k in range(b)]


@pytest.fixture(scope="module", params=["mean", "robomonkey"])
def steered(request):
    cfg = SteeringConfig(method="mean", n=4) if request.param == "mean" else \
        SteeringConfig(method="robomonkey", n=4, m=6)
    return steered_pipeline(POLICY, cfg, "torch", threads=1)


def test_a_batch_makes_the_decisions_single_calls_make(steered) -> None:
    obs = observations(steered.policy, 3)
    latched = steered.policy.encode(obs[1]).anchor  # episode 1 is mid-episode: its anchor is latched
    anchors = [None, latched, None]
    single = []
    for o, a, seed in zip(obs, anchors, range(3)):
        steered.episode.anchor = a
        g = torch.Generator().manual_seed(seed)
        single.append((steered.act(o, g), g.get_state()))
    steered.reset()
    generators = [torch.Generator().manual_seed(seed) for seed in range(3)]
    batch = steered.act_batch(obs, anchors, generators)
    for (one, state), many, g in zip(single, batch, generators):
        np.testing.assert_allclose(many.chunk, one.chunk, atol=BATCH_TOL)
        assert many.index == one.index
        np.testing.assert_allclose(many.context.anchor, one.context.anchor, atol=BATCH_TOL)
        assert torch.equal(g.get_state(), state)  # the same draws, in the same order, per episode
    np.testing.assert_array_equal(batch[1].context.anchor, latched)  # a latched anchor is used, not re-estimated
    with pytest.raises(ValueError, match="one anchor and one generator"):
        steered.act_batch(obs, anchors[:2], generators)


def test_a_batch_of_one_is_bit_identical_to_act(steered) -> None:
    obs = observations(steered.policy, 1)
    steered.reset()
    one = steered.act(obs[0], torch.Generator().manual_seed(7))
    steered.reset()
    many = steered.act_batch(obs, [None], [torch.Generator().manual_seed(7)])[0]
    np.testing.assert_array_equal(many.chunk, one.chunk)


def test_the_server_batches_concurrent_requests_and_returns_each_episodes_state() -> None:
    server = InferenceServer(AgentFactory(POLICY, SteeringConfig(method="mean", n=2)), max_batch=3, max_wait_ms=50.0)
    obs = observations(server.steered.policy, 4)
    states = [torch.Generator().manual_seed(k).get_state().numpy() for k in range(4)]

    async def together():
        return await asyncio.gather(*(server.decide(o, None, s) for o, s in zip(obs, states)))

    replies = asyncio.run(together())
    assert server.served() == [3, 1]  # a full batch at once, the rest after max_wait
    for o, s, (chunk, index, anchor, state) in zip(obs, states, replies):
        g = torch.Generator()
        g.set_state(torch.from_numpy(s.copy()))
        server.steered.reset()
        expected = server.steered.act(o, g)
        np.testing.assert_allclose(chunk, expected.chunk, atol=BATCH_TOL)
        np.testing.assert_array_equal(state, g.get_state().numpy())  # the generator advanced as act's did
        assert anchor is not None and index == 0


def test_a_failing_batch_fails_every_waiting_request() -> None:
    server = InferenceServer(AgentFactory(POLICY, SteeringConfig(method="mean", n=2)), max_batch=2, max_wait_ms=50.0)
    good = observations(server.steered.policy, 1)[0]
    bad = Observation(images={"elsewhere": good.images["static"]}, instruction="pick up the red cube",
                      proprio=good.proprio)  # not the camera the policy reads
    state = torch.Generator().manual_seed(0).get_state().numpy()

    async def together():
        return await asyncio.gather(server.decide(good, None, state), server.decide(bad, None, state),
                                    return_exceptions=True)

    replies = asyncio.run(together())
    assert all(isinstance(r, ValueError) and "camera" in str(r) for r in replies)
