"""Frozen-policy features of dataset frames: the shared encoding the verifier and the value function read.

Digi-Q style: the scorers sit on the policy's conditioning token, so at run time one encoding serves
the policy and every scorer. For training, every frame of the dataset folders is encoded once
(batched, no gradients) exactly as `EpisodeEncoder` would at run time: an anchor policy's frames
use the anchor its first frame estimates. The table is cached beside the run, keyed by the
policy's weights and the episodes, so `--resume` and re-runs skip the encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save

from vla_runtime.dataset import EpisodeDataset
from vla_runtime.io import atomic_write_bytes
from vla_runtime.policy.model import VLAPolicy, language_features
from vla_runtime.policy.steps import load_steps

_ARRAYS = ("cond", "actions", "chunk_mask", "episode", "t", "length", "success", "quality")


@dataclass
class FeatureTable:
    """One row per dataset step (the observation before the action)."""

    cond: np.ndarray  # (N, d_model) float32: the policy's conditioning token
    actions: np.ndarray  # (N, H, A) float32: the recorded chunk actions[t:t+H] (padded past the end)
    chunk_mask: np.ndarray  # (N, H) bool: chunk positions that are valid labels
    episode: np.ndarray  # (N,) int64 episode position in the dataset list
    t: np.ndarray  # (N,) int64 step within the episode
    length: np.ndarray  # (E,) int64 steps per episode
    success: np.ndarray  # (E,) bool: the episode ended in success
    quality: np.ndarray  # (E,) int64 index into QUALITIES (expert, dart, noisy, policy...)

    def __post_init__(self) -> None:
        # safetensors stores bools as bytes: restore the dtypes masks and outcomes are indexed with
        self.chunk_mask, self.success = self.chunk_mask.astype(bool), self.success.astype(bool)
        n = len(self.cond)
        for name in ("actions", "chunk_mask", "episode", "t"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"feature table: {name} has {len(getattr(self, name))} rows, cond has {n}")
        if len(self.length) != len(self.success) or len(self.length) != len(self.quality):
            raise ValueError("feature table: per-episode arrays differ in length")
        if n != int(self.length.sum()):
            raise ValueError(f"feature table: {n} rows but episodes hold {int(self.length.sum())} steps")

    def split(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (train row indices, held-out row indices): whole episodes are held out."""
        rng = np.random.default_rng(seed)
        e = len(self.length)
        n_val = max(1, int(round(e * val_fraction)))
        val = np.zeros(e, dtype=bool)
        val[rng.choice(e, size=n_val, replace=False)] = True
        held = val[self.episode]
        return np.flatnonzero(~held), np.flatnonzero(held)


QUALITIES = ("expert", "dart", "noisy", "base", "policy")


def _quality_index(q: str | None) -> int:
    """Eval recordings carry the method name (e.g. 'base') as their quality; unknown ones count as 'policy'."""
    return QUALITIES.index(q) if q in QUALITIES else QUALITIES.index("policy")


def cache_key(policy_dir: str | Path, data: list[str | Path]) -> str:
    """sha256 over the policy's weights + config and the dataset episodes' names and sizes."""
    h = hashlib.sha256()
    pdir = Path(policy_dir)
    for name in ("config.json", "model.safetensors"):
        h.update((pdir / name).read_bytes())
    for root in data:
        for f in sorted((Path(root) / "episodes").glob("*.zip")):
            h.update(f"{f.name}:{f.stat().st_size};".encode())
    return h.hexdigest()


def concat(tables: list[FeatureTable]) -> FeatureTable:
    """Tables of consecutive dataset folders -> one table (episode indices offset, as `EpisodeDataset` does)."""
    offsets = np.cumsum([0] + [len(t.length) for t in tables[:-1]])
    return FeatureTable(**{k: np.concatenate([getattr(t, k) + (o if k == "episode" else 0)
                                              for t, o in zip(tables, offsets)]) for k in _ARRAYS})


@torch.inference_mode()
def encode_dataset(policy: VLAPolicy, data: list[str | Path], batch_size: int = 512,
                   progress: bool = True) -> FeatureTable:
    """Every step of the dataset folders -> its conditioning token under the frozen `policy`."""
    policy = policy.eval()
    cfg = policy.config
    table = load_steps(data, cfg, progress=progress)
    ds = EpisodeDataset(data)
    metas = [ds.meta(k) for k in range(len(ds))]
    lang = language_features(cfg, table.instructions)  # (U, D) or (U, 1 + tokens, D)
    n = len(table.proprio)
    vis = torch.empty(n, policy.grounding_dim)
    cond = torch.empty(n, cfg.d_model)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="encode frames", unit="batch")
    for s in starts:
        sl = slice(s, min(n, s + batch_size))
        images = torch.from_numpy(table.images[sl]).permute(0, 3, 1, 2).float() / 255.0
        wrist = (None if table.wrist_images is None
                 else torch.from_numpy(table.wrist_images[sl]).permute(0, 3, 1, 2).float() / 255.0)
        vis[sl], cond[sl] = policy.fused_features(images, lang[torch.from_numpy(table.instr[sl])],
                                          torch.from_numpy(table.proprio[sl]), wrist)
    episode = table.episode.astype(np.int64)
    t = np.concatenate([np.arange(m["length"]) for m in metas]).astype(np.int64)
    if policy.anchor_mlp is not None:  # the first frame's estimate, latched for the episode (EpisodeEncoder)
        first = np.flatnonzero(t == 0)  # (E,) in episode order
        anchors = policy.object_xy(vis[torch.from_numpy(first)])  # (E, 4)
        cond, _ = policy.add_anchor(vis, cond, torch.from_numpy(table.proprio), anchors[torch.from_numpy(episode)])
    return FeatureTable(cond=cond.numpy().astype(np.float32), actions=table.actions, chunk_mask=table.chunk_mask,
                        episode=episode, t=t, length=np.array([m["length"] for m in metas], np.int64),
                        success=np.array([bool(m["success"]) for m in metas]),
                        quality=np.array([_quality_index(m.get("quality")) for m in metas], np.int64))


def cached_features(policy_dir: str | Path, data: list[str | Path], cache_dir: Path,
                    progress: bool = True) -> FeatureTable:
    """`encode_dataset` per folder, each stored in `cache_dir` (safetensors, written atomically) and reused
    while its key (policy weights + episodes) matches: the verifier and value trainers share encodings."""
    policy = None
    tables = []
    for root in data:
        key = cache_key(policy_dir, [root])
        path = Path(cache_dir) / f"{Path(root).resolve().name}-{key[:16]}.safetensors"
        if path.is_file():
            arrays = load_file(str(path))
            if bytes(arrays.pop("key")).decode() == key:
                tables.append(FeatureTable(**{k: arrays[k] for k in _ARRAYS}))
                continue
        policy = policy or VLAPolicy.from_pretrained(policy_dir)
        table = encode_dataset(policy, [root], progress=progress)
        arrays = {k: np.ascontiguousarray(getattr(table, k)) for k in _ARRAYS}
        arrays["key"] = np.frombuffer(key.encode(), dtype=np.uint8).copy()
        atomic_write_bytes(path, save(arrays, metadata={"data": str(root)}))
        tables.append(table)
    return concat(tables)
