"""The training steps of a dataset as in-RAM arrays at the policy's resolution (`StepTable`), with the
labels the trainer and the scorers' feature cache read from episodes: action chunks, the mask of chunk
positions a loss may use, and the privileged target/goal positions of the object head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from vla_runtime.dataset import EpisodeDataset, action_chunk
from vla_runtime.policy.config import PolicyConfig


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


def load_steps(data: list[str | Path], config: PolicyConfig, object_label_steps: int = 2,
               progress: bool = True) -> StepTable:
    """Every step of the datasets at `config`'s resolution; object labels on each episode's first
    `object_label_steps` frames."""
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
        obj_mask.append((np.arange(t_len) < object_label_steps) & (targets is not None))
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
