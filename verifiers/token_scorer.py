"""What the scorers that read the frozen policy's token (`ActionVerifier`, `ValueFunction`) share: the
`Scorer` contract's input checks and batching, and their checkpoint folder (config + normalisation +
weights). Functions, not a base class: each model keeps its own `nn.Module` and config.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from verifiers.proposals import check_chunks
from vla_runtime.checkpoint import load_weights, parse_json_file, read_typed_config, require_files, write_checkpoint
from vla_runtime.policy.normalize import Normalizer

FILES = ("config.json", "model.safetensors", "normalization.json")


@torch.inference_mode()
def score_on_token(model, ctx, candidates: np.ndarray) -> np.ndarray:
    """`model(cond (B, d), chunks (B, H, A)) -> (B,)` on the decision's token `ctx.cond` (1, d) repeated for
    every candidate (m, H, A) -> (m,) float64 scores."""
    cfg = model.config
    c = check_chunks(candidates, cfg.horizon, cfg.action_dim)
    if tuple(ctx.cond.shape) != (1, cfg.cond_dim):
        raise ValueError(f"cond must be (1, {cfg.cond_dim}) (the policy's token), got {tuple(ctx.cond.shape)}")
    return model(ctx.cond.expand(len(c), -1), torch.from_numpy(c)).double().numpy()


def save(model, config_type: str, out_dir: str | Path, model_card: str = "", overwrite: bool = False) -> Path:
    """config.json (type + config) + model.safetensors + normalization.json (+ README.md), atomically
    (`checkpoint.write_checkpoint`)."""
    return write_checkpoint(out_dir, {"type": config_type, **asdict(model.config)}, model.normalizer.to_dict(),
                            model.state_dict(), model_card, overwrite=overwrite)


def load(cls, config_cls, config_type: str, what: str, ckpt_dir: str | Path):
    """The folder `save` wrote -> cls(config, normalizer) with its weights, in eval mode; every failure
    names the file."""
    path = Path(ckpt_dir)
    require_files(path, FILES, what)
    config = read_typed_config(path, config_type, config_cls, what)
    normalizer = parse_json_file(path / "normalization.json", Normalizer.from_dict)
    parse_json_file(path / "normalization.json",
                    lambda _: normalizer.check_dims(config.action_dim, normalizer.proprio_mean.shape[0]))
    model = cls(config, normalizer)
    load_weights(model, path / "model.safetensors")
    return model.eval()
