"""The VLA policy on CPU with a tiny config: shapes, batched sampling, CFG, checkpoints, training, resume."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import TINY

from vla_runtime.dataset import Episode, write_dataset_header, write_episode
from vla_runtime.policy.config import CONFIG_TYPE, CONFIG_VERSION, PolicyConfig
from vla_runtime.policy.model import VLAPolicy, shared_language_encoder
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.protocol import Context
from vla_runtime.policy.train import TrainConfig, Trainer, train_policy
from vla_runtime.training import state_dir
from vla_runtime.types import PROPRIO_NAMES, ActionSpec, CameraInfo, Observation

pytestmark = pytest.mark.unit

SPEC = TINY.action_spec
H, A, P = TINY.horizon, TINY.action_dim, TINY.proprio_dim


def fit_normalizer(seed: int = 0) -> Normalizer:
    """Fitted on actions spanning twice the ActionSpec bounds, so unclipped samples can leave them."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(2 * SPEC.low_array() - 0.5, 2 * SPEC.high_array(), size=(64, A)).astype(np.float32)
    proprio = rng.normal(size=(64, P)).astype(np.float32)
    return Normalizer.fit(actions, proprio)


NORM = fit_normalizer()


def make_policy(seed: int = 0, **overrides) -> VLAPolicy:
    """A tiny untrained policy whose zero-initialised output layer is randomised (so the head is not trivial)."""
    torch.manual_seed(seed)
    model = VLAPolicy(dataclasses.replace(TINY, **overrides), NORM)
    with torch.no_grad():
        model.head.action_out.weight.normal_(0.0, 0.3)
        model.head.action_out.bias.normal_(0.0, 0.1)
    return model.eval()


def make_obs(seed: int = 0, size: tuple[int, int] = (16, 16), camera: str = "static", proprio_dim: int = P,
             instruction: str = "pick up the red cube") -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={camera: rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)},
                       instruction=instruction, proprio=rng.normal(size=proprio_dim).astype(np.float32))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight a busy machine for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def language():
    return shared_language_encoder("")


@pytest.fixture
def policy(language) -> VLAPolicy:
    return make_policy()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- shapes, clipping


@pytest.mark.parametrize("n", [1, 3])
def test_encode_and_sample_shapes_dtype_and_bounds(policy: VLAPolicy, n: int) -> None:
    ctx = policy.encode(make_obs())
    assert isinstance(ctx, Context) and ctx.cond.shape == (1, TINY.d_model)
    assert torch.isfinite(ctx.cond).all()
    actions = policy.sample(ctx, n, gen(0))
    assert isinstance(actions, np.ndarray) and actions.shape == (n, H, A) and actions.dtype == np.float32
    assert np.all(np.isfinite(actions))
    assert np.all(actions >= SPEC.low_array()) and np.all(actions <= SPEC.high_array())


def test_sample_clips_to_action_spec_bounds(policy: VLAPolicy) -> None:
    ctx = policy.encode(make_obs())
    actions = policy.sample(ctx, 16, gen(1))
    with torch.no_grad():
        raw = policy.denoise(ctx.cond, torch.randn((16, H, A), generator=gen(1)))
    unclipped = policy.normalizer.unnormalize_actions(raw).numpy()
    # the normaliser spans 2x the bounds, yet denoising bounds each step's clean estimate per dimension
    # to the ActionSpec, so the raw samples stay inside it (up to float error)
    span = SPEC.high_array() - SPEC.low_array()
    assert np.all(unclipped >= SPEC.low_array() - 1e-5 * span) and np.all(unclipped <= SPEC.high_array() + 1e-5 * span)
    np.testing.assert_allclose(actions, np.clip(unclipped, SPEC.low_array(), SPEC.high_array()), atol=1e-6)
    assert np.all(actions >= SPEC.low_array()) and np.all(actions <= SPEC.high_array())


def test_sampling_reaches_bounds_outside_the_normalisers_range(language) -> None:
    """Normalisation uses q01..q99, so real actions (the expert's 3 cm steps) lie beyond +-1: sampling
    must not clip there (it once capped dx at 2.1 cm and every approach fell short)."""
    rng = np.random.default_rng(0)
    narrow = Normalizer.fit(rng.uniform(SPEC.low_array() / 2, SPEC.high_array() / 2, (64, A)).astype(np.float32),
                            rng.normal(size=(64, P)).astype(np.float32))  # spans half the bounds
    torch.manual_seed(0)
    model = VLAPolicy(TINY, narrow).eval()
    with torch.no_grad():  # a head whose clean-chunk estimate is far beyond every bound, toward +
        model.head.action_out.bias.fill_(-3.0)
    actions = model.sample(model.encode(make_obs()), 16, gen(0))
    at_bound = np.isclose(actions, SPEC.high_array(), atol=1e-4)
    assert at_bound.mean() > 0.95, at_bound.mean()
    # The old global +-1 clip capped every entry at q99, half the bound.
    assert actions.max(axis=(0, 1))[:3] == pytest.approx(SPEC.high_array()[:3], abs=1e-4)
    assert np.all(actions.mean(axis=(0, 1))[:3] > 1.5 * narrow.action_high[:3])


def test_sample_rejects_bad_n_and_bad_noise_shape(policy: VLAPolicy) -> None:
    ctx = policy.encode(make_obs())
    with pytest.raises(ValueError, match="n must be >= 1"):
        policy.sample(ctx, 0)
    with pytest.raises(ValueError, match=re.escape(f"({2}, {H}, {A})")):
        policy.sample(ctx, 2, noise=torch.zeros(3, H, A))


# --------------------------------------------------------------------------- batched sampling


def test_sample_never_runs_the_encoders_and_batches_one_token(policy: VLAPolicy, monkeypatch) -> None:
    ctx = policy.encode(make_obs())

    def forbidden(*args, **kwargs):
        raise AssertionError("an encoder ran inside sample()")

    for module in (policy.vision, policy.lang_proj, policy.proprio_mlp, policy.fuse):
        monkeypatch.setattr(module, "forward", forbidden)
    monkeypatch.setattr("vla_runtime.policy.model.shared_language_encoder", forbidden)
    calls: list[torch.Tensor] = []
    policy.head.register_forward_hook(lambda mod, inputs, out: calls.append(inputs[2].clone()))

    noise = torch.randn((4, H, A), generator=gen(3))
    batched = policy.sample(ctx, 4, noise=noise)
    assert len(calls) == TINY.inference_steps
    for cond in calls:  # every row of every step's condition is the single encoded token
        assert cond.shape == (4, TINY.d_model)
        torch.testing.assert_close(cond, ctx.cond.expand(4, -1), rtol=0, atol=0)
    for i in range(4):
        single = policy.sample(ctx, 1, noise=noise[i:i + 1])
        np.testing.assert_allclose(batched[i], single[0], rtol=0, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # rows really use their own noise


@pytest.mark.parametrize("steps", [1, 2, None])
def test_sample_runs_the_dit_once_per_requested_denoising_step(policy: VLAPolicy, steps) -> None:
    ctx = policy.encode(make_obs())
    calls: list[int] = []
    hook = policy.head.register_forward_hook(lambda mod, inputs, out: calls.append(int(inputs[1][0])))
    try:
        out = policy.sample(ctx, 3, gen(5), steps=steps)
    finally:
        hook.remove()
    assert len(calls) == (TINY.inference_steps if steps is None else steps)
    assert calls == sorted(calls, reverse=True) and len(set(calls)) == len(calls)  # from noisy to clean
    own = policy.sample(ctx, 3, gen(5))
    if steps is None:
        np.testing.assert_array_equal(out, own)
    else:  # the same noise denoised along a coarser schedule: another chunk, inside the bounds
        assert not np.allclose(out, own)
        assert np.all(out >= TINY.action_spec.low_array()) and np.all(out <= TINY.action_spec.high_array())
    np.testing.assert_array_equal(policy.sample(ctx, 3, gen(5), steps=TINY.inference_steps), own)


@pytest.mark.parametrize("bad", [0, -1, TINY.train_timesteps + 1, True, 2.5])
def test_sample_rejects_a_bad_step_count(policy: VLAPolicy, bad) -> None:
    with pytest.raises(ValueError, match=f"steps must be an integer in 1..train_timesteps=20, got {bad!r}"):
        policy.sample(policy.encode(make_obs()), 2, gen(0), steps=bad)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_actions_different_seed_different_actions(policy: VLAPolicy) -> None:
    ctx = policy.encode(make_obs())
    a = policy.sample(ctx, 3, gen(7))
    b = policy.sample(ctx, 3, gen(7))
    c = policy.sample(ctx, 3, gen(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # encode itself is deterministic (eval mode, no augmentation)
    torch.testing.assert_close(policy.encode(make_obs()).cond, ctx.cond, rtol=0, atol=0)


# --------------------------------------------------------------------------- classifier-free guidance


def _count_head_batches(model: VLAPolicy) -> list[int]:
    sizes: list[int] = []
    model.head.register_forward_hook(lambda mod, inputs, out: sizes.append(inputs[0].shape[0]))
    return sizes


def test_guidance_changes_the_result_and_costs_a_double_batch(language) -> None:
    plain = make_policy(guidance_scale=1.0)
    guided = make_policy(guidance_scale=3.0)
    guided.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for m in (plain, guided):
            m.null_cond.copy_(torch.randn((1, TINY.d_model), generator=gen(5)))
    ctx = plain.encode(make_obs())
    noise = torch.randn((3, H, A), generator=gen(4))

    plain_sizes, guided_sizes = _count_head_batches(plain), _count_head_batches(guided)
    a = plain.sample(ctx, 3, noise=noise)
    b = guided.sample(ctx, 3, noise=noise)
    assert plain_sizes == [3] * TINY.inference_steps  # one batch of n per step without guidance
    assert guided_sizes == [6] * TINY.inference_steps  # cond + uncond in one batch of 2n
    assert not np.allclose(a, b, atol=1e-4)


def test_guidance_zero_is_the_unconditional_model(language) -> None:
    uncond = make_policy(guidance_scale=0.0)
    plain = make_policy(guidance_scale=1.0)
    with torch.no_grad():
        uncond.null_cond.copy_(torch.randn((1, TINY.d_model), generator=gen(5)))
    plain.load_state_dict(uncond.state_dict())
    ctx = uncond.encode(make_obs())
    noise = torch.randn((2, H, A), generator=gen(6))
    a = uncond.sample(ctx, 2, noise=noise)
    b = plain.sample(Context(cond=plain.null_cond.detach().clone()), 2, noise=noise)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- encode validation


def test_encode_resizes_larger_images_to_the_configured_size(policy: VLAPolicy) -> None:
    big = np.random.default_rng(0).integers(0, 256, size=(2, 40, 40, 3), dtype=np.uint8)
    x = policy.images_to_tensor(big)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # a flat-colour image stays that colour after resizing, so 40x40 and 16x16 encode identically
    flat = {size: Observation(images={"static": np.full((*size, 3), (200, 30, 90), np.uint8)},
                              instruction="pick up the red cube", proprio=np.zeros(P, np.float32))
            for size in ((40, 40), (16, 16))}
    torch.testing.assert_close(policy.images_to_tensor(flat[(40, 40)].images["static"][None]),
                               policy.images_to_tensor(flat[(16, 16)].images["static"][None]), rtol=0, atol=1e-5)
    ctx_big, ctx_small = policy.encode(flat[(40, 40)]), policy.encode(flat[(16, 16)])
    assert ctx_big.cond.shape == (1, TINY.d_model)
    torch.testing.assert_close(ctx_big.cond, ctx_small.cond, rtol=0, atol=1e-5)


def test_encode_rejects_missing_camera_and_wrong_proprio(policy: VLAPolicy) -> None:
    with pytest.raises(ValueError, match=r"camera\(s\) \['static'\].*\['wrist'\]"):
        policy.encode(make_obs(camera="wrist"))
    with pytest.raises(ValueError, match=r"proprio of shape \(12,\).*\(5,\)"):
        policy.encode(make_obs(proprio_dim=5))


def test_policy_rejects_normalizer_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="action dims"):
        VLAPolicy(TINY, Normalizer(np.zeros(3), np.ones(3), np.zeros(P), np.ones(P)))
    with pytest.raises(ValueError, match="proprio dims"):
        VLAPolicy(TINY, Normalizer(np.zeros(A), np.ones(A), np.zeros(4), np.ones(4)))


# --------------------------------------------------------------------------- Normalizer


def test_normalizer_action_round_trip() -> None:
    a = torch.from_numpy(np.random.default_rng(1).uniform(-0.05, 1.2, size=(5, H, A)).astype(np.float32))
    back = NORM.unnormalize_actions(NORM.normalize_actions(a))
    torch.testing.assert_close(back, a, rtol=0, atol=1e-6)
    a64 = a.double()
    assert NORM.normalize_actions(a64).dtype == torch.float64


def test_normalizer_fit_maps_q01_q99_to_minus_one_one() -> None:
    rng = np.random.default_rng(2)
    actions = rng.normal(size=(500, A)) * np.arange(1, A + 1)
    proprio = rng.normal(3.0, 2.0, size=(500, P))
    norm = Normalizer.fit(actions, proprio)
    q01, q99 = np.quantile(actions, 0.01, axis=0), np.quantile(actions, 0.99, axis=0)
    np.testing.assert_allclose(norm.action_low, q01, rtol=1e-5)
    np.testing.assert_allclose(norm.action_high, q99, rtol=1e-5)
    lo = norm.normalize_actions(torch.tensor(q01, dtype=torch.float64))
    hi = norm.normalize_actions(torch.tensor(q99, dtype=torch.float64))
    np.testing.assert_allclose(lo.numpy(), -1.0, atol=1e-5)
    np.testing.assert_allclose(hi.numpy(), 1.0, atol=1e-5)
    z = norm.normalize_proprio(torch.tensor(proprio, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)


def test_normalizer_constant_dimension_does_not_divide_by_zero() -> None:
    rng = np.random.default_rng(3)
    actions = rng.normal(size=(50, A))
    actions[:, SPEC.gripper_index] = 1.0
    proprio = rng.normal(size=(50, P))
    proprio[:, 4] = 0.04
    norm = Normalizer.fit(actions, proprio)
    assert norm.action_high[SPEC.gripper_index] > norm.action_low[SPEC.gripper_index]
    assert norm.proprio_std[4] > 0
    a = norm.normalize_actions(torch.tensor(actions, dtype=torch.float32))
    p = norm.normalize_proprio(torch.tensor(proprio, dtype=torch.float32))
    assert torch.isfinite(a).all() and torch.isfinite(p).all()
    np.testing.assert_allclose(a[:, SPEC.gripper_index].numpy(), 0.0, atol=1e-3)  # the constant sits mid-range
    np.testing.assert_allclose(norm.unnormalize_actions(a).numpy(), actions, atol=1e-5)


def test_normalizer_dict_round_trip_and_missing_key() -> None:
    d = json.loads(json.dumps(NORM.to_dict()))
    back = Normalizer.from_dict(d)
    for k in ("action_low", "action_high", "proprio_mean", "proprio_std"):
        np.testing.assert_array_equal(getattr(back, k), getattr(NORM, k))
        assert getattr(back, k).dtype == np.float32
    del d["proprio_std"]
    with pytest.raises(ValueError, match="proprio_std"):
        Normalizer.from_dict(d)


def test_normalizer_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="proprio_std"):
        Normalizer(np.zeros(2), np.ones(2), np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="action_high"):
        Normalizer(np.zeros(2), np.array([1.0, np.nan]), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="differ"):
        Normalizer(np.zeros(2), np.ones(3), np.zeros(2), np.ones(2))


# --------------------------------------------------------------------------- PolicyConfig


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"d_model": 30, "dit_heads": 4}, "d_model=30"),
        ({"inference_steps": 30}, "got 30"),
        ({"inference_steps": 0}, "got 0"),
        ({"image_size": (8, 16)}, re.escape("(8, 16)")),
        ({"image_size": (16, 1024)}, re.escape("(16, 1024)")),
        ({"cond_dropout": 1.0}, "got 1.0"),
        ({"cond_dropout": -0.1}, "got -0.1"),
        ({"vision_channels": (8, 6, 8)}, re.escape("(8, 6, 8)")),
        ({"vision_strides": (1, 3, 1)}, re.escape("(1, 3, 1)")),
        ({"vision_strides": (1, 1)}, re.escape("(1, 1)")),
        ({"guidance_scale": -1.0}, "got -1.0"),
        ({"beta_schedule": "cosine"}, "'cosine'"),
        ({"keypoints": 0}, "keypoints"),
        ({"aux_weight": -1.0}, "aux_weight .*got -1.0"),
        ({"aux_object_weight": float("nan")}, "aux_object_weight .*got nan"),
    ],
)
def test_policy_config_validation_echoes_the_bad_value(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **kw)


def test_policy_config_dict_round_trip() -> None:
    cfg = dataclasses.replace(TINY, action_spec=ActionSpec(chunk_length=4, control_hz=5.0), guidance_scale=2.5,
                              image_size=(16, 24))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["type"] == CONFIG_TYPE and d["version"] == CONFIG_VERSION
    back = PolicyConfig.from_dict(d)
    assert back == cfg
    assert isinstance(back.image_size, tuple) and isinstance(back.vision_channels, tuple)
    assert back.horizon == 4


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"type": "something.else"}, "something.else"),
        ({"type": None}, "config type"),
        ({"version": 99}, "99"),
        ({"bogus_key": 1}, "bogus_key"),
    ],
)
def test_policy_config_from_dict_rejects_bad_headers(edit: dict, match: str) -> None:
    d = TINY.to_dict()
    for k, v in edit.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    with pytest.raises(ValueError, match=match):
        PolicyConfig.from_dict(d)


def test_policy_config_from_dict_without_action_spec_defaults_or_raises_value_error() -> None:
    d = TINY.to_dict()
    del d["action_spec"]
    try:
        cfg = PolicyConfig.from_dict(d)
    except ValueError as exc:
        assert "action_spec" in str(exc)
    else:
        assert cfg.action_spec == ActionSpec()


@pytest.mark.parametrize(("key", "value"), [("d_model", "32"), ("image_size", 16), ("guidance_scale", None)])
def test_policy_config_from_dict_wrong_value_type_raises_value_error(key: str, value) -> None:
    d = TINY.to_dict()
    d[key] = value
    with pytest.raises(ValueError, match=key):
        PolicyConfig.from_dict(d)


# --------------------------------------------------------------------------- checkpoints


def test_save_and_load_round_trip_is_exact(policy: VLAPolicy, tmp_path: Path) -> None:
    out = policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                     "normalization.json"]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")]
    assert (out / "README.md").read_text().strip()
    loaded = VLAPolicy.from_pretrained(out)
    assert not loaded.training
    assert loaded.config == policy.config
    own, back = policy.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys()
    for k in own:
        torch.testing.assert_close(back[k], own[k], rtol=0, atol=0)
    obs = make_obs(4)
    np.testing.assert_array_equal(loaded.sample(loaded.encode(obs), 3, gen(11)),
                                  policy.sample(policy.encode(obs), 3, gen(11)))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "normalization.json"])
def test_load_reports_the_missing_file(policy: VLAPolicy, tmp_path: Path, name: str) -> None:
    out = policy.save_pretrained(tmp_path / "ckpt")
    (out / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(name)):
        VLAPolicy.from_pretrained(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VLAPolicy.from_pretrained(tmp_path / "nowhere")


def test_load_rejects_truncated_weights(policy: VLAPolicy, tmp_path: Path) -> None:
    out = policy.save_pretrained(tmp_path / "ckpt")
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        VLAPolicy.from_pretrained(out)


def test_load_rejects_config_that_does_not_match_the_weights(policy: VLAPolicy, tmp_path: Path) -> None:
    out = policy.save_pretrained(tmp_path / "ckpt")
    d = json.loads((out / "config.json").read_text())
    d["d_model"] = 64
    (out / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"does not match config\.json.*shape mismatches"):
        VLAPolicy.from_pretrained(out)


@pytest.mark.parametrize("name", ["config.json", "normalization.json"])
def test_load_rejects_invalid_json_and_names_the_file(policy: VLAPolicy, tmp_path: Path, name: str) -> None:
    out = policy.save_pretrained(tmp_path / "ckpt")
    (out / name).write_text('{"type": "vla_steering.policy", ')
    with pytest.raises(ValueError, match=re.escape(name)):
        VLAPolicy.from_pretrained(out)


def test_save_over_an_existing_folder_replaces_it_atomically(language, tmp_path: Path) -> None:
    first, second = make_policy(seed=0), make_policy(seed=1)
    target = tmp_path / "ckpt"
    first.save_pretrained(target)
    (target / "stale.txt").write_text("from an older save")
    second.save_pretrained(target, model_card="# card\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no .tmp-/.old- leftovers
    assert not (target / "stale.txt").exists()
    assert (target / "README.md").read_text() == "# card\n"
    loaded = load_file(str(target / "model.safetensors"))
    for k, v in second.state_dict().items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


# --------------------------------------------------------------------------- training


def _tiny_batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.uniform(0, 1, size=(n, 3, 16, 16)).astype(np.float32))
    lang = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(n, TINY.language_dim)).astype(np.float32)),
                                         dim=-1)
    proprio = torch.from_numpy(rng.normal(size=(n, P)).astype(np.float32))
    actions = torch.from_numpy(rng.uniform(SPEC.low_array(), SPEC.high_array(), size=(n, H, A)).astype(np.float32))
    return images, lang, proprio, actions


def test_loss_decreases_when_overfitting_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = VLAPolicy(TINY, NORM)
    batch = _tiny_batch()
    rep = tuple(x.repeat(8, *[1] * (x.ndim - 1)) for x in batch)  # 64 rows: a low-variance fixed-noise estimate

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model.loss(*rep, generator=gen(123)))

    start = eval_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = gen(0)
    model.train()
    for _ in range(60):
        loss = model.loss(*batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = eval_loss()
    assert np.isfinite(start) and np.isfinite(end)
    assert end < 0.5 * start, (start, end)


def test_loss_in_eval_mode_applies_no_condition_dropout(language) -> None:
    dropping = make_policy(cond_dropout=0.9)
    clean = make_policy(cond_dropout=0.0)
    with torch.no_grad():
        dropping.null_cond.copy_(torch.randn((1, TINY.d_model), generator=gen(9)))
    clean.load_state_dict(dropping.state_dict())
    batch = _tiny_batch(seed=1)
    dropping.eval()
    clean.eval()
    with torch.no_grad():
        a = dropping.loss(*batch, generator=gen(2))
        b = dropping.loss(*batch, generator=gen(2))
        ref = clean.loss(*batch, generator=gen(2))
        assert float(a) == float(b)
        assert float(a) == float(ref)  # eval: neither the mask nor its random draw happens
        dropping.train()
        trained = dropping.loss(*batch, generator=gen(2))
    assert float(trained) != float(ref)  # the comparison has teeth: training mode does drop


# --------------------------------------------------------------------------- Trainer end to end

TRAIN = TrainConfig(steps=6, batch_size=4, val_every=3, ckpt_every=3, warmup=2, val_fraction=0.2, threads=1)
INSTRUCTIONS = ("pick up the red cube", "lift the blue block", "put the green cube in the bowl")


def _episode(seed: int, t: int = 10) -> Episode:
    rng = np.random.default_rng(seed)
    cam = CameraInfo(width=16, height=16, fx=20.0, fy=20.0, cx=8.0, cy=8.0, pose_base_cam=np.eye(4))
    actions = rng.uniform(SPEC.low_array(), SPEC.high_array(), size=(t, A)).astype(np.float32)
    actions[:, SPEC.gripper_index] = (np.arange(t) >= t // 2).astype(np.float32)
    return Episode(
        images={"static": rng.integers(0, 256, size=(t + 1, 16, 16, 3), dtype=np.uint8)},
        depth={},
        proprio=rng.normal(size=(t + 1, len(PROPRIO_NAMES))).astype(np.float32),
        actions=actions,
        rewards=np.zeros(t, np.float32),
        successes=np.arange(t) == t - 1,
        meta={"task": "pick_lift", "variation": "id", "quality": "expert", "seed": seed,
              "instruction": INSTRUCTIONS[seed % len(INSTRUCTIONS)], "arm": "panda", "success": True,
              "cameras": {"static": cam.to_dict()}, "action_spec": SPEC.to_dict()},
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset_header(root, {"tasks": ["pick_lift"], "episodes_per_task": 6, "seed": 0})
    for i in range(6):
        write_episode(root, i, _episode(i))
    return root


@pytest.fixture(scope="module")
def run9(dataset: Path, tmp_path_factory, language) -> Path:
    """An uninterrupted 9-step run, the reference for resume."""
    out = tmp_path_factory.mktemp("run9") / "ckpt"
    train_policy([dataset], out, TINY, dataclasses.replace(TRAIN, steps=9), progress=False)
    return out


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (state_dir(out) / "metrics.jsonl").read_text().splitlines()]


def _assert_same_tensors(a: dict, b: dict, what: str, atol: float = 0.0) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{what} {k}: {m}")


def _raw_weights(out: Path) -> dict:
    """The trained (non-EMA) weights from the training state: EMA(0.999) weights barely move in 9 steps."""
    state = load_file(str(state_dir(out) / "state.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("model.")}


def test_train_policy_writes_checkpoint_state_and_metrics(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    result = train_policy([dataset], out, TINY, TRAIN, progress=False)
    assert result["steps"] == 6 and result["episodes"] == 6
    assert result["train_steps_total"] == 50 and result["val_steps"] == 10  # 1 of 6 episodes held out
    model = VLAPolicy.from_pretrained(out)
    assert model.config == TINY
    sdir = tmp_path / "ckpt.training_state"
    assert sorted(p.name for p in sdir.iterdir()) == ["metrics.jsonl", "state.safetensors", "trainer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "ckpt.training_state"]
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [3, 6]
    for m in metrics:
        for key in ("loss", "lr", "val_loss", "val_action_mae", "ema_val_loss", "ema_val_action_mae"):
            assert np.isfinite(m[key]), key
    meta = json.loads((sdir / "trainer.json").read_text())
    assert meta["step"] == 6 and meta["train_config"]["steps"] == 6
    # the sampled checkpoint works on an observation
    actions = model.sample(model.encode(make_obs(instruction=INSTRUCTIONS[1])), 2, gen(0))
    assert actions.shape == (2, H, A)


def test_resume_after_interruption_is_bit_for_bit(dataset: Path, run9: Path, tmp_path: Path, monkeypatch) -> None:
    """A 9-step run killed after its step-6 checkpoint, resumed, ends exactly where the uninterrupted run does."""
    out = tmp_path / "ckpt"
    original = Trainer.train_step

    def dying(self):
        if self.step == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    cfg9 = dataclasses.replace(TRAIN, steps=9)
    with pytest.raises(KeyboardInterrupt):
        train_policy([dataset], out, TINY, cfg9, progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert json.loads((state_dir(out) / "trainer.json").read_text())["step"] == 6
    result = train_policy([dataset], out, TINY, cfg9, resume=True, progress=False)
    assert result["steps"] == 9
    assert [m["step"] for m in _metrics(out)] == [3, 6, 9]
    _assert_same_tensors(load_file(str(out / "model.safetensors")), load_file(str(run9 / "model.safetensors")),
                         "checkpoint")
    sa = load_file(str(state_dir(out) / "state.safetensors"))
    sb = load_file(str(state_dir(run9) / "state.safetensors"))
    assert any(k.startswith("opt.") for k in sa) and "rng" in sa
    _assert_same_tensors(sa, sb, "training state (weights, EMA, AdamW moments, RNG)")
    assert any(not torch.equal(v, sa[f"model.{k}"]) for k, v in VLAPolicy.from_pretrained(run9).state_dict().items()
               if f"model.{k}" in sa)  # the state holds raw weights, the checkpoint the EMA ones
    ma, mb = _metrics(out)[-1], _metrics(run9)[-1]
    for key in ("loss", "lr", "val_loss", "val_action_mae", "ema_val_loss"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-6, abs=1e-9), key


def test_resume_refuses_a_changed_step_count(dataset: Path, tmp_path: Path) -> None:
    """The cosine schedule depends on `steps`: extending a finished run would not match an uninterrupted one."""
    out = tmp_path / "ckpt"
    train_policy([dataset], out, TINY, TRAIN, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_policy([dataset], out, TINY, dataclasses.replace(TRAIN, steps=9), resume=True, progress=False)
    assert [m["step"] for m in _metrics(out)] == [3, 6]


def test_resume_rejects_changed_parameters_and_missing_state(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with pytest.raises(FileNotFoundError, match="training_state"):
        train_policy([dataset], out, TINY, TRAIN, resume=True, progress=False)
    train_policy([dataset], out, TINY, dataclasses.replace(TRAIN, steps=3), progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_policy([dataset], out, TINY, dataclasses.replace(TRAIN, lr=1e-3), resume=True, progress=False)
    assert [m["step"] for m in _metrics(out)] == [3]  # the refused resume left the metrics alone


def test_a_non_finite_loss_stops_the_policy_run_before_it_is_saved(dataset: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The shared harness's check now covers the policy trainer too (its own loop had none)."""
    original = Trainer.train_step

    def diverging(self):
        loss = original(self)
        return float("nan") if self.step == 1 else loss

    monkeypatch.setattr(Trainer, "train_step", diverging)
    with pytest.raises(FloatingPointError, match="train policy: loss is nan at step 1"):
        train_policy([dataset], tmp_path / "ckpt", TINY, TRAIN, progress=False)
    assert not (tmp_path / "ckpt").exists()


def test_a_version_1_config_loads_without_its_training_only_keys(policy: VLAPolicy, tmp_path: Path) -> None:
    """Version 1 configs (the bundled policy's among them) held augmentation and label settings that now
    live in TrainConfig; they load with those keys dropped, and a version-2 config refuses them."""
    out = policy.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    legacy = {**{k: v for k, v in config.items() if k != "role_grounding"}, "version": 1, "aux_object_steps": 2,
              "anchor_noise": 0.01, "random_shift": 4, "color_jitter": 0.15}  # role_grounding came in version 3
    (out / "config.json").write_text(json.dumps(legacy))
    assert VLAPolicy.from_pretrained(out).config == policy.config
    (out / "config.json").write_text(json.dumps({**legacy, "version": CONFIG_VERSION, "role_grounding": False}))
    with pytest.raises(ValueError, match=r"unknown config keys: \['anchor_noise', 'aux_object_steps'"):
        VLAPolicy.from_pretrained(out)
    bundled = json.loads((Path(__file__).parents[2] / "models" / "policy" / "config.json").read_text())
    assert PolicyConfig.from_dict(bundled).d_model == bundled["d_model"]
