"""`vla train policy`: behaviour cloning of the diffusion head on collected episodes.

Everything the run needs fits in RAM at training resolution, so a step is pure
compute. Checkpoints (model folder + training state) are written atomically
every `ckpt_every` steps; `--resume` continues bit-for-bit from the last one.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file

from vla_runtime.checkpoint import is_checkpoint_of, metrics_log, optimizer_tensors, restore_optimizer
from vla_runtime.dataset import EpisodeDataset, action_chunk
from vla_runtime.io import atomic_write_bytes, atomic_write_text, check_output_dir
from vla_runtime.policy.config import CONFIG_TYPE, PolicyConfig
from vla_runtime.policy.model import VLAPolicy, shared_language_encoder
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.vision import augment

STATE_DIR = "training_state"


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
    # steps: the encoder learns to find the named object before the action losses (which can be
    # lowered without looking, by copying the arm's own progress) shape it.
    grounding_steps: int = 0

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
        if not 0 <= self.grounding_steps < self.steps:
            raise ValueError(f"grounding_steps must be in [0, steps={self.steps}), got {self.grounding_steps}")


@dataclass
class StepTable:
    """All training steps of a dataset, in RAM, at the policy's resolution."""

    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P) float32
    actions: np.ndarray  # (N, Hc, A) float32 chunks
    chunk_mask: np.ndarray  # (N, Hc) bool: chunk positions the loss may use (see `consistent_chunk_mask`)
    instr: np.ndarray  # (N,) int index into `instructions`
    episode: np.ndarray  # (N,) int
    instructions: list[str]
    object_xy: np.ndarray  # (N, 4) float32 target object xy + goal xy at the episode start (privileged)
    object_mask: np.ndarray  # (N,) bool: step early enough that nothing has moved yet
    wrist_images: np.ndarray | None = None  # (N, h, w, 3) uint8 when the policy reads a wrist camera


def object_targets(scene: dict) -> np.ndarray | None:
    """(4,) target-object xy + goal xy from an episode's scene record, or None when it lacks them.

    The goal is what the task moves the object to: the container, the base object, the named pad;
    for `pick_lift` the object itself (it is lifted in place).
    """
    try:
        obj = scene["objects"][0]["xy"]
        if scene.get("container"):
            goal = scene["container"]["xy"]
        elif scene.get("base_index") is not None:
            goal = scene["objects"][scene["base_index"]]["xy"]
        elif scene.get("goal_region"):
            goal = next(r["xy"] for r in scene["regions"] if r["name"] == scene["goal_region"])
        else:
            goal = obj
        out = np.array([*obj, *goal], dtype=np.float32)
    except (KeyError, IndexError, TypeError, StopIteration):
        return None
    return out if out.shape == (4,) and np.isfinite(out).all() else None


def consistent_chunk_mask(t_len: int, horizon: int, relabelled: list[int]) -> np.ndarray:
    """(T, H) bool: position k of the chunk at step t is a valid label unless a relabelled step lies in
    [t, t+k-1].

    After a relabelled (DART-perturbed) step the arm went somewhere the recorded action did not
    send it, so the later labels answer a different state: as an open-loop continuation of the
    chunk they would teach the policy to chase perturbations. Positions past the episode end stay
    valid (they teach holding still).
    """
    bad = np.zeros(t_len + horizon, dtype=bool)
    for j in relabelled:
        if not 0 <= j < t_len:
            raise ValueError(f"relabelled step {j} outside the episode's {t_len} steps")
        bad[j] = True
    mask = np.ones((t_len, horizon), dtype=bool)
    for k in range(1, horizon):  # position k is invalid if step t+k-1 was relabelled or position k-1 was
        mask[:, k] = mask[:, k - 1] & ~bad[k - 1 : k - 1 + t_len]
    return mask


def load_steps(data: list[str | Path], config: PolicyConfig, progress: bool = True) -> StepTable:
    ds = EpisodeDataset(data)
    # Frames go straight into preallocated arrays: 5600 episodes at 128x128 plus a 64x64 wrist camera
    # hold ~9 GB of frames, and concatenating per-episode lists would need twice that at the peak.
    n_steps = sum(ds.meta(k)["length"] for k in range(len(ds)))
    images = np.empty((n_steps, *config.image_size, 3), np.uint8)
    wrist = np.empty((n_steps, *config.wrist_image_size, 3), np.uint8) if config.wrist_camera else None
    proprio, actions, chunk_mask, instr, episode, obj_xy, obj_mask = [], [], [], [], [], [], []
    start = 0
    instructions: dict[str, int] = {}
    it = range(len(ds))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="load episodes", unit="ep")
    for k in it:
        ep = ds.load_episode(k)
        missing = [c for c in config.cameras if c not in ep.images]
        if missing:
            raise ValueError(f"{ds.episode_path(k)} has no camera(s) {missing} (has {sorted(ep.images)}); "
                             f"collect with --wrist for a wrist-camera policy")
        gi = ep.meta["action_spec"]["gripper_index"]
        t_len = ep.length
        # the observation before each action
        images[start:start + t_len] = resize_frames(ep.images[config.camera][:-1], config.image_size)
        if wrist is not None:
            wrist[start:start + t_len] = resize_frames(ep.images[config.wrist_camera][:-1], config.wrist_image_size)
        start += t_len
        proprio.append(ep.proprio[:-1])
        actions.append(np.stack([action_chunk(ep.actions, t, config.horizon, gi)[0] for t in range(t_len)]))
        chunk_mask.append(consistent_chunk_mask(t_len, config.horizon, ep.meta.get("relabelled_steps", [])))
        idx = instructions.setdefault(ep.meta["instruction"], len(instructions))
        instr.append(np.full(t_len, idx))
        episode.append(np.full(t_len, k))
        targets = object_targets(ep.meta.get("scene", {}))
        if targets is None and config.anchor:
            raise ValueError(f"{ds.episode_path(k)} has no scene record with target/goal positions, which an "
                             f"anchor policy trains on")
        obj_xy.append(np.tile(targets if targets is not None else np.zeros(4, np.float32), (t_len, 1)))
        obj_mask.append((np.arange(t_len) < config.aux_object_steps) & (targets is not None))
    if start != n_steps:
        raise ValueError(f"episode lengths in the dataset index ({n_steps} steps) disagree with the episodes ({start})")
    return StepTable(images, np.concatenate(proprio).astype(np.float32),
                     np.concatenate(actions).astype(np.float32), np.concatenate(chunk_mask),
                     np.concatenate(instr), np.concatenate(episode),
                     list(instructions), np.concatenate(obj_xy).astype(np.float32), np.concatenate(obj_mask),
                     wrist)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, *size, 3) uint8 (a no-op at the right size)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


class Trainer:
    """`init`: a trained policy to fine-tune (its config, weights and normalisation statistics are kept;
    the optimizer and learning-rate schedule start fresh)."""

    def __init__(self, table: StepTable, out: Path, policy_config: PolicyConfig, cfg: TrainConfig,
                 init: VLAPolicy | None = None) -> None:
        self.out, self.cfg = Path(out), cfg
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
        self.lang = shared_language_encoder(policy_config.language_model).encode(table.instructions)  # (U, D)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.meta = {"train_steps_total": int(len(self.train_idx)), "val_steps": int(len(self.val_idx)),
                     "episodes": int(len(episodes)), "val_episodes": sorted(int(e) for e in val_eps)}

    # --- batches --------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, train: bool) -> tuple[torch.Tensor, ...]:
        t, pc = self.table, self.model.config
        images = torch.from_numpy(t.images[idx]).permute(0, 3, 1, 2).float() / 255.0
        wrist = None if t.wrist_images is None else torch.from_numpy(t.wrist_images[idx]).permute(0, 3, 1, 2) / 255.0
        if train:
            images = augment(images, pc.random_shift, pc.color_jitter, self.gen)
            if wrist is not None:
                wrist = augment(wrist, pc.wrist_shift, pc.color_jitter, self.gen)
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
        return object_xy + pc.anchor_noise * torch.randn(object_xy.shape, generator=gen)

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
        self.step += 1
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
            if model.aux_object_head is not None and bool(object_mask.any()):
                xy = model.object_xy((vis if model.config.aux_object_input == "vision" else cond)[object_mask])
                out[f"{name}val_object_err_mm"] = float((xy - object_xy[object_mask]).abs().mean() * 1000)
            noise = torch.randn(actions.shape, generator=gen)
            pred = model.normalizer.unnormalize_actions(model.denoise(cond, noise))
            out[f"{name}val_loss"] = float(loss)
            err = (pred - actions).abs().mean(-1)  # (B, H)
            out[f"{name}val_action_mae"] = float(err[chunk_mask].mean())
        return out

    # --- checkpoints ------------------------------------------------------------------
    def save(self, model_card: str = "") -> None:
        weights = (self.ema or self.model).state_dict()
        self.model.save_pretrained(self.out, model_card=model_card, state_dict=weights)
        state = {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            state.update({f"ema.{k}": v.detach().clone() for k, v in self.ema.state_dict().items()})
        state.update(optimizer_tensors(self.opt, self.gen))
        from safetensors.torch import save

        sdir = self.state_dir(self.out)
        sdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(sdir / "state.safetensors", save(state))
        atomic_write_text(sdir / "trainer.json", json.dumps({"step": self.step, "train_config": asdict(self.cfg),
                                                            **self.meta}, indent=2))

    @staticmethod
    def state_dir(out: Path) -> Path:
        return out.parent / f"{out.name}.{STATE_DIR}"

    def load_state(self) -> None:
        sdir = self.state_dir(self.out)
        meta_path, state_path = sdir / "trainer.json", sdir / "state.safetensors"
        if not meta_path.is_file() or not state_path.is_file():
            raise FileNotFoundError(f"--resume: no training state in {sdir}")
        meta = json.loads(meta_path.read_text())
        if meta.get("episodes") != self.meta["episodes"] or meta.get("val_episodes") != self.meta["val_episodes"]:
            raise ValueError(f"--resume: the data changed since {sdir} was written "
                             f"({meta.get('episodes')} -> {self.meta['episodes']} episodes)")
        # The cosine schedule is defined by `steps`, so resuming only continues an interrupted run
        # with the same parameters; extending a finished run would replay a different schedule.
        diff = {k: (meta["train_config"].get(k), v) for k, v in asdict(self.cfg).items()
                if meta["train_config"].get(k) != v}
        if diff:
            raise ValueError(f"--resume with different training parameters (stored, given): {diff}")
        state = load_file(str(state_path))
        self.model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
        restore_optimizer(self.opt, self.gen, state)
        self.step = int(meta["step"])


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
    table = load_steps(data, policy_config, progress=progress)
    trainer = Trainer(table, out, policy_config, cfg, init=init_policy)
    if added:
        trainer.meta["init_added_tensors"] = added
    if resume:
        trainer.load_state()
    metrics_path = metrics_log(Trainer.state_dir(out) / "metrics.jsonl", trainer.step if resume else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step, desc="train policy", unit="step")
    last = {}
    losses: list[float] = []
    with metrics_path.open("a") as mf:
        while trainer.step < cfg.steps:
            losses.append(trainer.train_step())
            if bar is not None:
                bar.update(1)
            if trainer.step % cfg.val_every == 0 or trainer.step == cfg.steps:
                last = {"step": trainer.step, "loss": float(np.mean(losses)), "lr": trainer.lr_at(trainer.step),
                        **trainer.validate(), "elapsed_s": round(time.perf_counter() - t0, 1)}
                losses = []
                mf.write(json.dumps(last) + "\n")
                mf.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{last['loss']:.4f}", val=f"{last.get('val_action_mae', 0):.4f}")
            if trainer.step % cfg.ckpt_every == 0 or trainer.step == cfg.steps:
                card = model_card_fn(trainer, last) if model_card_fn else ""
                trainer.save(model_card=card)
    if bar is not None:
        bar.close()
    return {"out": str(out), "steps": trainer.step, "seconds": round(time.perf_counter() - t0, 1), **last,
            **{k: v for k, v in trainer.meta.items() if k != "val_episodes"}}
