"""Inference backends behind one `Policy` contract: `torch` (eager), `onnx` (onnxruntime: TensorRT -> CUDA ->
CPU providers), `tensorrt` (engines built from the ONNX graphs). The exported graphs come from
`vla export onnx` (`vla_runtime.export`); `verifiers.steering.steered_pipeline` picks a backend for the
policy and its scorers together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

BACKENDS = ("torch", "onnx", "tensorrt")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {list(BACKENDS)}")
    return name


def load_policy(backend: str, policy_dir: str | Path | None = None, export_dir: str | Path | None = None,
                threads: int | None = None, trt_cache: str | Path = "runs/tensorrt"):
    """torch: the checkpoint `policy_dir`; onnx / tensorrt: the export folder `export_dir`."""
    check_backend(backend)
    if backend == "torch":
        from vla_runtime.policy.model import VLAPolicy

        if policy_dir is None:
            raise ValueError("the torch backend needs the policy checkpoint folder")
        return VLAPolicy.from_pretrained(policy_dir)
    if export_dir is None:
        raise ValueError(f"the {backend} backend needs an export folder (`vla export onnx`)")
    if backend == "onnx":
        from vla_runtime.backends.onnx import OnnxPolicy

        return OnnxPolicy(export_dir, threads=threads)
    from vla_runtime.backends.tensorrt import TrtPolicy

    _require_tensorrt()
    return TrtPolicy(export_dir, trt_cache)


def _require_tensorrt() -> None:
    from vla_runtime.backends.tensorrt import trt_available

    ok, why = trt_available()
    if not ok:
        raise ValueError(f"the tensorrt backend cannot run here: {why} (use --backend onnx or torch)")


def load_exported_scorer(backend: str, export_dir: str | Path, name: str, threads: int | None = None,
                         trt_cache: str | Path = "runs/tensorrt"):
    check_backend(backend)
    if backend == "onnx":
        from vla_runtime.backends.onnx import OnnxScorer

        return OnnxScorer(export_dir, name, threads=threads)
    if backend == "tensorrt":
        from vla_runtime.backends.tensorrt import TrtScorer

        _require_tensorrt()
        return TrtScorer(export_dir, name, trt_cache)
    raise ValueError("torch scorers load from their checkpoints (verifiers.steering.load_scorer)")


def cached_export(checkpoints: dict[str, str | Path], make: Callable[[Path], object],
                  root: str | Path = "runs/onnx") -> Path:
    """The export folder for these checkpoints (name -> folder), made by `make(out)` once and reused (`make`
    must not replace a folder another process finished first: `export_onnx(..., replace=False)`). The key
    is the bytes of every checkpoint's config, weights and normalisation (plus the export format and torch
    version), so a retrained model never meets a stale graph."""
    import torch

    from vla_runtime.export import VERSION

    h = hashlib.sha256(f"v{VERSION} torch {torch.__version__}".encode())
    for name, folder in sorted(checkpoints.items()):
        h.update(name.encode())
        for f in ("config.json", "model.safetensors", "normalization.json"):
            path = Path(folder) / f
            if not path.is_file():
                raise FileNotFoundError(f"{name} checkpoint {folder} is missing {f}")
            h.update(path.read_bytes())
    out = Path(root) / h.hexdigest()[:16]
    if not (out / "export.json").is_file():
        make(out)
    return out


def load_policy_on(backend: str, policy_dir: str | Path, threads: int | None = None):
    """A policy checkpoint on `backend`; onnx / tensorrt export it on first use (`cached_export`)."""
    if check_backend(backend) == "torch":
        return load_policy("torch", policy_dir)
    from vla_runtime.export import export_onnx

    export_dir = cached_export({"policy": policy_dir}, lambda out: export_onnx(policy_dir, out, replace=False))
    return load_policy(backend, export_dir=export_dir, threads=threads)
