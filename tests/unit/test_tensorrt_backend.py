"""The TensorRT backend: engine cache keys, profiles and availability everywhere; engine builds, the cache's
reuse and parity with the torch policy where TensorRT and a CUDA device are present."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.value import ValueConfig, ValueFunction
from vla_runtime.backends.tensorrt import (
    OPT_BATCH,
    TrtGraph,
    TrtPolicy,
    TrtScorer,
    build_engines,
    engine_key,
    engine_specs,
    profile_shapes,
    trt_available,
)
from vla_runtime.export import export_onnx
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.types import Observation

pytestmark = pytest.mark.unit

TRT_OK, TRT_REASON = trt_available()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=TRT_REASON or "tensorrt available")

FP32_ATOL = 1e-3  # fp32 engines (TF32 off) against the torch policy, robot units
FP16_ATOL = 5e-2  # fp16 engines: half-precision matmuls through the unrolled DDIM loop
H, A, P = TINY.horizon, TINY.action_dim, TINY.proprio_dim
VALUE = ValueConfig(cond_dim=TINY.d_model, horizon=H, action_dim=A, hidden=16, layers=1, bins=11, v_min=-10.0,
                    v_max=0.0)
KEY = {"onnx_sha256": "ab" * 32, "gpu_name": "NVIDIA H100 80GB HBM3", "capability": (9, 0),
       "trt_version": "10.3.0", "fp16": True, "max_batch": 64}


@dataclasses.dataclass
class Exported:
    folder: Path
    policy: VLAPolicy
    value: ValueFunction


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exported:
    """A tiny policy and value head, exported with `export_onnx` (CPU: no TensorRT needed)."""
    root = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    policy = VLAPolicy(TINY, uniform_normalizer()).eval()
    value = ValueFunction(VALUE, uniform_normalizer()).eval()
    ckpt, value_dir = policy.save_pretrained(root / "policy"), value.save_pretrained(root / "value")
    return Exported(export_onnx(ckpt, root / "export", scorers={"value": (value, value_dir)}), policy, value)


def _obs(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"static": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                       instruction="pick up the red cube", proprio=rng.normal(size=P).astype(np.float32))


# --------------------------------------------------------------------------- everywhere


def test_trt_available_gives_a_reason_when_it_is_not() -> None:
    ok, reason = trt_available()
    assert isinstance(ok, bool)
    if not ok:
        assert reason.strip()
    if not torch.cuda.is_available():  # this CPU machine: never available, and says why
        assert not ok and ("tensorrt" in reason or "CUDA" in reason)


def test_trt_available_names_the_missing_piece(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    ok, reason = trt_available()
    assert not ok and reason.startswith("tensorrt not installed")

    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.3.0"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = trt_available()
    assert not ok and reason.startswith("no CUDA device")

    fake.__version__ = "8.6.1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, reason = trt_available()
    assert not ok and "8.6.1" in reason and "TensorRT 10" in reason


@pytest.mark.parametrize(("ingredient", "other"), [
    ("onnx_sha256", "cd" * 32), ("gpu_name", "NVIDIA H200"), ("capability", (8, 9)), ("trt_version", "10.4.0"),
    ("fp16", False), ("max_batch", 32)])
def test_engine_key_changes_with_each_ingredient(ingredient: str, other) -> None:
    key = engine_key(**KEY)
    assert key == engine_key(**KEY)  # pure: the same ingredients name the same engine
    assert len(key) == 20 and all(c in "0123456789abcdef" for c in key)
    assert engine_key(**{**KEY, ingredient: other}) != key


def test_profile_shapes_span_dynamic_axes_and_keep_fixed_ones() -> None:
    assert profile_shapes(["B", 3, 16, 16], 64) == ((1, 3, 16, 16), (OPT_BATCH, 3, 16, 16), (64, 3, 16, 16))
    assert profile_shapes(["N", H, A], 4) == ((1, H, A), (4, H, A), (4, H, A))  # opt never above max
    assert profile_shapes([1, 32], 64) == ((1, 32),) * 3
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        profile_shapes(["B"], 0)


def test_engine_specs_profile_only_dynamic_inputs(exported: Exported) -> None:
    specs = engine_specs(exported.folder, max_batch=8)
    assert sorted(specs) == ["denoiser", "encoder", "sampler", "value"]
    assert specs["sampler"].profiles == {"noise": ((1, H, A), (8, H, A), (8, H, A))}  # cond (1, d) is fixed
    assert specs["value"].profiles == {"chunks": ((1, H, A), (8, H, A), (8, H, A))}
    assert set(specs["denoiser"].profiles) == {"x", "t", "cond"}
    assert specs["denoiser"].profiles["t"] == ((1,), (8,), (8,))
    assert specs["encoder"].inputs == ("images", "lang", "proprio") and specs["encoder"].outputs == ("cond",)
    assert list(engine_specs(exported.folder, graphs=("sampler",))) == ["sampler"]
    with pytest.raises(ValueError, match="no graph\\(s\\) \\['verifier'\\]"):
        engine_specs(exported.folder, graphs=("verifier",))


def test_engine_specs_refuse_an_onnx_file_that_does_not_match_the_manifest(exported: Exported,
                                                                          tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(exported.folder, tmp_path / "export"))
    with (copy / "value.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="value.onnx has sha256 .* export.json says"):
        engine_specs(copy)


@pytest.mark.skipif(TRT_OK, reason="TensorRT is available here")
def test_build_engines_without_tensorrt_says_why(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="tensorrt backend cannot run here: .+"):
        build_engines(exported.folder, tmp_path / "cache")
    with pytest.raises(RuntimeError, match="cannot run here"):
        TrtPolicy(exported.folder, tmp_path / "cache")


class _StandInTrt(types.ModuleType):
    """A recording stand-in for the few `tensorrt` calls `build_engines` makes: it checks the cache, profile
    and flag logic on a machine without TensorRT; the real API is exercised by the tests below, on a GPU."""

    def __init__(self, parse_errors: tuple[str, ...] = ()) -> None:
        super().__init__("tensorrt")
        self.__version__ = "10.3.0"
        self.builds: list[dict] = []
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda _self, severity: None})
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", TF32="TF32")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        trt = self

        class Network:
            def __init__(self) -> None:
                self.inputs: list[str] = []
                self.outputs: list[str] = []

            num_inputs = property(lambda self: len(self.inputs))
            num_outputs = property(lambda self: len(self.outputs))

            def get_input(self, i):
                return types.SimpleNamespace(name=self.inputs[i])

            def get_output(self, i):
                return types.SimpleNamespace(name=self.outputs[i])

        class OnnxParser:
            def __init__(self, network, logger) -> None:
                self.network, self.num_errors = network, 0

            def parse_from_file(self, path: str) -> bool:
                import onnx

                graph = onnx.load(path).graph
                self.network.inputs = [i.name for i in graph.input]
                self.network.outputs = [o.name for o in graph.output]
                self.num_errors = len(parse_errors)
                return not parse_errors

            def get_error(self, i):
                return types.SimpleNamespace(desc=lambda: parse_errors[i])

        class Config:
            def __init__(self) -> None:
                self.record = {"flags": set(), "cleared": set(), "profiles": [], "workspace": None}

            def set_memory_pool_limit(self, pool, size) -> None:
                self.record["workspace"] = size

            def set_flag(self, flag) -> None:
                self.record["flags"].add(flag)

            def clear_flag(self, flag) -> None:
                self.record["cleared"].add(flag)

            def add_optimization_profile(self, profile) -> None:
                self.record["profiles"].append(profile.shapes)

            def create_timing_cache(self, data: bytes):
                self.timing = types.SimpleNamespace(serialize=lambda: bytes(data) + b"+")
                return self.timing

            def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
                return True

            def get_timing_cache(self):
                return self.timing

        class Builder:
            def __init__(self, logger) -> None:
                pass

            def create_network(self, flags: int):
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                shapes: dict = {}
                return types.SimpleNamespace(shapes=shapes, set_shape=lambda n, lo, opt, hi: shapes.update(
                    {n: (tuple(lo), tuple(opt), tuple(hi))}))

            def build_serialized_network(self, network, config):
                trt.builds.append({"inputs": network.inputs, **config.record})
                return b"engine %d" % len(trt.builds)

        self.Builder, self.OnnxParser = Builder, OnnxParser


@pytest.fixture
def stand_in_trt(monkeypatch) -> _StandInTrt:
    import vla_runtime.backends.tensorrt as backend

    trt = _StandInTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(backend, "_LOGGER", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="Stand-in GPU", major=9, minor=0))
    return trt


def test_build_engines_caches_by_key_with_profiles_flags_and_a_timing_cache(stand_in_trt: _StandInTrt,
                                                                           exported: Exported,
                                                                           tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_engines(exported.folder, cache, fp16=True, max_batch=8, workspace_gb=0.5)
    assert sorted(first) == ["denoiser", "encoder", "sampler", "value"] and len(stand_in_trt.builds) == 4
    sampler = next(b for b in stand_in_trt.builds if b["inputs"] == ["cond", "noise"])
    assert sampler["profiles"] == [{"noise": ((1, H, A), (8, H, A), (8, H, A))}]
    assert sampler["flags"] == {"FP16"} and sampler["workspace"] == 1 << 29
    key = engine_key(engine_specs(exported.folder)["sampler"].sha256, "Stand-in GPU", (9, 0), "10.3.0", True, 8)
    assert first["sampler"] == cache / f"sampler-{key}.engine"
    assert first["sampler"].read_bytes().startswith(b"engine")
    assert (cache / f"sampler-{key}.json").is_file()
    assert (cache / "timing-stand-in-gpu-sm90-trt10.3.0.cache").read_bytes() == b"++++"  # grown by each build
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items()}

    assert build_engines(exported.folder, cache, fp16=True, max_batch=8) == first
    assert len(stand_in_trt.builds) == 4  # every engine came from the cache
    assert {name: path.stat().st_mtime_ns for name, path in first.items()} == stamps

    fp32 = build_engines(exported.folder, cache, fp16=False, max_batch=8, graphs=("sampler",))
    assert fp32["sampler"] != first["sampler"] and len(stand_in_trt.builds) == 5
    assert stand_in_trt.builds[-1]["flags"] == set() and stand_in_trt.builds[-1]["cleared"] == {"TF32"}
    assert not list(cache.glob(".*"))  # no temp files left behind


def test_build_engines_reports_the_parser_errors(stand_in_trt: _StandInTrt, exported: Exported,
                                                 tmp_path: Path, monkeypatch) -> None:
    failing = _StandInTrt(parse_errors=("node Foo: unsupported op", "second problem"))
    monkeypatch.setitem(sys.modules, "tensorrt", failing)
    with pytest.raises(ValueError, match="could not parse .*encoder.onnx: node Foo: unsupported op; second problem"):
        build_engines(exported.folder, tmp_path / "cache", graphs=("encoder",))
    assert not list((tmp_path / "cache").glob("*.engine"))


# --------------------------------------------------------------------------- TensorRT + CUDA


@needs_trt
def test_engines_are_reused_from_the_cache_and_rebuilt_when_the_key_changes(exported: Exported,
                                                                           tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_engines(exported.folder, cache, fp16=False, max_batch=8)
    assert sorted(first) == ["denoiser", "encoder", "sampler", "value"]
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items()}
    assert list(cache.glob("timing-*.cache"))
    second = build_engines(exported.folder, cache, fp16=False, max_batch=8)
    assert second == first
    assert {name: path.stat().st_mtime_ns for name, path in second.items()} == stamps  # not rebuilt
    other = build_engines(exported.folder, cache, fp16=False, max_batch=4, graphs=("sampler",))
    assert other["sampler"] != first["sampler"] and other["sampler"].is_file()
    assert first["sampler"].stat().st_mtime_ns == stamps["sampler"]  # the old engine stays valid for its key
    assert not list(cache.glob(".*"))  # no temp files left behind


@needs_trt
@pytest.mark.parametrize(("fp16", "atol"), [(False, FP32_ATOL), (True, FP16_ATOL)])
def test_trt_policy_matches_the_torch_policy_for_the_same_noise(exported: Exported, tmp_path: Path, fp16: bool,
                                                                atol: float) -> None:
    trt_policy = TrtPolicy(exported.folder, tmp_path / "cache", fp16=fp16, max_batch=32)
    assert trt_policy.config == exported.policy.config
    obs = _obs()
    ctx_trt, ctx_torch = trt_policy.encode(obs), exported.policy.encode(obs)
    np.testing.assert_allclose(ctx_trt.cond.numpy(), ctx_torch.cond.numpy(), atol=atol)
    for n in (1, 3, OPT_BATCH, 32):
        noise = torch.randn((n, H, A), generator=torch.Generator().manual_seed(n))
        got = trt_policy.sample(ctx_trt, n, noise=noise)
        want = exported.policy.sample(ctx_torch, n, noise=noise)
        assert got.shape == (n, H, A) and got.dtype == np.float32
        assert np.abs(got - want).max() <= atol, f"n={n} fp16={fp16}: max-abs {np.abs(got - want).max()}"
    same = trt_policy.sample(ctx_trt, 4, generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(same, trt_policy.sample(ctx_trt, 4, generator=torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="outside the engine's profile"):
        trt_policy.sample(ctx_trt, 33)


@needs_trt
def test_denoiser_engine_takes_int64_timesteps_and_matches_the_torch_head(exported: Exported,
                                                                          tmp_path: Path) -> None:
    graph = TrtGraph(build_engines(exported.folder, tmp_path / "cache", fp16=False, graphs=("denoiser",))["denoiser"])
    assert graph.dtypes["t"] == torch.int64
    gen = torch.Generator().manual_seed(0)
    x, cond = torch.randn((5, H, A), generator=gen), torch.randn((5, TINY.d_model), generator=gen)
    t = torch.tensor([19, 15, 10, 5, 0], dtype=torch.int64)
    with torch.no_grad():
        want = exported.policy.head(x, t, cond).numpy()
    got = graph(x=x.numpy(), t=t.numpy(), cond=cond.cuda())["eps"]  # numpy and CUDA tensor inputs alike
    np.testing.assert_allclose(got, want, atol=FP32_ATOL)
    with pytest.raises(ValueError, match="missing \\['cond'\\]"):
        graph(x=x.numpy(), t=t.numpy())


@needs_trt
def test_trt_scorer_matches_the_torch_value_function(exported: Exported, tmp_path: Path) -> None:
    scorer = TrtScorer(exported.folder, "value", tmp_path / "cache", fp16=False)
    assert scorer.name == "value"
    ctx = exported.policy.encode(_obs())
    candidates = exported.policy.sample(ctx, 10, generator=torch.Generator().manual_seed(1))
    got, want = scorer.score(ctx, candidates), exported.value.score(ctx, candidates)
    assert got.shape == (10,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=FP32_ATOL)
