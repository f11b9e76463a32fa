"""`vla train policy`: behaviour cloning of the diffusion head on collected episodes.

Everything the run needs fits in RAM at training resolution (`steps.StepTable`), so a step is pure
compute. The loop, checkpoints, metrics and `--resume` are the shared harness's (`vla_runtime.training`);
this module holds only what is the policy's: its losses, validation, schedule and EMA.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vla_runtime.checkpoint import is_checkpoint_of
from vla_runtime.io import check_output_dir
from vla_runtime.policy.config import CONFIG_TYPE, PolicyConfig
from vla_runtime.policy.model import VLAPolicy, language_features
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.steps import StepTable, load_steps
from vla_runtime.policy.vision import augment
from vla_runtime.training import Run


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 500
    ema_decay: float = 0.999  # 0 disables EMA
    val_fraction: float = 0.05
    val_every: int = 500
    ckpt_every: int = 1000
    seed: int = 0
    threads: int = 2
    # The first `grounding_steps` steps train only the object-localisation loss, on object-labelled
    # steps: the encoder learns to find the named object before the action losses shape it.
    grounding_steps: int = 0
    # Object-head labels on the first `object_label_steps` frames of an episode only: once the arm
    # moves, its own position gives the target away.
    object_label_steps: int = 2
    anchor_noise: float = 0.01  # metres of noise on an anchor policy's training anchors (~ the head's error)
    random_shift: int = 4  # pixels of random-shift augmentation on the main camera (scaled for the wrist)
    color_jitter: float = 0.15

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "ckpt_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.object_label_steps < 0:
            raise ValueError(f"object_label_steps must be >= 0, got {self.object_label_steps}")
        if not (0.0 <= self.anchor_noise <= 0.1):
            raise ValueError(f"anchor_noise must be within 0..0.1 metres, got {self.anchor_noise}")
        if self.random_shift < 0 or self.color_jitter < 0:
            raise ValueError(f"augmentation strengths must be >= 0, got shift={self.random_shift} "
                             f"jitter={self.color_jitter}")
        if not 0 <= self.grounding_steps < self.steps:
            raise ValueError(f"grounding_steps must be in [0, steps={self.steps}), got {self.grounding_steps}")


class Trainer:
    """`init`: a trained policy to fine-tune (its config, weights and normalisation statistics are kept;
    the optimizer and learning-rate schedule start fresh); `init_added`: the tensors `VLAPolicy.extended`
    added to it (recorded in the run's meta and the model card)."""

    def __init__(self, table: StepTable, out: Path, policy_config: PolicyConfig, cfg: TrainConfig,
                 init: VLAPolicy | None = None, init_added: list[str] | None = None,
                 overwrite: bool = False) -> None:
        self.out, self.cfg, self.overwrite = Path(out), cfg, overwrite
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        rng = np.random.default_rng(cfg.seed)
        episodes = np.unique(table.episode)
        n_val = max(1, int(round(len(episodes) * cfg.val_fraction)))
        val_eps = set(rng.choice(episodes, size=n_val, replace=False).tolist())
        is_val = np.isin(table.episode, list(val_eps))
        self.train_idx, self.val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)[:512]
        self.table = table
        self.ground_idx = self.train_idx[table.object_mask[self.train_idx]]
        if cfg.grounding_steps and (len(self.ground_idx) == 0 or policy_config.aux_object_weight == 0):
            raise ValueError("grounding_steps needs object labels (episode scene records) and aux_object_weight > 0")
        if init is not None:
            self.model = copy.deepcopy(init).train()
        else:
            flat_actions = table.actions[self.train_idx].reshape(-1, table.actions.shape[-1])
            normalizer = Normalizer.fit(flat_actions, table.proprio[self.train_idx])
            self.model = VLAPolicy(policy_config, normalizer)
        self.ema = copy.deepcopy(self.model).eval() if cfg.ema_decay > 0 else None
        self.lang = language_features(policy_config, table.instructions)  # (U, D) or (U, 1 + tokens, D)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.meta = {"train_steps_total": int(len(self.train_idx)), "val_steps": int(len(self.val_idx)),
                     "episodes": int(len(episodes)), "val_episodes": sorted(int(e) for e in val_eps)}
        if init_added:
            self.meta["init_added_tensors"] = list(init_added)
        modules = {"model": self.model} | ({"ema": self.ema} if self.ema is not None else {})
        # The cosine schedule is defined by `steps`, so resuming only continues an interrupted run with
        # the same parameters and data; `Run` refuses anything else.
        self.run = Run(self.out, modules, self.opt, self.gen, {"train_config": asdict(cfg), **self.meta})

    @property
    def step(self) -> int:
        return self.run.step

    # --- batches --------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, train: bool) -> tuple[torch.Tensor, ...]:
        t, pc = self.table, self.model.config
        images = torch.from_numpy(t.images[idx]).permute(0, 3, 1, 2).float() / 255.0
        wrist = None if t.wrist_images is None else torch.from_numpy(t.wrist_images[idx]).permute(0, 3, 1, 2) / 255.0
        if train:
            c = self.cfg
            images = augment(images, c.random_shift, c.color_jitter, self.gen)
            if wrist is not None:  # the same fraction of the frame
                shift = round(c.random_shift * pc.wrist_image_size[0] / pc.image_size[0])
                wrist = augment(wrist, shift, c.color_jitter, self.gen)
        return (images, self.lang[torch.from_numpy(t.instr[idx])], torch.from_numpy(t.proprio[idx]),
                torch.from_numpy(t.actions[idx]), torch.from_numpy(t.chunk_mask[idx]),
                torch.from_numpy(t.object_xy[idx]), torch.from_numpy(t.object_mask[idx]), wrist)

    def _anchor(self, object_xy: torch.Tensor, gen: torch.Generator) -> torch.Tensor | None:
        """Training anchors (B, 4) for an anchor policy: the start-of-episode labels plus Gaussian noise of
        `anchor_noise` metres, so the action head learns to trust the anchor only as far as the object
        head's own first-frame estimate (what it gets at run time) deserves."""
        pc = self.model.config
        if not pc.anchor:
            return None
        return object_xy + self.cfg.anchor_noise * torch.randn(object_xy.shape, generator=gen)

    def lr_at(self, step: int) -> float:
        if step < self.cfg.warmup:
            return self.cfg.lr * (step + 1) / self.cfg.warmup
        frac = (step - self.cfg.warmup) / max(1, self.cfg.steps - self.cfg.warmup)
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    def train_step(self) -> float:
        self.model.train()
        grounding = self.step < self.cfg.grounding_steps
        pool = self.ground_idx if grounding else self.train_idx
        pick = torch.randint(0, len(pool), (self.cfg.batch_size,), generator=self.gen).numpy()
        batch = self._batch(pool[pick], train=True)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        images, lang, proprio, actions, chunk_mask, object_xy, object_mask, wrist = batch
        if grounding:
            loss = self.model.object_loss(images, lang, proprio, object_xy, wrist=wrist)
        else:
            loss = self.model.loss(images, lang, proprio, actions, generator=self.gen, object_xy=object_xy,
                                   object_mask=object_mask, chunk_mask=chunk_mask, wrist=wrist,
                                   anchor=self._anchor(object_xy, self.gen))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                    pe.lerp_(pm, 1 - self.cfg.ema_decay)
        return loss.item()

    @torch.no_grad()
    def validate(self) -> dict:
        """Fixed-noise diffusion loss and sampled-action error (robot units) on held-out episodes."""
        out = {}
        for name, model in (("", self.model), ("ema_", self.ema)):
            if model is None:
                continue
            model.eval()  # no condition dropout, so the loss is comparable across evaluations
            gen = torch.Generator().manual_seed(1234)
            images, lang, proprio, actions, chunk_mask, object_xy, object_mask, wrist = self._batch(self.val_idx,
                                                                                                   train=False)
            anchor = self._anchor(object_xy, gen)
            loss = model.loss(images, lang, proprio, actions, generator=gen, chunk_mask=chunk_mask,
                              wrist=wrist, anchor=anchor)  # no object aux
            vis, cond = model.features(images, lang, proprio, wrist=wrist, anchor=anchor)
            if model.has_object_head and bool(object_mask.any()):
                xy = model.object_xy((vis if model.config.aux_object_input == "vision" else cond)[object_mask])
                out[f"{name}val_object_err_mm"] = float((xy - object_xy[object_mask]).abs().mean() * 1000)
            noise = torch.randn(actions.shape, generator=gen)
            pred = model.normalizer.unnormalize_actions(model.denoise(cond, noise))
            out[f"{name}val_loss"] = float(loss)
            err = (pred - actions).abs().mean(-1)  # (B, H)
            out[f"{name}val_action_mae"] = float(err[chunk_mask].mean())
        return out

    # --- checkpoints ------------------------------------------------------------------
    def save_model(self, model_card: str = "") -> None:
        """The checkpoint folder: the EMA weights when there are any (what inference should run)."""
        weights = (self.ema or self.model).state_dict()
        self.model.save_pretrained(self.out, model_card=model_card, state_dict=weights, overwrite=self.overwrite)


def train_policy(data: list[str | Path], out: str | Path, policy_config: PolicyConfig, cfg: TrainConfig,
                 resume: bool = False, progress: bool = True, model_card_fn=None,
                 init: str | Path | None = None, init_overrides: dict | None = None, overwrite: bool = False) -> dict:
    """Train (or, with `init`, fine-tune a checkpoint: its own config replaces `policy_config`, except for
    `init_overrides`, which may only add modules, e.g. {"anchor": True}: `VLAPolicy.extended`).
    `out` is checked before any work (`io.check_output_dir`): only a previous policy checkpoint is
    replaced unless `overwrite`."""
    out = check_output_dir(out, is_checkpoint_of(CONFIG_TYPE), "policy checkpoint", inputs=[*data, init],
                           overwrite=overwrite)
    t0 = time.perf_counter()
    init_policy = VLAPolicy.from_pretrained(init) if init is not None else None
    added: list[str] = []
    if init_policy is not None:
        if init_overrides:
            init_policy, added = init_policy.extended(replace(init_policy.config, **init_overrides))
        policy_config = init_policy.config
    elif init_overrides:
        raise ValueError(f"init_overrides {init_overrides} need an init checkpoint")
    table = load_steps(data, policy_config, object_label_steps=cfg.object_label_steps, progress=progress)
    trainer = Trainer(table, out, policy_config, cfg, init=init_policy, init_added=added,
                      overwrite=overwrite)

    def validate() -> dict:
        return {"lr": trainer.lr_at(trainer.step), **trainer.validate()}

    def save(last: dict) -> None:
        trainer.save_model(model_card=model_card_fn(trainer, last) if model_card_fn else "")

    last = trainer.run.loop(cfg.steps, trainer.train_step, validate, save, cfg.val_every, cfg.ckpt_every,
                            resume=resume, progress=progress, desc="train policy")
    return {"out": str(out), "steps": trainer.step, "seconds": round(time.perf_counter() - t0, 1), **last,
            **{k: v for k, v in trainer.meta.items() if k != "val_episodes"}}
