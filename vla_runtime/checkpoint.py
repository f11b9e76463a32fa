"""Reading checkpoint folders (config JSON + safetensors): every failure names the file and the problem.

Shared by the policy and the steering models, so a missing, truncated or mismatched file reads the
same way whichever model it belongs to.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vla_runtime.io import atomic_write_text, check_output_dir, manifest_is, staged_dir

T = TypeVar("T")


def require_files(folder: Path, names: tuple[str, ...], what: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} checkpoint folder {folder} does not exist")
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{what} checkpoint {folder} is missing {name}")


def read_json(path: Path) -> dict:
    """A checkpoint's JSON file, which must hold one object (`null`, a list or a number is refused)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {json.dumps(data)[:60]}")
    return data


def parse_json_file(path: Path, parse: Callable[[dict], T]) -> T:
    """`parse(read_json(path))`, with any complaint of `parse` (a missing key, a value of the wrong kind)
    prefixed by the file it came from."""
    raw = read_json(path)
    try:
        return parse(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_weights(model: nn.Module, path: Path) -> None:
    """Load `path` (safetensors) into `model`, refusing missing, unexpected or reshaped tensors."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable (truncated or corrupt?): {exc}") from exc
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in set(own) & set(state) if state[k].shape != own[k].shape]
    if missing or unexpected or bad_shapes:
        raise ValueError(f"{path} does not match config.json: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {bad_shapes[:5]}")
    model.load_state_dict(state)


def write_checkpoint(out_dir: str | Path, config: dict, normalization: dict | None, tensors: dict,
                     model_card: str = "", overwrite: bool = False) -> Path:
    """config.json + normalization.json (unless None) + model.safetensors (+ README.md) written into a temp
    folder that is renamed into place (`io.replace_dir`): a reader or a crash never sees a half-written
    checkpoint. Only a missing or empty folder, or a checkpoint of the same type, is replaced: saving over
    anything else is refused (`io.check_output_dir`), whoever calls it, unless `overwrite`."""
    out = check_output_dir(out_dir, is_checkpoint_of(config["type"]), f"{config['type']} checkpoint",
                           overwrite=overwrite)
    with staged_dir(out) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if normalization is not None:
            (tmp / "normalization.json").write_text(json.dumps(normalization, indent=2))
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        if model_card:
            (tmp / "README.md").write_text(model_card)
    return out


def read_typed_config(path: Path, config_type: str, config_cls, what: str):
    """`path`/config.json whose "type" must be `config_type` -> config_cls(**the rest)."""
    file = path / "config.json"
    raw = read_json(file)
    if raw.pop("type", None) != config_type:
        raise ValueError(f"{file} is not a {what} config")
    missing = sorted({f.name for f in dataclasses.fields(config_cls)} - set(raw))
    if missing:
        raise ValueError(f"{file} is missing required keys {missing}")
    try:
        return config_cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: {exc}") from exc


def optimizer_tensors(opt, generator) -> dict:
    """The optimizer's moments and step counts plus the generator's state as flat safetensors entries
    (`opt.<param>.<name>`, `rng`), so a training state is one safetensors file, no pickle."""
    import torch

    out = {}
    for i, s in opt.state_dict()["state"].items():
        for k, v in s.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().clone().reshape(-1) if k == "step" else v
    out["rng"] = generator.get_state()
    return out


def restore_optimizer(opt, generator, state: dict) -> None:
    """The inverse of `optimizer_tensors` on a loaded state dict."""
    opt_state = opt.state_dict()
    for key, v in state.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            opt_state["state"].setdefault(int(i), {})[k] = v.reshape(()) if k == "step" else v
    opt.load_state_dict(opt_state)
    generator.set_state(state["rng"])


def is_checkpoint_of(config_type: str):
    """`is_previous` for `io.check_output_dir`: a checkpoint folder whose config.json has this type."""
    return manifest_is("config.json", "type", config_type)


def metrics_log(path: Path, resume_step: int | None) -> Path:
    """The JSON-lines metrics file of a run, ready for appending: emptied for a fresh run; on resume from
    `resume_step`, cut back to the lines up to that step, so steps validated after the last checkpoint
    (and computed again now) are not listed twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    if resume_step is not None and path.is_file():
        for line in path.read_text().splitlines():
            try:
                step = json.loads(line).get("step")
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by a kill
            if isinstance(step, int) and step <= resume_step:
                kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return path


def weights_fingerprint(module: nn.Module) -> str:
    """16 hex digits of sha256 over the module's tensors: names the weights a scorer was trained on and an
    export was made from (steering refuses a scorer trained on another policy's tokens)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
