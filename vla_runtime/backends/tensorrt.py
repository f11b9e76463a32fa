"""The `Policy` and `Scorer` contracts on TensorRT engines built from the exported ONNX graphs.

`build_engines` turns each graph of an export folder (`vla export onnx`) into a serialized engine with one
optimization profile over its dynamic axes (batch 1 .. `max_batch`, tuned for 16) and caches it under a key
of everything that makes an engine valid: the ONNX file's sha256, the GPU and its compute capability, the
TensorRT version, fp16 and `max_batch`. `TrtGraph` runs one engine with torch CUDA tensors as its buffers,
and `TrtPolicy` / `TrtScorer` are the onnx backend's `OnnxPolicy` / `OnnxScorer` with those engines as their
graph runners, so pre- and post-processing (and the noise drawn from the caller's generator) are shared.

Written for the TensorRT 10 Python API (`tensorrt` package) on a CUDA device; `trt_available()` says why
not when either is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vla_runtime.export import read_manifest, sampler_graphs
from vla_runtime.policy.model import read_policy_files

OPT_BATCH = 16  # the batch the profile is tuned for (N samples / M candidates in a typical decision)
TIMING_CACHE = "timing-{device}.cache"


def trt_available() -> tuple[bool, str]:
    """(True, "") when TensorRT can build and run engines here, else (False, why not)."""
    try:
        import tensorrt
    except ImportError as e:
        return False, f"tensorrt not installed ({e})"
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < 10:
        return False, f"TensorRT {tensorrt.__version__} is too old; this backend uses the TensorRT 10 API"
    return True, ""


def _trt():
    ok, reason = trt_available()
    if not ok:
        raise RuntimeError(f"the tensorrt backend cannot run here: {reason}")
    import tensorrt

    return tensorrt


_LOGGER = None


def _logger():
    """One logger per process: TensorRT's builder and runtime share it."""
    global _LOGGER
    if _LOGGER is None:
        trt = _trt()
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def engine_key(onnx_sha256: str, gpu_name: str, capability: tuple[int, int], trt_version: str, fp16: bool,
               max_batch: int) -> str:
    """20 hex digits naming an engine: a change in any ingredient names another engine (a rebuild)."""
    ingredients = {"onnx_sha256": onnx_sha256, "gpu": gpu_name, "capability": list(capability),
                   "tensorrt": trt_version, "fp16": bool(fp16), "max_batch": int(max_batch)}
    return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode()).hexdigest()[:20]


def profile_shapes(shape: list, max_batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A manifest shape (ints, with a str naming each dynamic axis) -> the profile's (min, opt, max) shapes:
    dynamic axes span 1 .. max_batch (opt min(OPT_BATCH, max_batch)), fixed axes stay."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    opt = min(OPT_BATCH, max_batch)
    pick = [(1, opt, max_batch) if isinstance(d, str) else (int(d),) * 3 for d in shape]
    return tuple(p[0] for p in pick), tuple(p[1] for p in pick), tuple(p[2] for p in pick)


@dataclass(frozen=True)
class EngineSpec:
    """One engine to build: the graph `name`, its `onnx` file and sha256, and the profile per dynamic
    input (name -> (min, opt, max) shapes); `inputs` / `outputs` are the manifest's names."""

    name: str
    onnx: Path
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    @property
    def dynamic(self) -> bool:
        return bool(self.profiles)


def engine_specs(export_dir: str | Path, max_batch: int = 64, graphs: list[str] | tuple[str, ...] | None = None,
                 ) -> dict[str, EngineSpec]:
    """The export folder's graphs (all, or the names in `graphs`) as EngineSpecs; each ONNX file is checked
    against the manifest's sha256, so a changed or corrupt file fails with its path instead of being built."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    available = manifest["graphs"]
    names = list(available) if graphs is None else list(graphs)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"{export_dir} holds no graph(s) {missing}; it has {sorted(available)}")
    specs = {}
    for name in names:
        entry = available[name]
        path = export_dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"ONNX graph {path} is missing; re-run `vla export onnx`")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ValueError(f"{path} has sha256 {digest}, export.json says {entry['sha256']}; re-run "
                             "`vla export onnx`")
        profiles = {k: profile_shapes(shape, max_batch) for k, shape in entry["inputs"].items()
                    if any(isinstance(d, str) for d in shape)}
        specs[name] = EngineSpec(name=name, onnx=path, sha256=digest, inputs=tuple(entry["inputs"]),
                                 outputs=tuple(entry["outputs"]), profiles=profiles)
    return specs


def device_identity(device: int | None = None) -> tuple[str, tuple[int, int]]:
    """(GPU name, (major, minor) compute capability) of the CUDA device engines are built for."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device() if device is None else device)
    return props.name, (props.major, props.minor)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Temp file in the same folder + os.replace: readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_engines(export_dir: str | Path, cache_dir: str | Path, fp16: bool = True, max_batch: int = 64,
                  workspace_gb: float = 2.0, graphs: list[str] | tuple[str, ...] | None = None) -> dict[str, Path]:
    """One serialized engine per ONNX graph of `export_dir` (all, or those named in `graphs`), cached in
    `cache_dir` as `<graph>-<engine_key>.engine`: a cached engine is reused, a changed key builds a new one.
    The builders share a timing cache per GPU and TensorRT version (`timing-<gpu>.cache`)."""
    trt = _trt()
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be > 0, got {workspace_gb}")
    specs = engine_specs(export_dir, max_batch, graphs)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    gpu, capability = device_identity()
    device_tag = f"{_slug(gpu)}-sm{capability[0]}{capability[1]}-trt{trt.__version__}"
    timing = cache / TIMING_CACHE.format(device=device_tag)
    engines = {}
    for name, spec in specs.items():
        key = engine_key(spec.sha256, gpu, capability, trt.__version__, fp16, max_batch)
        path = cache / f"{name}-{key}.engine"
        if not path.is_file():
            blob = _build_engine(trt, spec, fp16, workspace_gb, timing)
            _write_atomic(path.with_suffix(".json"), (json.dumps(
                {"graph": name, "onnx": str(spec.onnx), "onnx_sha256": spec.sha256, "gpu": gpu,
                 "capability": list(capability), "tensorrt": trt.__version__, "fp16": fp16,
                 "max_batch": max_batch, "profiles": {k: list(v) for k, v in spec.profiles.items()}},
                indent=2) + "\n").encode())
            _write_atomic(path, blob)
        engines[name] = path
    return engines


def _build_engine(trt, spec: EngineSpec, fp16: bool, workspace_gb: float, timing: Path) -> memoryview:
    """Parse spec.onnx, add its profile, build; -> the serialized engine. Updates the timing cache file."""
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch; weakly typed so FP16 applies
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ValueError(f"TensorRT could not parse {spec.onnx}: " + "; ".join(errors or ["(no parser message)"]))
    got_in = [network.get_input(i).name for i in range(network.num_inputs)]
    got_out = [network.get_output(i).name for i in range(network.num_outputs)]
    if sorted(got_in) != sorted(spec.inputs) or sorted(got_out) != sorted(spec.outputs):
        raise ValueError(f"{spec.onnx}: the graph has inputs {got_in} / outputs {got_out}, export.json says "
                         f"{list(spec.inputs)} / {list(spec.outputs)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (weak typing was removed in "
                               "TensorRT 11); build with fp16=False")
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 engines hold the torch parity tolerance: no TF32 matmuls
    if spec.dynamic:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in spec.profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)

    timing_cache = config.create_timing_cache(timing.read_bytes() if timing.is_file() else b"")
    if not config.set_timing_cache(timing_cache, False):  # a stale or foreign file: start afresh
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)

    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {spec.onnx} (fp16={fp16}, profiles "
                           f"{spec.profiles}); its log above says why")
    _write_atomic(timing, memoryview(config.get_timing_cache().serialize()))
    return memoryview(blob)


def _torch_dtypes(trt) -> dict:
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
             "int64": torch.int64, "int32": torch.int32, "int8": torch.int8, "uint8": torch.uint8,
             "bool": torch.bool}
    return {getattr(trt, k): v for k, v in table.items() if hasattr(trt, k)}


class TrtGraph:
    """One deserialized engine and its execution context: `graph(**inputs) -> {output name: np.ndarray}`.

    Inputs may be numpy arrays or torch tensors (CPU or CUDA); they are staged as contiguous CUDA tensors of
    the engine's dtypes. Output buffers are kept per output and grown only when a call needs more room.
    Calls are serialised (one context)."""

    def __init__(self, engine_path: str | Path, device: int | None = None) -> None:
        trt = _trt()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TensorRT engine {self.path} is missing; build it with build_engines")
        self.device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(_logger())
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ValueError(f"{self.path} is not a TensorRT engine for this GPU and TensorRT "
                                 f"{trt.__version__}; delete it to rebuild")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        to_torch = _torch_dtypes(trt)
        self.dtypes: dict[str, torch.dtype] = {}
        for n in names:
            dtype = self.engine.get_tensor_dtype(n)
            if dtype not in to_torch:
                raise ValueError(f"{self.path}: tensor {n!r} has dtype {dtype}, which this backend cannot hold")
            self.dtypes[n] = to_torch[dtype]
        self._buffers: dict[str, torch.Tensor] = {}  # output name -> flat buffer (capacity in elements)
        self._lock = threading.Lock()

    def _profile(self, name: str) -> str:
        shape = tuple(self.engine.get_tensor_shape(name))
        if -1 not in shape:  # a static input: no profile
            return str(shape)
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        return f"{tuple(lo)} .. {tuple(hi)}"

    def __call__(self, **inputs: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        missing = sorted(set(self.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(self.inputs))
        if missing or extra:
            raise ValueError(f"{self.path.name}: inputs {sorted(self.inputs)} expected; missing {missing}, "
                             f"unknown {extra}")
        caller = torch.cuda.current_stream(self.device)
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self.stream.wait_stream(caller)  # CUDA inputs the caller made on its stream are ready first
            staged = {}
            for name in self.inputs:
                value = inputs[name]
                t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
                t = t.to(device=self.device, dtype=self.dtypes[name]).contiguous()
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(f"{self.path.name}: input {name!r} of shape {tuple(t.shape)} is outside the "
                                     f"engine's profile {self._profile(name)}")
                staged[name] = t
            for name, t in staged.items():
                self.context.set_tensor_address(name, t.data_ptr())
            outs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"{self.path.name}: output {name!r} shape {shape} is unresolved for input "
                                       f"shapes { {k: tuple(v.shape) for k, v in staged.items()} }")
                size = int(np.prod(shape))
                buf = self._buffers.get(name)
                if buf is None or buf.numel() < max(size, 1):
                    buf = torch.empty(max(size, 1), dtype=self.dtypes[name], device=self.device)
                    self._buffers[name] = buf
                self.context.set_tensor_address(name, buf.data_ptr())
                outs[name] = buf[:size].view(shape)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.path.name}: TensorRT execution failed; its log above says why")
            host = {name: out.to("cpu", non_blocking=False) for name, out in outs.items()}
            self.stream.synchronize()
        return {name: t.numpy() for name, t in host.items()}


class TrtPolicy:
    """The `Policy` contract on TensorRT: `OnnxPolicy` with engines as its encoder and sampler; n may not
    exceed max_batch."""

    def __init__(self, export_dir: str | Path, cache_dir: str | Path, fp16: bool = True, max_batch: int = 64,
                 workspace_gb: float = 2.0) -> None:
        from vla_runtime.backends.onnx import OnnxPolicy

        samplers = sampler_graphs(read_manifest(export_dir), read_policy_files(Path(export_dir))[0].inference_steps)
        self.engines = build_engines(export_dir, cache_dir, fp16=fp16, max_batch=max_batch,
                                     workspace_gb=workspace_gb, graphs=("encoder", *samplers.values()))
        self.runners = {name: TrtGraph(path) for name, path in self.engines.items()}
        self.inner = OnnxPolicy(export_dir, runners=self.runners)
        self.config = self.inner.config
        self.normalizer = self.inner.normalizer
        self.fingerprint = self.inner.fingerprint

    @property
    def action_spec(self):
        return self.config.action_spec

    def reset(self) -> None:
        self.inner.reset()

    def encode(self, obs, anchor: np.ndarray | None = None):
        return self.inner.encode(obs, anchor=anchor)

    def sample(self, ctx, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray:
        return self.inner.sample(ctx, n, generator=generator, noise=noise, steps=steps)


class TrtScorer:
    """`OnnxScorer` with a TensorRT engine as its head: `.name`, `score(ctx, candidates (m, H, A)) -> (m,)`
    float64; m may not exceed max_batch."""

    def __init__(self, export_dir: str | Path, name: str, cache_dir: str | Path, fp16: bool = True,
                 max_batch: int = 64, workspace_gb: float = 2.0) -> None:
        from vla_runtime.backends.onnx import OnnxScorer

        self.engines = build_engines(export_dir, cache_dir, fp16=fp16, max_batch=max_batch,
                                     workspace_gb=workspace_gb, graphs=(name,))
        self.runner = TrtGraph(self.engines[name])
        self.inner = OnnxScorer(export_dir, name, runner=self.runner)
        self.name = self.inner.name

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        return self.inner.score(ctx, candidates)
