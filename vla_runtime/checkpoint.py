"""Reading checkpoint folders (config JSON + safetensors): every failure names the file and the problem.

Shared by the policy and the steering models, so a missing, truncated or mismatched file reads the
same way whichever model it belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn


def require_files(folder: Path, names: tuple[str, ...], what: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} checkpoint folder {folder} does not exist")
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{what} checkpoint {folder} is missing {name}")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


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
