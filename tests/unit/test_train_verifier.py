"""`vla train verifier` on a tiny policy: features match run-time encoding, candidate sets are what the
docstring says, training learns, resume continues, the CLI writes a loadable verifier."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY

import verifiers.train_verifier as train_verifier_module
from verifiers.action_verifier import ActionVerifier
from verifiers.features import cached_features, encode_dataset
from verifiers.preferences import nrmse
from verifiers.train_verifier import VerifierTrainConfig, build_candidates, train_verifier
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.dataset import EpisodeDataset
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.protocol import EpisodeEncoder
from vla_runtime.policy.train import TrainConfig, train_policy
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit
ANCHORED = dataclasses.replace(TINY, anchor=True)
SMALL = VerifierTrainConfig(steps=4, batch_states=4, pairs_per_state=8, max_states=24, perturbations=3,
                            policy_samples=2, gaussian=2, hidden=16, val_every=2, ckpt_every=2, threads=1,
                            val_fraction=0.25)


@pytest.fixture
def tiny_run(tmp_path: Path, write_tiny_episodes) -> tuple[Path, Path]:
    metas = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": f"lift {i % 2}",
              "scene": {"objects": [{"xy": [0.4 + 0.05 * i, 0.1]}], "base_index": None}} for i in range(8)]
    write_tiny_episodes(tmp_path / "data", metas, t=7)
    cfg = TrainConfig(steps=2, batch_size=4, val_every=2, ckpt_every=2, warmup=0, ema_decay=0.0, threads=1)
    train_policy([tmp_path / "data"], tmp_path / "policy", ANCHORED, cfg, progress=False)
    return tmp_path / "policy", tmp_path / "data"


def test_features_equal_the_run_time_episode_encoding(tiny_run) -> None:
    policy_dir, data = tiny_run
    policy = VLAPolicy.from_pretrained(policy_dir)
    table = encode_dataset(policy, [data], batch_size=5, progress=False)
    ds = EpisodeDataset(data)
    assert table.cond.shape == (ds.num_steps, TINY.d_model) and table.length.tolist() == [7] * 8
    ep = ds.load_episode(3)
    enc = EpisodeEncoder(policy)  # anchor latched from frame 0, as the agent does
    rows = np.flatnonzero(table.episode == 3)
    for t in range(ep.length):
        obs = Observation(images={"static": ep.images["static"][t]}, proprio=ep.proprio[t],
                          instruction=ep.meta["instruction"])
        np.testing.assert_allclose(table.cond[rows[t]], enc.encode(obs).cond[0].numpy(), atol=2e-5)
    np.testing.assert_array_equal(table.actions[rows[2]][:5], ep.actions[2:])  # the chunk from t=2 (5 real rows)


def test_candidate_sets_hold_the_expert_first_and_policy_samples_where_said(tiny_run) -> None:
    policy_dir, data = tiny_run
    policy = VLAPolicy.from_pretrained(policy_dir)
    table = encode_dataset(policy, [data], progress=False)
    rows = np.arange(5)
    sets = build_candidates(policy, table, rows, SMALL, seed=0)
    k = 1 + SMALL.perturbations + SMALL.policy_samples + SMALL.gaussian
    assert sets.candidates.shape == (5, k, TINY.horizon, TINY.action_dim)
    np.testing.assert_array_equal(sets.candidates[:, 0], table.actions[rows])
    assert np.all(sets.errors[:, 0] == 0) and np.all(sets.errors[:, 1:] >= 0)
    low, high = policy.normalizer.action_low, policy.normalizer.action_high
    np.testing.assert_allclose(sets.errors[2], nrmse(sets.candidates[2], table.actions[2], low, high), rtol=1e-5)
    # the policy's own samples sit in policy_cols: redraw them with the same noise stream
    gen = torch.Generator().manual_seed(0)
    cond = torch.from_numpy(table.cond[rows]).repeat_interleave(SMALL.policy_samples, 0)
    noise = torch.randn((len(cond), TINY.horizon, TINY.action_dim), generator=gen)
    with torch.no_grad():
        x = policy.normalizer.unnormalize_actions(policy.denoise(cond, noise)).numpy()
    x = np.clip(x, TINY.action_spec.low_array(), TINY.action_spec.high_array()).reshape(5, 2, *x.shape[1:])
    start = sets.policy_cols.start
    np.testing.assert_allclose(sets.candidates[:, start:start + 2], x, atol=1e-6)
    np.testing.assert_allclose(sets.candidates[:, sets.mean_col, :, :6], x.mean(1)[:, :, :6], atol=1e-6)
    again = build_candidates(policy, table, rows, SMALL, seed=0)
    np.testing.assert_array_equal(again.candidates, sets.candidates)  # seeded


def test_training_writes_a_verifier_that_resumes_and_reads_its_policy(tiny_run, tmp_path: Path, monkeypatch) -> None:
    policy_dir, data = tiny_run
    out = tmp_path / "verifier"
    result = train_verifier(policy_dir, [data], out, SMALL, progress=False, command="vla train verifier ...")
    assert result["steps"] == 4 and 0.0 <= result["val_pair_acc"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "verifier.training_state" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4] and all(np.isfinite(m["loss"]) for m in lines)
    model = ActionVerifier.from_pretrained(out)
    assert model.config.policy == weights_fingerprint(VLAPolicy.from_pretrained(policy_dir))
    assert "vla train verifier ..." in (out / "README.md").read_text()
    # resume: a longer run continuing from step 4 equals the uninterrupted 6-step run
    longer = dataclasses.replace(SMALL, steps=6)
    with pytest.raises(ValueError, match="different data or parameters"):
        train_verifier(policy_dir, [data], out, longer, resume=True, progress=False)
    full = train_verifier(policy_dir, [data], tmp_path / "full", longer, progress=False)
    calls = {"n": 0}
    real_loss = train_verifier_module.preference_loss

    def crash_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_verifier_module, "preference_loss", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_verifier(policy_dir, [data], tmp_path / "half", longer, progress=False)
    monkeypatch.setattr(train_verifier_module, "preference_loss", real_loss)
    assert json.loads((tmp_path / "half.training_state" / "trainer.json").read_text())["step"] == 4
    resumed = train_verifier(policy_dir, [data], tmp_path / "half", longer, resume=True, progress=False)
    assert resumed["val_pair_acc"] == full["val_pair_acc"] and resumed["loss"] == full["loss"]
    a, b = ActionVerifier.from_pretrained(tmp_path / "full"), ActionVerifier.from_pretrained(tmp_path / "half")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)


def test_pairwise_training_learns_to_rank_on_a_learnable_problem(tiny_run, tmp_path: Path) -> None:
    policy_dir, data = tiny_run
    cfg = dataclasses.replace(SMALL, steps=300, batch_states=16, hidden=64, val_every=300, ckpt_every=300, lr=3e-3,
                              perturbations=12)
    result = train_verifier(policy_dir, [data], tmp_path / "v", cfg, progress=False)
    # candidates are ranked by distance to the expert chunk, which the token does not reveal here
    # (random images), but perturbation size is visible in the chunk itself: well above chance.
    assert result["val_pair_acc"] > 0.7


def test_cli_trains_a_verifier(tiny_run, tmp_path: Path) -> None:
    from vla_app.cli import main

    policy_dir, data = tiny_run
    assert main(["train", "verifier", "--policy", str(policy_dir), "--data", str(data), "--out",
                 str(tmp_path / "v"), "--steps", "2", "--batch-states", "4", "--max-states", "16",
                 "--policy-samples", "2", "--gaussian", "2", "--perturbations", "3", "--hidden", "16",
                 "--threads", "1", "--val-every", "1", "--no-progress"]) == 0
    assert ActionVerifier.from_pretrained(tmp_path / "v").config.hidden == 16
    assert main(["train", "verifier", "--policy", str(tmp_path / "nope"), "--data", str(data), "--out",
                 str(tmp_path / "w"), "--no-progress"]) == 2


def test_feature_cache_round_trips_dtypes_and_refreshes_when_the_data_changes(tiny_run, tmp_path: Path,
                                                                             write_tiny_episodes) -> None:
    policy_dir, data = tiny_run
    fresh = cached_features(policy_dir, [data], tmp_path / "cache", progress=False)
    cached = cached_features(policy_dir, [data], tmp_path / "cache", progress=False)  # read back from disk
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for name in ("cond", "actions", "chunk_mask", "episode", "t", "length", "success", "quality"):
        a, b = getattr(fresh, name), getattr(cached, name)
        assert a.dtype == b.dtype, name  # bools stay bools (safetensors stores bytes)
        np.testing.assert_array_equal(a, b)
    assert cached.success.dtype == np.bool_ and cached.chunk_mask.dtype == np.bool_
    # one more episode in the folder: a new key, re-encoded
    write_tiny_episodes(tmp_path / "more", [{"task": "pick_lift", "quality": "expert", "seed": 0,
                                             "instruction": "lift", "scene": {"objects": [{"xy": [0.5, 0.1]}],
                                                                              "base_index": None}}], t=7)
    both = cached_features(policy_dir, [data, tmp_path / "more"], tmp_path / "cache", progress=False)
    assert len(both.length) == 9 and both.episode.max() == 8 and len(list((tmp_path / "cache").iterdir())) == 2


def _relabelled_folder(root: Path, policy: VLAPolicy, episodes: int = 4, t: int = 6) -> Path:
    """A `vla sim relabel` folder with a learnable ranking: the expert chunk is a function of the token, so a
    verifier reading the token can tell which recorded candidate is nearest."""
    from verifiers.relabelled import FORMAT, MANIFEST

    root.mkdir()
    (root / MANIFEST).write_text(json.dumps({"format": FORMAT, "policy_fingerprint": weights_fingerprint(policy)}))
    spec = policy.config.action_spec
    rng, obs_rng = np.random.default_rng(0), np.random.default_rng(1)
    for k in range(episodes):
        cond = rng.normal(size=(t, TINY.d_model)).astype(np.float32)
        expert = np.clip(np.tanh(cond[:, :1, None]) * spec.high_array(), spec.low_array(), spec.high_array())
        expert = np.broadcast_to(expert, (t, 8, 7)).astype(np.float32)
        cands = np.full((t, 6, 8, 7), np.nan, np.float32)
        count = np.array([6, 6, 4, 6, 6, 5][:t], np.int32)
        for i in range(t):
            noise = rng.normal(0, 0.3, (count[i], 8, 7)) * (spec.high_array() - spec.low_array())
            cands[i, :count[i]] = np.clip(expert[i] + noise, spec.low_array(), spec.high_array())
        meta = {"success": k % 2 == 0, "task": "pick_lift", "instruction": f"lift the block {k % 2}"}
        np.savez(root / f"decisions_{k:06d}.npz", cond=cond, candidates=cands, count=count, expert=expert,
                 executed=np.zeros(t, np.int32), image=obs_rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
                 proprio=obs_rng.normal(size=(t, TINY.proprio_dim)).astype(np.float32), meta=np.array(json.dumps(meta)))
    return root


def test_relabelled_decisions_train_a_verifier_validated_against_the_samples_mean(tiny_run, tmp_path: Path) -> None:
    from verifiers.relabelled import read_decisions

    policy_dir, data = tiny_run
    policy = VLAPolicy.from_pretrained(policy_dir)
    folder = _relabelled_folder(tmp_path / "rel", policy, episodes=8)
    d = read_decisions([folder], weights_fingerprint(policy), 8, 7)
    assert d.candidates.shape == (48, 6, 8, 7) and np.isfinite(d.candidates).all()
    np.testing.assert_array_equal(d.candidates[2, 4:], d.candidates[2, [0, 0]])  # padding repeats candidate 0
    with pytest.raises(ValueError, match="give demonstration data"):
        train_verifier(policy_dir, [], tmp_path / "none", SMALL, progress=False)
    cfg = dataclasses.replace(SMALL, steps=200, batch_states=8, hidden=64, val_every=200, ckpt_every=200, lr=3e-3)
    only = train_verifier(policy_dir, [], tmp_path / "v", cfg, progress=False, relabelled=[folder])
    assert only["relabelled_states"] == 36 and only["demonstration_states"] == 0  # 2 of 8 episodes held out
    # the expert's chunk is a function of the token: a verifier reading it ranks the held-out candidates
    assert only["relabelled_pair_acc"] > 0.7 and only["relabelled_pick_nrmse"] < only["relabelled_random_nrmse"]
    assert {"relabelled_mean_nrmse", "relabelled_pick_beats_mean"} <= set(only)
    both = train_verifier(policy_dir, [data], tmp_path / "both", dataclasses.replace(cfg, steps=2, val_every=2),
                          progress=False, relabelled=[folder], init=tmp_path / "v")
    assert both["states"] == both["relabelled_states"] + both["demonstration_states"]
    assert {"val_pair_acc", "relabelled_pair_acc"} <= set(both) and "`" in (tmp_path / "both" / "README.md").read_text()
    wider = dataclasses.replace(cfg, hidden=32)
    with pytest.raises(ValueError, match="another shape"):
        train_verifier(policy_dir, [], tmp_path / "w", wider, progress=False, relabelled=[folder], init=tmp_path / "v")


def test_a_perception_verifier_starts_as_the_policy_encoder_trains_and_steers(tiny_run, tmp_path: Path) -> None:
    from verifiers.perception_verifier import PerceptionVerifier
    from verifiers.steering import load_scorer
    from verifiers.train_perception import train_perception_verifier
    from vla_runtime.policy.model import shared_language_encoder

    policy_dir, _ = tiny_run
    policy = VLAPolicy.from_pretrained(policy_dir)
    folder = _relabelled_folder(tmp_path / "rel", policy)
    model = PerceptionVerifier.from_policy(policy, hidden=16, layers=1)
    assert not any(k.startswith("encoder.head.") for k in model.state_dict())  # the DiT is not carried
    rng = np.random.default_rng(1)
    obs = Observation(images={"static": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)}, instruction="lift it",
                      proprio=rng.normal(size=TINY.proprio_dim).astype(np.float32))
    images = policy.images_to_tensor(obs.images["static"][None])
    lang = shared_language_encoder(policy.config.language_model).encode([obs.instruction])
    with torch.no_grad():  # its token starts as the policy's own (anchor from the frame: no latched anchor)
        torch.testing.assert_close(model.token(images, lang, torch.from_numpy(obs.proprio)[None]),
                                   policy.features(images, lang, torch.from_numpy(obs.proprio)[None])[1])
    cfg = dataclasses.replace(SMALL, steps=4, batch_states=4, hidden=16, layers=1, val_every=2, ckpt_every=2)
    result = train_perception_verifier(policy_dir, [folder], tmp_path / "pv", cfg, progress=False, command="cmd")
    assert result["steps"] == 4 and 0.0 <= result["relabelled_pair_acc"] <= 1.0
    loaded = load_scorer("verifier", tmp_path / "pv", policy)
    assert isinstance(loaded, PerceptionVerifier) and "cmd" in (tmp_path / "pv" / "README.md").read_text()
    ctx = EpisodeEncoder(policy).encode(obs)
    chunks = rng.uniform(-0.01, 0.01, (5, 8, 7)).astype(np.float32)
    scores = loaded.score(ctx, chunks)
    assert scores.shape == (5,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="reads the observation"):
        loaded.score(dataclasses.replace(ctx, observation=None), chunks)
    with pytest.raises(ValueError, match="candidates must be"):
        loaded.score(ctx, chunks[:, :4])
    with pytest.raises(ValueError, match="relabelled decisions"):
        train_perception_verifier(policy_dir, [], tmp_path / "none", cfg, progress=False)
