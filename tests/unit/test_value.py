"""V-GPS value function: HL-Gauss targets, IQL pieces on hand examples, the scorer contract, checkpoints,
and `vla train value` learning which states lead to success."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.features import FeatureTable, encode_dataset
from verifiers.train_value import (
    ValueTrainConfig,
    calibrated_conservative_loss,
    expectile_loss,
    perturbed_chunks,
    step_rewards,
    success_auc,
    train_value,
    transitions,
)
from verifiers.value import ValueConfig, ValueFunction, hl_gauss_target
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.protocol import Context
from vla_runtime.policy.train import TrainConfig, train_policy

pytestmark = pytest.mark.unit
H, A = TINY.horizon, TINY.action_dim
SMALL_VALUE = ValueConfig(cond_dim=8, horizon=H, action_dim=A, hidden=16, layers=1, bins=11, v_min=-10.0, v_max=0.0)


def test_config_rejects_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="head must be one of.*'mse'"):
        ValueConfig(head="mse")
    with pytest.raises(ValueError, match="v_min < v_max.*v_min=0.0 v_max=0.0"):
        ValueConfig(v_min=0.0, v_max=0.0)
    with pytest.raises(ValueError, match="gamma must be in \\(0, 1\\), got 1.0"):
        ValueTrainConfig(gamma=1.0)
    with pytest.raises(ValueError, match="reward must be one of.*'dense'"):
        ValueTrainConfig(reward="dense")


def test_hl_gauss_target_is_a_distribution_centred_on_the_return() -> None:
    cfg = ValueConfig(bins=51, v_min=-50.0, v_max=0.0)
    y = torch.tensor([-25.3, -3.0, -49.0, 7.0], dtype=torch.float64)
    p = hl_gauss_target(y, cfg)
    centres = torch.linspace(-50, 0, 52, dtype=torch.float64)
    centres = (centres[1:] + centres[:-1]) / 2
    np.testing.assert_allclose(p.sum(-1).numpy(), 1.0, atol=1e-12)
    mean = (p * centres).sum(-1)
    assert abs(mean[0] - -25.3) < 0.01 and abs(mean[1] - -3.0) < 0.01  # interior: unbiased
    std = ((p * (centres - mean[:, None]) ** 2).sum(-1)).sqrt()
    assert abs(std[0] - math.sqrt(0.75**2 + 1 / 12) * cfg.bin_width) < 0.02  # sigma 0.75 bins (+ binning)
    assert mean[3] > -1.0  # out of range: clipped to the top edge


def test_rewards_and_chunk_transitions_on_a_hand_example() -> None:
    np.testing.assert_array_equal(step_rewards(4, True, "vgps"), [-1, -1, -1, 0])
    np.testing.assert_array_equal(step_rewards(3, False, "vgps"), [-1, -1, -1])
    np.testing.assert_array_equal(step_rewards(3, True, "sparse"), [0, 0, 1])
    # episode 0: 6 steps, success; episode 1: 5 steps, timeout
    lengths = np.array([6, 5])
    n = int(lengths.sum())
    table = FeatureTable(cond=np.zeros((n, 4), np.float32), actions=np.zeros((n, H, A), np.float32),
                         chunk_mask=np.ones((n, H), bool), episode=np.repeat([0, 1], lengths),
                         t=np.concatenate([np.arange(6), np.arange(5)]), length=lengths,
                         success=np.array([True, False]), quality=np.array([0, 4]))
    g = 0.9
    tr = transitions(table, np.arange(n), ValueTrainConfig(gamma=g, k=4))
    by_row = {int(r): i for i, r in enumerate(tr.rows)}
    i = by_row[0]  # t=0 of the success: 4 steps of -1, next state t=4
    assert tr.reward[i] == pytest.approx(-(1 + g + g**2 + g**3)) and tr.next_rows[i] == 4
    assert tr.discount[i] == pytest.approx(g**4)
    i = by_row[4]  # t=4: two steps left, the last is the success (reward 0), terminal
    assert tr.reward[i] == pytest.approx(-1.0) and tr.discount[i] == 0.0
    i = by_row[6 + 3]  # timeout episode, t=3: two steps left, bootstrap from its last row
    assert tr.reward[i] == pytest.approx(-(1 + g)) and tr.next_rows[i] == 6 + 4
    assert tr.discount[i] == pytest.approx(g**2)
    # a relabelled (DART) step inside the first k actions drops the transition
    table.chunk_mask[1, 2:] = False
    assert 1 not in transitions(table, np.arange(n), ValueTrainConfig(gamma=g, k=4)).rows


def test_expectile_loss_weights_the_two_signs() -> None:
    diff = torch.tensor([2.0, -2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 4 + 0.3 * 4) / 2)
    assert expectile_loss(torch.tensor([1.0]), 0.9).item() == pytest.approx(0.9)
    assert expectile_loss(torch.tensor([-1.0]), 0.9).item() == pytest.approx(0.1)


@pytest.mark.parametrize("head", ["hlgauss", "regression"])
def test_score_is_the_min_of_two_critics_and_survives_a_round_trip(head: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ValueFunction(dataclasses.replace(SMALL_VALUE, head=head), uniform_normalizer()).eval()
    rng = np.random.default_rng(0)
    cands = rng.uniform(TINY.action_spec.low_array(), TINY.action_spec.high_array(), (5, H, A)).astype(np.float32)
    ctx = Context(cond=torch.randn(1, 8))
    s = model.score(ctx, cands)
    q = model.q_values(ctx.cond.expand(5, -1), torch.from_numpy(cands)).detach().numpy()
    assert s.shape == (5,) and s.dtype == np.float64
    np.testing.assert_allclose(s, q.min(0), rtol=1e-6)
    if head == "hlgauss":
        assert np.all((s >= -10.0) & (s <= 0.0))  # an expectation over the bins
    again = ValueFunction.from_pretrained(model.save_pretrained(tmp_path / "value", model_card="# card"))
    np.testing.assert_array_equal(again.score(ctx, cands), s)
    with pytest.raises(ValueError, match="NaN"):
        model.score(ctx, np.full((2, H, A), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"candidates must be \(m >= 1"):
        model.score(ctx, cands[:0])
    with pytest.raises(ValueError, match="cond must be"):
        model.score(Context(cond=torch.randn(2, 8)), cands)
    (tmp_path / "value" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="unreadable"):
        ValueFunction.from_pretrained(tmp_path / "value")
    with pytest.raises(FileNotFoundError, match="value function checkpoint folder"):
        ValueFunction.from_pretrained(tmp_path / "missing")


def test_iql_learns_which_instruction_leads_to_success(tmp_path: Path, write_tiny_episodes) -> None:
    """Episodes of one instruction succeed, of the other time out: Q must tell their states apart."""
    words = ("pick up the red cube", "push the blue cylinder far to the left")
    metas = [{"task": "pick_lift", "quality": "base", "seed": i, "instruction": words[i % 2],
              "success": i % 2 == 0, "scene": {"objects": [{"xy": [0.5, 0.1]}], "base_index": None}} for i in range(8)]
    write_tiny_episodes(tmp_path / "data", metas, t=8)
    pcfg = TrainConfig(steps=1, batch_size=4, val_every=1, ckpt_every=1, warmup=0, ema_decay=0.0, threads=1)
    train_policy([tmp_path / "data"], tmp_path / "policy", TINY, pcfg, progress=False)
    cfg = ValueTrainConfig(steps=1500, batch_size=64, lr=3e-3, hidden=32, layers=1, bins=21, val_every=1500,
                           ckpt_every=1500, threads=1, gamma=0.9, val_fraction=0.25, reward="sparse")
    result = train_value(tmp_path / "policy", [tmp_path / "data"], tmp_path / "value", cfg, progress=False)
    assert np.isfinite(result["val_q_loss"]) and "val_success_auc" in result
    model = ValueFunction.from_pretrained(tmp_path / "value")
    table = encode_dataset(VLAPolicy.from_pretrained(tmp_path / "policy"), [tmp_path / "data"], progress=False)
    fitted = table.split(cfg.val_fraction, cfg.seed)[0]  # the training episodes (2 of 8 are held out)
    assert success_auc(model, table, fitted)["val_success_auc"] > 0.95
    assert (model.config.v_min, model.config.v_max) == (0.0, 1.0)
    assert "IQL" in (tmp_path / "value" / "README.md").read_text()


def test_cli_trains_a_value_function(tmp_path: Path, write_tiny_episodes) -> None:
    from vla_app.cli import main

    metas = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": "lift",
              "scene": {"objects": [{"xy": [0.5, 0.1]}], "base_index": None}} for i in range(4)]
    write_tiny_episodes(tmp_path / "data", metas, t=6)
    pcfg = TrainConfig(steps=1, batch_size=4, val_every=1, ckpt_every=1, warmup=0, ema_decay=0.0, threads=1)
    train_policy([tmp_path / "data"], tmp_path / "policy", TINY, pcfg, progress=False)
    args = ["train", "value", "--policy", str(tmp_path / "policy"), "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "v"), "--steps", "3", "--batch-size", "8", "--hidden", "16", "--head", "regression",
            "--reward", "sparse", "--threads", "1", "--val-every", "3", "--no-progress"]
    assert main(args) == 0
    model = ValueFunction.from_pretrained(tmp_path / "v")
    assert model.config.head == "regression" and (model.config.v_min, model.config.v_max) == (0.0, 1.0)
    assert main([*args[:-1], "--gamma", "1.5", "--no-progress"]) == 2


def test_monte_carlo_returns_and_the_calibrated_conservative_term() -> None:
    lengths = np.array([3])
    table = FeatureTable(cond=np.zeros((3, 4), np.float32), actions=np.zeros((3, H, A), np.float32),
                         chunk_mask=np.ones((3, H), bool), episode=np.zeros(3, np.int64), t=np.arange(3),
                         length=lengths, success=np.array([True]), quality=np.array([0]))
    tr = transitions(table, np.arange(3), ValueTrainConfig(gamma=0.5, k=1))
    np.testing.assert_allclose(tr.mc_return, [-1 - 0.5, -1.0, 0.0])  # rewards -1, -1, 0
    torch.manual_seed(0)
    model = ValueFunction(dataclasses.replace(SMALL_VALUE, head="regression"), uniform_normalizer())
    cond = torch.randn(2, 8)
    chunks = torch.zeros(2, H, A)
    ood = torch.zeros(2, 3, H, A)  # the same chunk: logsumexp over 4 equal values = q + log 4
    low = calibrated_conservative_loss(model, cond, chunks, ood, torch.full((2,), -1e9))
    assert low.item() == pytest.approx(2 * math.log(4), rel=1e-5)
    # a Monte-Carlo floor far above Q dominates the perturbed terms
    q = model.q_values(cond, chunks)
    high = calibrated_conservative_loss(model, cond, chunks, ood, q.max(0).values.detach() + 5.0)
    assert high.item() > 2 * 4.0


def test_perturbed_chunks_stay_in_bounds_and_flip_whole_gripper_tails() -> None:
    model = ValueFunction(SMALL_VALUE, uniform_normalizer())
    spec = TINY.action_spec
    chunks = torch.zeros(64, H, A)
    chunks[..., spec.gripper_index] = 1.0
    cfg = ValueTrainConfig(cql_samples=8, cql_noise=(0.4,))
    ood = perturbed_chunks(model, chunks, cfg, spec, torch.Generator().manual_seed(0))
    assert ood.shape == (64, 8, H, A)
    low, high = torch.from_numpy(spec.low_array()), torch.from_numpy(spec.high_array())
    assert torch.all(ood >= low) and torch.all(ood <= high)
    g = ood[..., spec.gripper_index]
    assert set(g.unique().tolist()) <= {0.0, 1.0}
    flipped = (g == 0).any(-1)
    assert 0.03 < flipped.float().mean() < 0.2  # about a tenth
    tails = g[flipped]
    assert torch.all(tails[:, -1] == 0) and torch.all(tails.diff(dim=-1) <= 0)  # open until a step, closed after
    assert ood[..., :6].abs().max() > 0.0  # motion is perturbed


def test_an_interrupted_value_run_resumes_bit_for_bit(tmp_path: Path, write_tiny_episodes, monkeypatch) -> None:
    import verifiers.train_value as tv

    metas = [{"task": "pick_lift", "quality": "base", "seed": i, "instruction": "lift", "success": i % 2 == 0,
              "scene": {"objects": [{"xy": [0.5, 0.1]}], "base_index": None}} for i in range(4)]
    write_tiny_episodes(tmp_path / "data", metas, t=6)
    pcfg = TrainConfig(steps=1, batch_size=4, val_every=1, ckpt_every=1, warmup=0, ema_decay=0.0, threads=1)
    train_policy([tmp_path / "data"], tmp_path / "policy", TINY, pcfg, progress=False)
    cfg = ValueTrainConfig(steps=6, batch_size=8, hidden=16, layers=1, bins=11, val_every=3, ckpt_every=2, threads=1,
                           cql_alpha=0.5, cql_samples=2, val_fraction=0.25)
    args = (tmp_path / "policy", [tmp_path / "data"])
    full = train_value(*args, tmp_path / "full", cfg, progress=False)
    real, calls = tv.critic_loss, {"n": 0}

    def crash_at_step_5(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(tv, "critic_loss", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_value(*args, tmp_path / "half", cfg, progress=False)
    monkeypatch.setattr(tv, "critic_loss", real)
    resumed = train_value(*args, tmp_path / "half", cfg, resume=True, progress=False)
    assert resumed["val_q_loss"] == full["val_q_loss"]
    a, b = ValueFunction.from_pretrained(tmp_path / "full"), ValueFunction.from_pretrained(tmp_path / "half")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
