"""SteeredPolicy: one encoding, n samples, m proposals, scorers, selection, timings, anchor latching."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.pipeline import SteeredPolicy
from verifiers.proposals import GaussianVote
from verifiers.selection import Selector
from vla_runtime.execution import average_chunks
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

SPEC = TINY.action_spec


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def policy(**overrides) -> VLAPolicy:
    torch.manual_seed(0)
    model = VLAPolicy(dataclasses.replace(TINY, **overrides), uniform_normalizer())
    with torch.no_grad():
        model.head.action_out.weight.normal_(0.0, 0.3)
        if model.anchor_mlp is not None:
            model.anchor_mlp[-1].weight.normal_(0.0, 0.3)
    return model.eval()


def obs(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                       instruction="pick up the red cube", proprio=rng.normal(size=12).astype(np.float32))


class ForwardScorer:
    """Prefers chunks that move further in +x (a plain, real scorer for the pipeline test)."""

    name = "forward"

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        return candidates[:, :, 0].sum(axis=1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unsteered_is_the_policys_own_first_sample() -> None:
    p = policy()
    result = SteeredPolicy(p, GaussianVote(SPEC), [], Selector(), n=1, m=1).act(obs(), gen(3))
    np.testing.assert_array_equal(result.chunk, p.sample(p.encode(obs()), 1, gen(3))[0])
    assert result.index == 0 and result.scores == {} and set(result.timings_ms) == {"encode", "sample"}


def test_steered_picks_the_selectors_choice_among_the_proposals() -> None:
    p = policy()
    verifier = ActionVerifier(VerifierConfig(cond_dim=TINY.d_model, hidden=16), p.normalizer).eval()
    steered = SteeredPolicy(p, GaussianVote(SPEC), [ForwardScorer(), verifier],
                            Selector(weights={"verifier": 0.0}), n=8, m=16)
    r = steered.act(obs(), gen(0))
    assert r.candidates.shape[1:] == (SPEC.chunk_length, SPEC.dim) and 1 < len(r.candidates) <= 16
    assert set(r.scores) == {"forward", "verifier"} and r.scores["verifier"].shape == (len(r.candidates),)
    assert r.index == int(np.argmax(r.scores["forward"]))  # the verifier weighs 0 here
    np.testing.assert_array_equal(r.chunk, r.candidates[r.index])
    assert set(r.timings_ms) == {"encode", "sample", "propose", "forward", "verifier", "select"}
    again = SteeredPolicy(p, GaussianVote(SPEC), [ForwardScorer(), verifier],
                          Selector(weights={"verifier": 0.0}), n=8, m=16).act(obs(), gen(0))
    np.testing.assert_array_equal(again.chunk, r.chunk)  # same generator seed, same decision


def test_anchor_is_latched_for_the_episode_and_cleared_by_reset() -> None:
    p = policy(anchor=True)
    steered = SteeredPolicy(p, GaussianVote(SPEC), [ForwardScorer()], Selector(), n=4, m=8)
    steered.act(obs(0), gen(0))
    first = steered.episode.anchor.copy()
    steered.act(obs(1), gen(0))
    np.testing.assert_array_equal(steered.episode.anchor, first)
    steered.reset()
    steered.act(obs(1), gen(0))
    assert not np.allclose(steered.episode.anchor, first)  # re-estimated from the new episode's first frame


def test_bad_configuration_and_bad_scorers_are_rejected() -> None:
    p = policy()
    with pytest.raises(ValueError, match="n=0"):
        SteeredPolicy(p, GaussianVote(SPEC), [], Selector(), n=0, m=4)
    with pytest.raises(ValueError, match="unique"):
        SteeredPolicy(p, GaussianVote(SPEC), [ForwardScorer(), ForwardScorer()], Selector(), n=2, m=4)

    class Broken(ForwardScorer):
        name = "broken"

        def score(self, ctx, candidates):
            return np.zeros(len(candidates) + 1)

    with pytest.raises(ValueError, match="'broken' returned shape"):
        SteeredPolicy(p, GaussianVote(SPEC), [Broken()], Selector(), n=4, m=8).act(obs(), gen(0))


class RejectAll:
    """A real scorer that rejects every candidate (what the safety scorer does in a cluttered scene)."""

    name = "safety"

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        return np.full(len(candidates), -np.inf)


class PoisonedProposal:
    """GaussianVote, then NaN in the chosen rows (a numerically broken proposal or sampler)."""

    def __init__(self, rows) -> None:
        self.inner, self.rows = GaussianVote(SPEC), rows

    def propose(self, samples, m, generator):
        out = self.inner.propose(samples, m, generator).copy()
        out[list(self.rows) if self.rows != "all" else slice(None), 0, 0] = np.nan
        return out


def test_when_every_candidate_is_rejected_the_mean_of_the_samples_runs_with_a_warning(caplog) -> None:
    p = policy()
    with caplog.at_level("WARNING", logger="verifiers.pipeline"):
        r = SteeredPolicy(p, GaussianVote(SPEC), [ForwardScorer(), RejectAll()], Selector(), n=8, m=8).act(
            obs(), gen(0))
    samples = p.sample(p.encode(obs()), 8, gen(0))
    np.testing.assert_allclose(r.chunk, average_chunks(samples, SPEC.gripper_index), atol=1e-6)
    assert r.index == -1 and r.fallback == "every candidate was rejected" and "rejected (safety)" in caplog.text


def test_candidates_holding_nan_never_reach_a_scorer(caplog) -> None:
    p = policy()
    seen = []

    class Recording(ForwardScorer):
        def score(self, ctx, candidates):
            seen.append(candidates.copy())
            return super().score(ctx, candidates)

    with caplog.at_level("WARNING", logger="verifiers.pipeline"):
        r = SteeredPolicy(p, PoisonedProposal([1, 3]), [Recording()], Selector(), n=8, m=8).act(obs(), gen(0))
    assert np.isfinite(seen[0]).all() and len(seen[0]) == len(r.candidates) and np.isfinite(r.chunk).all()
    assert r.index >= 0 and "dropped 2 of" in caplog.text
    r = SteeredPolicy(p, PoisonedProposal("all"), [Recording()], Selector(), n=8, m=8).act(obs(), gen(0))
    assert r.index == -1 and r.fallback == "every candidate was non-finite" and np.isfinite(r.chunk).all()


def test_a_scorer_for_another_chunk_shape_is_refused_with_the_reason(tmp_path) -> None:
    from verifiers.steering import load_scorer

    p = policy()
    short = ActionVerifier(VerifierConfig(cond_dim=TINY.d_model, horizon=4, hidden=8, layers=1),
                           uniform_normalizer()).save_pretrained(tmp_path / "v")
    with pytest.raises(ValueError, match="scores chunks of 4 x 7, the policy makes 8 x 7"):
        load_scorer("verifier", short, p)


def test_rephrasings_split_the_samples_over_each_wording_with_the_latched_anchor() -> None:
    from sim.language import TRAIN_TEMPLATES, rephrase
    from vla_runtime.policy.protocol import EpisodeEncoder

    p = policy(anchor=True)
    o = obs()
    steered = SteeredPolicy(p, GaussianVote(SPEC, keep_samples=True), [ForwardScorer()], Selector(), 6, 4,
                            rephrase=rephrase, rephrasings=2)
    result = steered.act(o, gen(3))
    wordings = [o.instruction, *rephrase(o.instruction, 2)]
    assert len(set(wordings)) == 3 and all("red cube" in w for w in wordings)
    # the same draws by hand: 2 samples per wording, each wording encoded with the episode's latched anchor
    episode = EpisodeEncoder(p)
    g = gen(3)
    contexts = [episode.encode(dataclasses.replace(o, instruction=w)) for w in wordings]
    expected = np.concatenate([p.sample(c, 2, g) for c in contexts])
    np.testing.assert_allclose(result.candidates[-6:], expected, atol=1e-6)  # kept samples come last
    assert not np.allclose(expected[0:2], expected[2:4])  # another wording gives other chunks
    with pytest.raises(ValueError, match="rephrasings must be in 0..n-1"):
        SteeredPolicy(p, GaussianVote(SPEC), [], Selector(), 4, 4, rephrase=rephrase, rephrasings=4)
    with pytest.raises(ValueError, match="need a rephraser"):
        SteeredPolicy(p, GaussianVote(SPEC), [], Selector(), 4, 4, rephrasings=1)
    assert rephrase("could you hoist the cube into the air", 3) == []  # held-out wording: not parsed
    for task, pool in TRAIN_TEMPLATES.items():  # every training wording parses back to the same objects
        fields = {"obj": "red cube", "container": "bowl", "region": "blue", "base": "green block"}
        for t in pool:
            others = rephrase(t.format(**fields), len(pool))
            assert len(others) == len(pool) - 1 and t.format(**fields) not in others, (task, t)


def test_candidates_are_drawn_with_the_configured_denoising_steps() -> None:
    from verifiers.steering import SteeringConfig, build_steered

    p = policy()
    calls: list[int] = []
    p.head.register_forward_hook(lambda mod, inputs, out: calls.append(1))
    steered = SteeredPolicy(p, GaussianVote(SPEC, keep_samples=True), [ForwardScorer()], Selector(), 4, 4, steps=2)
    result = steered.act(obs(), gen(3))
    assert len(calls) == 2  # one DiT run per step on the whole batch of 4
    np.testing.assert_array_equal(result.candidates[-4:], p.sample(p.encode(obs()), 4, gen(3), steps=2))
    # every method samples at the policy's own steps unless told otherwise
    assert build_steered(p, SteeringConfig(method="mean", n=3)).steps is None
    assert build_steered(p, SteeringConfig(n=3, m=3, verifier="."), scorers={"verifier": ForwardScorer()}).steps is None
    assert build_steered(p, SteeringConfig(n=3, m=3, verifier=".", steps=2), scorers={"verifier": ForwardScorer()}
                         ).steps == 2
    with pytest.raises(ValueError, match="steps must be an integer in 1..train_timesteps=20, got 21"):
        build_steered(p, SteeringConfig(method="mean", n=3, steps=21))  # beyond this policy's schedule
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match=f"steps must be None .* got {bad!r}"):
            SteeringConfig(method="mean", steps=bad)
