"""The `Policy` and `Scorer` contracts on exported ONNX graphs (`vla export onnx`), run by onnxruntime.

Pre- and post-processing are the torch policy's own functions (image resize, cached instruction
embedding, noise drawn from the caller's generator), so the same seed gives the same actions as the torch
backend. The graphs are run by *runners*, `runner(**named inputs) -> {name: output}`: onnxruntime sessions
here (`OrtGraph`), TensorRT engines in `vla_runtime.backends.tensorrt`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vla_runtime.export import read_manifest, sampler_graphs
from vla_runtime.policy.model import check_observation, images_to_tensor, language_features, read_policy_files
from vla_runtime.policy.protocol import Context

Runner = Callable[..., dict[str, np.ndarray]]


def providers(trt_cache: str | Path | None = None, fp16: bool = True) -> list:
    """TensorRT -> CUDA -> CPU, as far as this onnxruntime build has them. TensorRT keeps its engines and
    timing cache under `trt_cache` (built once per GPU and graph, reused after)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen: list = []
    if "TensorrtExecutionProvider" in available:
        options = {"trt_fp16_enable": fp16, "trt_max_workspace_size": 2 << 30}
        if trt_cache is not None:
            Path(trt_cache).mkdir(parents=True, exist_ok=True)
            options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache),
                        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(trt_cache)}
        chosen.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}))
    chosen.append("CPUExecutionProvider")
    return chosen


class OrtGraph:
    """One onnxruntime session with preallocated outputs per input shape (IO binding: the hot path never
    allocates an output array). Threads: intra-op `threads` (default: the cores this process may use, at
    most 2), one inter-op thread (the graphs are sequential). Only the sampler gets a pool: the encoder and
    the scorer heads are tiny and run on the calling thread, because a decision runs the sessions back to
    back and idle pools spin on the cores the next session needs (turning spinning off everywhere instead
    slowed the sampler). TensorRT's engines (where that provider exists) are cached beside the graph."""

    def __init__(self, path: str | Path, threads: int | None = None, trt_cache: str | Path | None = None,
                 fp16: bool = True) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX graph {path} is missing; re-run `vla export onnx`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(2, len(os.sched_getaffinity(0)))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        trt_cache = trt_cache or path.parent / "ort_tensorrt_cache"
        self.session = ort.InferenceSession(str(path), options, providers=providers(trt_cache, fp16))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._bindings: dict[tuple, tuple] = {}  # input shapes -> (IOBinding, output arrays)
        self.cpu = self.session.get_providers()[0] == "CPUExecutionProvider"

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise ValueError(f"graph inputs {missing} not given (have {sorted(feeds)})")
        arrays = {k: np.ascontiguousarray(feeds[k]) for k in self.inputs}
        if not self.cpu:  # device providers manage their own buffers
            return dict(zip(self.outputs, self.session.run(self.outputs, arrays)))
        key = tuple((k, a.shape, a.dtype.str) for k, a in arrays.items())
        if key not in self._bindings:
            out = dict(zip(self.outputs, self.session.run(self.outputs, arrays)))  # learns the output shapes
            binding = self.session.io_binding()
            for name, value in out.items():
                binding.bind_output(name, "cpu", 0, value.dtype, value.shape, value.ctypes.data)
            self._bindings[key] = (binding, out)
            return {k: v.copy() for k, v in out.items()}
        binding, out = self._bindings[key]
        for name, value in arrays.items():
            binding.bind_cpu_input(name, value)
        self.session.run_with_iobinding(binding)
        return {k: v.copy() for k, v in out.items()}


class SplitBatchGraph:
    """A graph whose rows are independent (the sampler: each noise chunk denoises on its own), run as
    `workers` single-thread sessions on contiguous slices of the batch at once; onnxruntime releases the GIL,
    so the slices run on separate cores. On the 2-core CPU this beats one 2-thread session, whose per-op
    threading barely pays on these small matrices (`vla bench`: 228 GFLOP/s at n = 16), with the same bits.
    Batches smaller than `workers` go to one `workers`-thread session."""

    def __init__(self, path: str | Path, split_input: str, workers: int | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.workers = workers or min(2, len(os.sched_getaffinity(0)))
        self.split_input = split_input
        self.whole = OrtGraph(path, self.workers)
        self.replicas = [OrtGraph(path, 1) for _ in range(self.workers)] if self.workers > 1 else []
        self.pool = ThreadPoolExecutor(self.workers) if self.replicas else None

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        n = len(feeds[self.split_input])
        if not self.replicas or n < self.workers:
            return self.whole(**feeds)
        bounds = np.linspace(0, n, self.workers + 1).astype(int)
        futures = [self.pool.submit(replica, **{**feeds, self.split_input: feeds[self.split_input][a:b]})
                   for replica, a, b in zip(self.replicas, bounds[:-1], bounds[1:])]
        parts = [f.result() for f in futures]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class OnnxPolicy:
    """The `Policy` contract on onnxruntime: the export's encoder graph and its unrolled sampler graphs (one
    per exported step count, each opened on first use)."""

    def __init__(self, export_dir: str | Path, runners: dict[str, Runner] | None = None,
                 threads: int | None = None) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.config, self.normalizer = read_policy_files(self.export_dir)
        self.fingerprint = self.manifest["policy"]["fingerprint"]
        self.anchored = bool(self.manifest["anchor"])
        self.samplers = sampler_graphs(self.manifest, self.config.inference_steps)  # steps -> graph name
        self.threads = threads
        self.runners = runners or {"encoder": OrtGraph(self.export_dir / "encoder.onnx", 1)}

    @property
    def action_spec(self):
        return self.config.action_spec

    def reset(self) -> None:
        """The `Policy` contract's episode boundary: the graphs keep no state between decisions."""

    def encode(self, obs, anchor: np.ndarray | None = None) -> Context:
        cfg = self.config
        check_observation(cfg, obs)
        feeds = {"images": images_to_tensor(obs.images[cfg.camera][None], cfg.image_size).numpy(),
                 "lang": language_features(cfg, [obs.instruction]).numpy(),
                 "proprio": obs.proprio[None].astype(np.float32)}
        if cfg.wrist_camera:
            feeds["wrist"] = images_to_tensor(obs.images[cfg.wrist_camera][None], cfg.wrist_image_size).numpy()
        if not self.anchored:
            if anchor is not None:
                raise ValueError("this policy was not trained with an anchor (config.anchor is false)")
            return Context(cond=torch.from_numpy(self.runners["encoder"](**feeds)["cond"]), observation=obs)
        given = anchor is not None
        a = np.zeros((1, 4), np.float32) if not given else np.asarray(anchor, np.float32).reshape(1, -1)
        if a.shape != (1, 4) or not np.all(np.isfinite(a)):
            raise ValueError(f"anchor must be finite with shape (1, 4), got {a.shape}")
        out = self.runners["encoder"](**feeds, anchor=a, anchor_given=np.full((1, 1), float(given), np.float32))
        return Context(cond=torch.from_numpy(out["cond"]), observation=obs, anchor=out["anchor_used"][0].copy())

    def sample(self, ctx: Context, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        runner = self.sampler(steps)
        shape = (n, self.config.horizon, self.config.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32)  # as the torch backend draws it
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        cond = ctx.cond.detach().numpy().astype(np.float32)
        return runner(cond=cond, noise=noise.numpy())["actions"]

    def sampler(self, steps: int | None = None) -> Runner:
        """The sampler graph unrolled for `steps` DDIM steps (None: the policy's own)."""
        steps = self.config.inference_steps if steps is None else steps
        if steps not in self.samplers:
            raise ValueError(f"{self.export_dir} has sampler graphs for {sorted(self.samplers)} DDIM steps, not "
                             f"{steps}; export with `vla export onnx --sample-steps {steps}`")
        name = self.samplers[steps]
        if name not in self.runners:
            self.runners[name] = SplitBatchGraph(self.export_dir / self.manifest["graphs"][name]["file"], "noise",
                                                 self.threads)
        return self.runners[name]


class OnnxScorer:
    """A token scorer's exported head (`verifier.onnx` / `value.onnx`): `score(ctx, candidates) -> (m,)`."""

    def __init__(self, export_dir: str | Path, name: str, runner: Runner | None = None,
                 threads: int | None = None) -> None:
        manifest = read_manifest(export_dir)
        if name not in manifest["graphs"]:
            raise ValueError(f"{export_dir} holds no {name} graph; export with --{name}")
        self.name = name
        spec = manifest["action_spec"]
        self.horizon, self.action_dim = spec["chunk_length"], len(spec["names"])
        self.runner = runner or OrtGraph(Path(export_dir) / f"{name}.onnx", threads or 1)

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        c = np.asarray(candidates, dtype=np.float32)
        if c.ndim != 3 or c.shape[0] < 1 or c.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"candidates must be (m >= 1, {self.horizon}, {self.action_dim}), got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("candidates contain NaN or inf")
        cond = ctx.cond.detach().numpy().astype(np.float32)
        return self.runner(cond=cond, chunks=np.ascontiguousarray(c, np.float32))["scores"].astype(np.float64)
