"""Model card text for a trained policy checkpoint (README.md inside the folder), with the YAML front matter
the Hub reads (`hub.with_metadata`): the datasets it was trained on and its held-out metrics."""

from __future__ import annotations

import json
from pathlib import Path


def policy_card(trainer, last: dict, command: str, data: list[str]) -> str:
    held_out = [k for k in last if "val_" in k]  # names only: the values are in the text
    return trainer.model.card_text(_policy_text(trainer, last, command, data), datasets=data, metrics=held_out)


def _policy_text(trainer, last: dict, command: str, data: list[str]) -> str:
    cfg = trainer.model.config
    t = trainer.cfg
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return f"""# vla_steering policy checkpoint

CogACT-style VLA: a language-FiLM CNN (GroupNorm, spatial-softmax keypoints) on the
`{cfg.camera}` camera at {cfg.image_size[0]}x{cfg.image_size[1]} (block strides {cfg.vision_strides}){_wrist(cfg)},
frozen all-MiniLM-L6-v2 instruction
embeddings and proprioception, fused into one conditioning token; a DiT head
({cfg.dit_layers} layers, d={cfg.d_model}, {cfg.dit_heads} heads) denoises an action chunk of
H={cfg.horizon} with diffusers DDPM training ({cfg.train_timesteps} steps) and DDIM sampling
({cfg.inference_steps} steps). {n_params / 1e6:.2f} M trainable parameters. Saved weights:
{"EMA (decay " + str(t.ema_decay) + ")" if t.ema_decay > 0 else "raw"}.
Training-only auxiliary losses (heads unused at inference): direct chunk regression from the
conditioning token (weight {cfg.aux_weight}) and target/goal table xy from the episodes' scene
labels on the first {t.object_label_steps} frames, read from the {cfg.aux_object_input} features
(weight {cfg.aux_object_weight}{f"; the first {t.grounding_steps} steps train it alone" if t.grounding_steps else ""}).
Proprio entries seen: {", ".join(cfg.proprio_inputs)}.{_anchor(cfg, t, trainer.meta)}

## Training

- Command: `{command or "(programmatic)"}`
- Data: {", ".join(data)} ({_collection(data)}):
  {trainer.meta["episodes"]} episodes, {trainer.meta["train_steps_total"]} training steps
  ({len(trainer.meta["val_episodes"])} episodes held out for validation)
- Seed {t.seed}, batch {t.batch_size}, {t.steps} steps, lr {t.lr} (warm-up {t.warmup}, cosine),
  weight decay {t.weight_decay}, {t.threads} CPU threads
- Progress at the last validation: `{json.dumps(last)}`

## Evaluation

See the evaluation table in the repository README (`vla eval`), which is the command
that prints it.
"""


def _anchor(cfg, t, meta: dict) -> str:
    if not cfg.anchor:
        return ""
    added = " (added to the `--init` parent, whose weights it starts from)" if meta.get("init_added_tensors") else ""
    return (f"\nEpisode anchor{added}: the object head's first-frame target/goal xy, latched by the agent, "
            f"conditions every decision as offsets from the end effector (trained on the scene labels plus "
            f"{t.anchor_noise * 1000:.0f} mm of noise).")


def _wrist(cfg) -> str:
    if not cfg.wrist_camera:
        return ""
    h, w = cfg.wrist_image_size
    return f" and a second CNN on the `{cfg.wrist_camera}` camera at {h}x{w} (strides {cfg.wrist_vision_strides})"


def _collection(data: list[str]) -> str:
    """The `vla sim collect` parameters recorded in each dataset header."""
    parts = []
    for d in data:
        try:
            parts.append(json.dumps(json.loads((Path(d) / "dataset.json").read_text()).get("collection", {})))
        except (OSError, ValueError):
            parts.append("collection parameters unavailable")
    return "; ".join(parts)
