"""Geometric safety scorer: reject candidate chunks whose end-effector path leaves the workspace or
passes too close to an obstacle seen in depth.

The obstacle cloud is the depth image back-projected into the base frame (`types.backproject`),
voxel-downsampled with open3d, with the table surface removed. Points near the chunk's own final
position are the intended contact (the object it goes to grasp or push), so they do not count.
A rejection scores -inf, also when it rejects every candidate: the steered pipeline then executes the
mean of the policy's samples with a warning (`SteeredPolicy`), never a least-bad unsafe candidate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from vla_runtime.types import ActionSpec, Observation, backproject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SafetyConfig:
    """Defaults match the simulator's table and workspace (`sim.env`); a real cell sets its own."""

    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.005)  # metres, base frame
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.35)
    margin: float = 0.02  # the least allowed distance from the path to an obstacle point
    table_z: float = 0.0  # the table surface height; points below table_z + table_clearance are table
    table_clearance: float = 0.008
    target_radius: float = 0.05  # obstacle points this close to the chunk's final position are the target
    voxel: float = 0.005  # open3d voxel size for the obstacle cloud
    clearance_cap: float = 0.1  # scores saturate here: beyond 10 cm every path is equally safe
    camera: str = "static"

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError(f"workspace_low must be below workspace_high on x, y, z, got {self.workspace_low} "
                             f"and {self.workspace_high}")
        for name in ("margin", "table_clearance", "target_radius", "voxel", "clearance_cap"):
            v = getattr(self, name)
            if not (v > 0 and np.isfinite(v)):
                raise ValueError(f"{name} must be a positive number of metres, got {v}")


class SafetyScorer:
    name = "safety"
    reads = "observation"  # depth + camera pose: steers any policy

    def __init__(self, spec: ActionSpec, config: SafetyConfig | None = None) -> None:
        self.spec = spec
        self.config = config or SafetyConfig()

    def obstacles(self, obs: Observation) -> np.ndarray:
        """(P, 3) obstacle points in the base frame from the observation's depth + camera pose."""
        cam = self.config.camera
        if cam not in obs.depth or cam not in obs.cameras:
            raise ValueError(f"the safety scorer needs depth and CameraInfo for camera {cam!r}; the observation "
                             f"has depth {sorted(obs.depth)} and cameras {sorted(obs.cameras)}")
        pts = backproject(obs.depth[cam], obs.cameras[cam])
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        pts = pts[pts[:, 2] > self.config.table_z + self.config.table_clearance]
        if len(pts) == 0:
            return np.zeros((0, 3))
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        return np.asarray(cloud.voxel_down_sample(self.config.voxel).points)

    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The `Scorer` contract: the decision's observation and its proprio end-effector position
        (`PROPRIO_NAMES` starts with ee_x, ee_y, ee_z)."""
        obs = ctx.observation
        return self.score_path(obs, candidates, obs.proprio[:3])

    def score_path(self, obs: Observation, candidates: np.ndarray, ee_position: np.ndarray) -> np.ndarray:
        """candidates (m, H, A) from the end effector at `ee_position` (3,) -> (m,) clearance in metres
        (capped at `clearance_cap`), -inf for a rejected candidate (see the module doc for the fallback)."""
        c = np.asarray(candidates, dtype=np.float64)
        if c.ndim != 3 or c.shape[1:] != (self.spec.chunk_length, self.spec.dim) or not np.all(np.isfinite(c)):
            raise ValueError(f"candidates must be finite (m, {self.spec.chunk_length}, {self.spec.dim}), "
                             f"got {c.shape}")
        ee = np.asarray(ee_position, dtype=np.float64)
        if ee.shape != (3,) or not np.all(np.isfinite(ee)):
            raise ValueError(f"ee_position must be a finite (3,) vector, got {ee.shape}")
        path = ee + np.cumsum(c[:, :, :3], axis=1)  # (m, H, 3) end-effector positions after each step
        cfg = self.config
        lo, hi = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        outside = np.maximum(lo - path, 0) + np.maximum(path - hi, 0)  # (m, H, 3) metres beyond the box
        box_violation = outside.max(axis=(1, 2))  # (m,)
        clearance = self._clearance(path, self.obstacles(obs))  # (m,)
        safe = (box_violation == 0) & (clearance >= cfg.margin)
        if not safe.any():
            log.warning("safety: all %d candidates leave the workspace or pass within %.3f m of an obstacle",
                        len(c), cfg.margin)
        return np.where(safe, np.minimum(clearance, cfg.clearance_cap), -np.inf)

    def _clearance(self, path: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
        """path (m, H, 3), obstacles (P, 3) -> (m,) least distance from the path to a non-target point."""
        m = len(path)
        if len(obstacles) == 0:
            return np.full(m, np.inf)
        d = np.linalg.norm(path[:, :, None, :] - obstacles[None, None], axis=-1)  # (m, H, P)
        target = np.linalg.norm(obstacles[None] - path[:, -1:, :], axis=-1) < self.config.target_radius  # (m, P)
        d = np.where(target[:, None, :], np.inf, d)
        return d.min(axis=(1, 2))
