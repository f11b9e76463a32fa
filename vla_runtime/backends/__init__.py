"""Inference backends behind one `Policy` contract: `torch` (eager), `onnx` (onnxruntime: TensorRT -> CUDA ->
CPU providers), `tensorrt` (engines built from the ONNX graphs), `remote` (a policy served over the openpi
websocket protocol by `vla serve`; the path is its ws:// URL). The exported graphs come from
`vla export onnx` (`vla_runtime.export`); `verifiers.steering.steered_pipeline` picks a backend for the
policy and its scorers together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

BACKENDS = ("torch", "onnx", "tensorrt", "remote")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {list(BACKENDS)}")
    return name


def load_policy(path: str | Path, backend: str = "torch", threads: int | None = None,
                trt_cache: str | Path = "runs/tensorrt"):
    """The one way to get a `Policy`: `path` is a checkpoint folder (`vla train policy`), an export folder
    (`vla export onnx`) or, for `remote`, the server's ws:// URL. onnx / tensorrt export a checkpoint on first
    use (`cached_export`); torch needs the checkpoint itself."""
    check_backend(backend)
    if backend == "remote":
        from vla_runtime.backends.remote import RemotePolicy

        return RemotePolicy(str(path))
    path = Path(path)
    is_export = (path / "export.json").is_file()
    if backend == "torch":
        if is_export:
            raise ValueError(f"{path} is an ONNX export; the torch backend loads the checkpoint it came from "
                             f"(its export.json names it)")
        from vla_runtime.policy.model import VLAPolicy

        return VLAPolicy.from_pretrained(path)
    if not is_export:
        from vla_runtime.export import export_onnx

        checkpoint = path
        path = cached_export({"policy": checkpoint}, lambda out: export_onnx(checkpoint, out, replace=False))
    if backend == "onnx":
        from vla_runtime.backends.onnx import OnnxPolicy

        return OnnxPolicy(path, threads=threads)
    from vla_runtime.backends.tensorrt import TrtPolicy

    _require_tensorrt()
    return TrtPolicy(path, trt_cache)


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
                  root: str | Path = "runs/onnx", variant: str = "") -> Path:
    """The export folder for these checkpoints (name -> folder), made by `make(out)` once and reused (`make`
    must not replace a folder another process finished first: `export_onnx(..., replace=False)`). The key
    is the bytes of every checkpoint's config, weights and normalisation (plus the export format, the torch
    version and `variant`: what `make` exports beyond the default), so a retrained model never meets a
    stale graph."""
    import torch

    from vla_runtime.export import VERSION

    h = hashlib.sha256(f"v{VERSION} torch {torch.__version__} {variant}".encode())
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
