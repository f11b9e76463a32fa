"""Reading `vla sim relabel` folders: the policy's own decision states, each with the candidates steering
scored there and the scripted expert's chunk from that state (DAgger-style relabelling).

The folder holds `relabelled.json` (format, the policy's weights fingerprint, the settings) and one
`decisions_<k>.npz` per episode with `cond` (T, d) the policy's token, `candidates` (T, K, H, A) robot
units (NaN-padded past `count` (T,)), `expert` (T, H, A), `executed` (T,), `image`, `proprio`, `step` and a
JSON `meta` (task, seed, success, mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "vla_steering.relabelled_decisions"
MANIFEST = "relabelled.json"


@dataclass
class Decisions:
    cond: np.ndarray  # (S, d) float32 the policy's token at each decision
    candidates: np.ndarray  # (S, K, H, A) float32; rows with fewer than K candidates repeat candidate 0
    expert: np.ndarray  # (S, H, A) float32 the expert's chunk from the same state
    episode: np.ndarray  # (S,) int: a global episode number (folders concatenated)
    success: np.ndarray  # (S,) bool: that episode's outcome
    # with observations=True (what a verifier with its own perception reads), else None:
    images: np.ndarray | None = None  # (S, h, w, 3) uint8 the static camera at each decision
    proprio: np.ndarray | None = None  # (S, P) float32
    instructions: list[str] | None = None  # (S,)


def pad_candidates(sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision candidate sets of different sizes (k_i, H, A) -> (T, max k, H, A) float32 NaN-padded and
    the sizes (T,) int32: how recorders store them (`count` in the file)."""
    k = max(len(c) for c in sets)
    out = np.full((len(sets), k, *sets[0].shape[1:]), np.nan, np.float32)
    for i, c in enumerate(sets):
        out[i, :len(c)] = c
    return out, np.array([len(c) for c in sets], np.int32)


def read_decisions(dirs: list[str | Path], fingerprint: str | None, horizon: int, action_dim: int,
                   observations: bool = False) -> Decisions:
    """Every decision in `dirs`; refuses a folder recorded with another policy (its tokens would mean
    something else; fingerprint None: the tokens are not read) or with other chunk shapes, naming the file."""
    conds, cands, experts, episodes, successes = [], [], [], [], []
    images, proprios, instructions = [], [], []
    k_max = 0
    n_ep = 0
    for d in map(Path, dirs):
        manifest = d / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{d} is not a `vla sim relabel` folder: {manifest} is missing")
        info = json.loads(manifest.read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{manifest}: format {info.get('format')!r}, expected {FORMAT!r}")
        if fingerprint is not None and info.get("policy_fingerprint") != fingerprint:
            raise ValueError(f"{d} was recorded with another policy (fingerprint {info.get('policy_fingerprint')}, "
                             f"this policy {fingerprint}); relabel again with --policy")
        files = sorted(d.glob("decisions_*.npz"))
        if not files:
            raise ValueError(f"{d} holds no decisions_*.npz files")
        for f in files:
            try:
                with np.load(f) as z:
                    c, cond, ex, count = z["candidates"], z["cond"], z["expert"], z["count"]
                    meta = json.loads(str(z["meta"]))
                    if observations:
                        images.append(z["image"])
                        proprios.append(z["proprio"].astype(np.float32))
                        instructions += [meta["instruction"]] * len(c)
            except (OSError, ValueError, KeyError) as exc:
                raise ValueError(f"{f} is unreadable (truncated or corrupt?): {exc}") from exc
            if c.ndim != 4 or c.shape[2:] != (horizon, action_dim) or ex.shape != (len(c), horizon, action_dim):
                raise ValueError(f"{f}: candidates {c.shape} / expert {ex.shape} are not chunks of "
                                 f"{horizon} x {action_dim}")
            for i, n in enumerate(count):
                c[i, n:] = c[i, 0]  # padding: copies of candidate 0 are ties, never a preference pair
            if not (np.isfinite(c).all() and np.isfinite(ex).all() and np.isfinite(cond).all()):
                raise ValueError(f"{f} holds NaN or inf")
            conds.append(cond)
            cands.append(c)
            experts.append(ex)
            episodes.append(np.full(len(c), n_ep))
            successes.append(np.full(len(c), bool(meta["success"])))
            k_max = max(k_max, c.shape[1])
            n_ep += 1
    cands = [np.concatenate([c, np.repeat(c[:, :1], k_max - c.shape[1], axis=1)], axis=1) for c in cands]
    obs = (np.concatenate(images), np.concatenate(proprios), instructions) if observations else (None, None, None)
    return Decisions(np.concatenate(conds).astype(np.float32), np.concatenate(cands).astype(np.float32),
                     np.concatenate(experts).astype(np.float32), np.concatenate(episodes),
                     np.concatenate(successes), *obs)
