"""ONNX export and the onnxruntime backend: checker-clean graphs with dynamic batch, parity with the torch
policy and scorers at named tolerances, the same actions for the same seed, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.steering import SteeringConfig, build_steered, ensure_export, steered_pipeline
from verifiers.value import ValueConfig, ValueFunction
from vla_runtime.backends import BACKENDS, cached_export, check_backend, load_policy
from vla_runtime.backends.onnx import OnnxPolicy, OnnxScorer, OrtGraph, providers
from vla_runtime.export import OPSET, export_onnx, read_manifest
from vla_runtime.policy.dit import dit_forward_static
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.protocol import Context
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

ACTION_ATOL = 1e-4  # fp32 max-abs on actions after un-normalisation (robot units), the bound
SCORE_ATOL = 1e-4  # verifier / value scores
COND_ATOL = 1e-5  # the conditioning token
H, A, P, D = TINY.horizon, TINY.action_dim, TINY.proprio_dim, TINY.d_model
ANCHORED = dataclasses.replace(TINY, anchor=True, aux_object_weight=1.0)
ROLED = dataclasses.replace(ANCHORED, role_grounding=True)
CHEAP_STEPS = 3  # the extra sampler graph the fixtures export (cheaper steering candidates)


@dataclasses.dataclass
class Setup:
    root: Path
    policy_dir: Path
    verifier_dir: Path
    value_dir: Path
    export: Path
    policy: VLAPolicy
    verifier: ActionVerifier
    value: ValueFunction


def _setup(root: Path, config) -> Setup:
    torch.manual_seed(0)
    policy = VLAPolicy(config, uniform_normalizer()).eval()
    for p in policy.parameters():  # the DiT's output layer starts at zero: give every weight a value
        p.data.normal_(0, 0.2)
    from vla_runtime.checkpoint import weights_fingerprint

    fp = weights_fingerprint(policy)
    verifier = ActionVerifier(VerifierConfig(cond_dim=D, horizon=H, action_dim=A, hidden=16, layers=1, policy=fp),
                              uniform_normalizer()).eval()
    value = ValueFunction(ValueConfig(cond_dim=D, horizon=H, action_dim=A, hidden=16, layers=1, bins=11,
                                      v_min=-10.0, v_max=0.0, policy=fp), uniform_normalizer()).eval()
    policy_dir = policy.save_pretrained(root / "policy")
    verifier_dir, value_dir = verifier.save_pretrained(root / "verifier"), value.save_pretrained(root / "value")
    export = export_onnx(policy_dir, root / "export", {"verifier": (verifier, verifier_dir),
                                                       "value": (value, value_dir)}, sample_steps=(CHEAP_STEPS,))
    return Setup(root, policy_dir, verifier_dir, value_dir, export, policy, verifier, value)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Setup:
    return _setup(tmp_path_factory.mktemp("onnx_plain"), TINY)


@pytest.fixture(scope="module")
def anchored(tmp_path_factory) -> Setup:
    return _setup(tmp_path_factory.mktemp("onnx_anchor"), ANCHORED)


@pytest.fixture(scope="module")
def roled(tmp_path_factory) -> Setup:
    return _setup(tmp_path_factory.mktemp("onnx_roles"), ROLED)


def _obs(seed: int = 0, size: int = 16) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)},
                       instruction="pick up the red cube", proprio=rng.normal(size=P).astype(np.float32))


# --------------------------------------------------------------------------- the export


def test_export_writes_checked_graphs_with_their_metadata(plain) -> None:
    manifest = read_manifest(plain.export)
    assert manifest["opset"] == OPSET and set(manifest["graphs"]) == {
        "encoder", "denoiser", "sampler", f"sampler_s{CHEAP_STEPS}", "verifier", "value"}
    assert manifest["samplers"] == {str(TINY.inference_steps): "sampler",
                                    str(CHEAP_STEPS): f"sampler_s{CHEAP_STEPS}"}
    for name, graph in manifest["graphs"].items():
        model = onnx.load(str(plain.export / graph["file"]))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == OPSET
        props = {p.key: p.value for p in model.metadata_props}
        assert props["vla_steering.policy_fingerprint"] == manifest["policy"]["fingerprint"]
        assert json.loads(props["vla_steering.action_spec"]) == TINY.action_spec.to_dict()
        dims = [d.dim_param or d.dim_value for d in model.graph.input[-1].type.tensor_type.shape.dim]
        assert dims[0] in ("B", "N", "M"), f"{name}: the batch axis of its last input is not dynamic: {dims}"
    assert (plain.export / "config.json").is_file() and (plain.export / "verifier" / "config.json").is_file()


def test_a_failed_export_leaves_nothing_behind(plain, tmp_path) -> None:
    with pytest.raises(ValueError, match="only the verifier and the value"):
        export_onnx(plain.policy_dir, tmp_path / "out", {"safety": (plain.value, plain.value_dir)})
    assert list(tmp_path.iterdir()) == []


def test_static_dit_forward_is_the_head(plain) -> None:
    x, t, c = torch.randn(5, H, A), torch.tensor([0, 3, 7, 12, 19]), torch.randn(5, D)
    with torch.no_grad():
        np.testing.assert_allclose(dit_forward_static(plain.policy.head, x, t, c), plain.policy.head(x, t, c),
                                   atol=1e-6)


# --------------------------------------------------------------------------- parity with torch


@pytest.mark.parametrize("n", [1, 3, 17])
def test_sampler_matches_torch_for_the_same_noise(plain, n) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    ctx = plain.policy.encode(_obs())
    noise = torch.randn(n, H, A, generator=torch.Generator().manual_seed(n))
    ref = plain.policy.sample(ctx, n, noise=noise)
    got = onnx_policy.sample(ctx, n, noise=noise)
    assert got.shape == (n, H, A) and np.abs(got - ref).max() <= ACTION_ATOL


@pytest.mark.parametrize("steps", [None, CHEAP_STEPS])
def test_each_exported_sampler_matches_torch_at_its_step_count(plain, steps) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    ctx = plain.policy.encode(_obs())
    noise = torch.randn(5, H, A, generator=torch.Generator().manual_seed(11))
    ref = plain.policy.sample(ctx, 5, noise=noise, steps=steps)
    assert np.abs(onnx_policy.sample(ctx, 5, noise=noise, steps=steps) - ref).max() <= ACTION_ATOL
    if steps is not None:  # really another graph: the policy's own steps give other chunks
        assert np.abs(onnx_policy.sample(ctx, 5, noise=noise) - ref).max() > 100 * ACTION_ATOL


def test_a_step_count_without_a_sampler_graph_is_refused_with_the_command_that_adds_it(plain, tmp_path) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    ctx = onnx_policy.encode(_obs())
    with pytest.raises(ValueError, match=r"sampler graphs for \[3, 4\] DDIM steps, not 2; export with "
                                         r"`vla export onnx --sample-steps 2`"):
        onnx_policy.sample(ctx, 2, steps=2)
    with pytest.raises(ValueError, match="sample_steps must be an integer in 1..train_timesteps=20, got 0"):
        export_onnx(plain.policy_dir, tmp_path / "bad", sample_steps=(0,))
    assert not (tmp_path / "bad").exists()
    assert read_manifest(export_onnx(plain.policy_dir, tmp_path / "default"))["samplers"] == {"4": "sampler"}
    two = ensure_export(plain.policy_dir, {}, root=tmp_path / "cache", steps=2)  # what `--steps 2` exports
    assert read_manifest(two)["samplers"] == {"4": "sampler", "2": "sampler_s2"}
    assert ensure_export(plain.policy_dir, {}, root=tmp_path / "cache") != two  # keyed by the extra samplers
    noise = torch.randn(3, H, A)
    assert np.abs(OnnxPolicy(two).sample(ctx, 3, noise=noise, steps=2)
                  - plain.policy.sample(ctx, 3, noise=noise, steps=2)).max() <= ACTION_ATOL


def test_a_version_1_export_still_loads_with_the_policys_own_sampler(plain, tmp_path) -> None:
    old = tmp_path / "v1"
    shutil.copytree(plain.export, old)
    manifest = json.loads((old / "export.json").read_text())
    manifest["version"] = 1
    del manifest["samplers"], manifest["graphs"][f"sampler_s{CHEAP_STEPS}"]
    (old / "export.json").write_text(json.dumps(manifest))
    onnx_policy = OnnxPolicy(old)
    ctx, noise = plain.policy.encode(_obs()), torch.randn(2, H, A)
    ref = plain.policy.sample(ctx, 2, noise=noise)
    assert np.abs(onnx_policy.sample(ctx, 2, noise=noise) - ref).max() <= ACTION_ATOL
    with pytest.raises(ValueError, match=f"sampler graphs for \\[4\\] DDIM steps, not {CHEAP_STEPS}"):
        onnx_policy.sample(ctx, 2, steps=CHEAP_STEPS)
    manifest["version"] = 7
    (old / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="v7, expected 'vla_steering.onnx_export' v1 or v2"):
        OnnxPolicy(old)


def test_same_generator_seed_gives_the_same_actions(plain) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    ctx = plain.policy.encode(_obs())
    ref = plain.policy.sample(ctx, 4, torch.Generator().manual_seed(7))
    got = onnx_policy.sample(ctx, 4, torch.Generator().manual_seed(7))
    assert np.abs(got - ref).max() <= ACTION_ATOL
    assert np.abs(onnx_policy.sample(ctx, 4, torch.Generator().manual_seed(8)) - ref).max() > 100 * ACTION_ATOL


def test_denoiser_graph_matches_the_head(plain) -> None:
    graph = OrtGraph(plain.export / "denoiser.onnx")
    x, t, c = torch.randn(6, H, A), torch.randint(0, TINY.train_timesteps, (6,)), torch.randn(6, D)
    with torch.no_grad():
        ref = plain.policy.head(x, t, c).numpy()
    assert np.abs(graph(x=x.numpy(), t=t.numpy(), cond=c.numpy())["eps"] - ref).max() <= 1e-5


def test_encoder_matches_torch_and_resizes_like_it(plain) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    for size in (16, 24):  # 24x24 frames go through the same resize as the torch policy
        obs = _obs(size, size)
        ref, got = plain.policy.encode(obs), onnx_policy.encode(obs)
        assert np.abs(got.cond.numpy() - ref.cond.numpy()).max() <= COND_ATOL
        assert got.anchor is None


def test_anchor_policy_estimates_then_uses_the_given_anchor(anchored) -> None:
    onnx_policy = OnnxPolicy(anchored.export)
    obs = _obs(3)
    ref, got = anchored.policy.encode(obs), onnx_policy.encode(obs)
    np.testing.assert_allclose(got.anchor, ref.anchor, atol=COND_ATOL)
    assert np.abs(got.cond.numpy() - ref.cond.numpy()).max() <= COND_ATOL
    latched = np.array([0.5, 0.1, 0.6, -0.2], np.float32)
    ref, got = anchored.policy.encode(obs, anchor=latched), onnx_policy.encode(obs, anchor=latched)
    np.testing.assert_allclose(got.anchor, latched, atol=1e-7)
    assert np.abs(got.cond.numpy() - ref.cond.numpy()).max() <= COND_ATOL
    with pytest.raises(ValueError, match="anchor must be finite"):
        onnx_policy.encode(obs, anchor=np.array([np.nan, 0, 0, 0]))


def test_role_grounding_policy_exports_its_token_input_and_matches_torch(roled) -> None:
    onnx_policy = OnnxPolicy(roled.export)
    graph = onnx.load(str(roled.export / "encoder.onnx"))
    lang = next(i for i in graph.graph.input if i.name == "lang")
    assert [d.dim_value or d.dim_param for d in lang.type.tensor_type.shape.dim] == ["B", 33, 384]
    for seed, text in ((4, "put the red cube on the blue cube"), (5, "put the blue cube on the red cube")):
        obs = dataclasses.replace(_obs(seed), instruction=text)
        ref, got = roled.policy.encode(obs), onnx_policy.encode(obs)
        np.testing.assert_allclose(got.anchor, ref.anchor, atol=COND_ATOL)
        assert np.abs(got.cond.numpy() - ref.cond.numpy()).max() <= COND_ATOL
        gen = [torch.Generator().manual_seed(7) for _ in range(2)]
        assert np.abs(onnx_policy.sample(got, 4, gen[0]) - roled.policy.sample(ref, 4, gen[1])).max() <= ACTION_ATOL


@pytest.mark.parametrize("m", [1, 5, 33])
def test_scorer_heads_match_torch(plain, m) -> None:
    ctx = plain.policy.encode(_obs())
    chunks = np.random.default_rng(m).uniform(TINY.action_spec.low_array(), TINY.action_spec.high_array(),
                                              (m, H, A)).astype(np.float32)
    for name, torch_scorer in (("verifier", plain.verifier), ("value", plain.value)):
        got = OnnxScorer(plain.export, name).score(ctx, chunks)
        assert got.shape == (m,) and got.dtype == np.float64
        assert np.abs(got - torch_scorer.score(ctx, chunks)).max() <= SCORE_ATOL


def test_steered_decisions_agree_across_backends(plain) -> None:
    cfg = SteeringConfig(method="both", n=8, m=8, verifier=str(plain.verifier_dir), value=str(plain.value_dir))
    torch_steered = build_steered(plain.policy, cfg)
    onnx_steered = steered_pipeline(plain.policy_dir, cfg, "onnx", export_dir=plain.export)
    for seed in range(3):
        obs = _obs(seed)
        a = torch_steered.act(obs, torch.Generator().manual_seed(seed))
        b = onnx_steered.act(obs, torch.Generator().manual_seed(seed))
        assert a.index == b.index and np.abs(a.chunk - b.chunk).max() <= ACTION_ATOL
        for name in a.scores:
            assert np.abs(a.scores[name] - b.scores[name]).max() <= SCORE_ATOL


# --------------------------------------------------------------------------- errors, caching, providers


def test_bad_inputs_are_refused(plain, tmp_path) -> None:
    onnx_policy = OnnxPolicy(plain.export)
    ctx = onnx_policy.encode(_obs())
    with pytest.raises(ValueError, match="noise must have shape"):
        onnx_policy.sample(ctx, 2, noise=torch.zeros(3, H, A))
    with pytest.raises(ValueError, match="n must be >= 1"):
        onnx_policy.sample(ctx, 0)
    with pytest.raises(ValueError, match="not trained with an anchor"):
        onnx_policy.encode(_obs(), anchor=np.zeros(4))
    with pytest.raises(ValueError, match="proprio of shape"):
        onnx_policy.encode(Observation(images=_obs().images, instruction="x", proprio=np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="contain NaN"):
        OnnxScorer(plain.export, "value").score(ctx, np.full((2, H, A), np.nan, np.float32))
    with pytest.raises(FileNotFoundError, match="not an ONNX export"):
        OnnxPolicy(tmp_path)
    with pytest.raises(ValueError, match="graph inputs"):
        OrtGraph(plain.export / "sampler.onnx")(cond=np.zeros((1, D), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        check_backend("cuda")
    assert BACKENDS == ("torch", "onnx", "tensorrt", "remote")


def test_cached_export_is_made_once_and_keyed_by_the_weights(plain, tmp_path) -> None:
    made = []
    first = ensure_export(plain.policy_dir, {"verifier": str(plain.verifier_dir)}, root=tmp_path)
    again = cached_export({"policy": plain.policy_dir, "verifier": plain.verifier_dir}, made.append, tmp_path)
    assert again == first and made == [] and read_manifest(first)["graphs"]["verifier"]
    retrained = tmp_path / "retrained"
    plain.policy.save_pretrained(retrained)
    weights = retrained / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # one weight changed
    other = cached_export({"policy": retrained, "verifier": plain.verifier_dir}, made.append, tmp_path)
    assert other != first and made == [other]


def test_policy_loads_on_every_cpu_backend_with_the_same_contract(plain, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the onnx backend's export cache goes under ./runs/onnx
    obs, noise = _obs(), torch.randn(2, H, A)
    outs = [load_policy(plain.policy_dir, b).sample(Context(cond=plain.policy.encode(obs).cond), 2, noise=noise)
            for b in ("torch", "onnx")]
    assert np.abs(outs[0] - outs[1]).max() <= ACTION_ATOL
    assert (tmp_path / "runs" / "onnx").is_dir()


def test_providers_prefer_tensorrt_then_cuda_with_a_kept_engine_cache(tmp_path, monkeypatch) -> None:
    import onnxruntime as ort

    assert providers() == ["CPUExecutionProvider"]  # this CPU build
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    (trt, trt_options), (cuda, _), cpu = providers(tmp_path / "engines", fp16=False)
    assert (trt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_fp16_enable"] is False
    assert trt_options["trt_engine_cache_path"] == str(tmp_path / "engines") and (tmp_path / "engines").is_dir()


def test_split_batch_sampler_gives_the_bits_of_one_session(plain) -> None:
    from vla_runtime.backends.onnx import SplitBatchGraph

    split = SplitBatchGraph(plain.export / "sampler.onnx", "noise", workers=2)
    whole = OrtGraph(plain.export / "sampler.onnx", 2)
    cond = np.random.default_rng(0).normal(size=(1, D)).astype(np.float32)
    for n in (1, 2, 5, 16):  # 1: below the worker count, one session; odd n: uneven slices
        noise = np.random.default_rng(n).normal(size=(n, H, A)).astype(np.float32)
        np.testing.assert_array_equal(split(cond=cond, noise=noise)["actions"],
                                      whole(cond=cond, noise=noise)["actions"])


def test_tensorrt_backend_says_why_it_cannot_run_here(plain) -> None:
    from vla_runtime.backends.tensorrt import trt_available

    if trt_available()[0]:
        pytest.skip("TensorRT runs here: tests/unit/test_tensorrt_backend.py covers it")
    with pytest.raises(ValueError, match="tensorrt backend cannot run here"):
        load_policy(plain.export, "tensorrt")
