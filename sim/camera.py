"""Camera rendering (ER_TINY_RENDERER) with metric depth, intrinsics and pose.

PyBullet speaks OpenGL (camera looks down -z, y up); we hand out OpenCV-style
intrinsics and a camera-to-base pose (z forward, y down) so downstream point
cloud code needs no special cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from vla_runtime.types import CameraInfo


@dataclass(frozen=True)
class CameraPose:
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 55.0
    near: float = 0.02
    far: float = 3.0

    def __post_init__(self) -> None:
        if not 5.0 < self.fov_deg < 170.0:
            raise ValueError(f"fov_deg must be in (5, 170), got {self.fov_deg}")
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near} far={self.far}")
        if np.allclose(self.eye, self.target):
            raise ValueError(f"camera eye and target coincide: {self.eye}")


@dataclass(frozen=True)
class Lighting:
    direction: tuple[float, float, float] = (0.4, -0.3, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.45
    specular: float = 0.05


def camera_info(pose: CameraPose, width: int, height: int) -> CameraInfo:
    fy = 0.5 * height / np.tan(np.deg2rad(pose.fov_deg) / 2.0)
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (pose.eye, pose.target, pose.up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError(f"camera up vector {pose.up} is parallel to its viewing direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    t = np.eye(4)
    t[:3, 0], t[:3, 1], t[:3, 2], t[:3, 3] = x, y, z, eye
    # PyBullet's projection uses the vertical fov and square pixels. Its rasteriser puts the optical
    # axis half a pixel right of and above the image centre (measured; test_principal_point_...).
    return CameraInfo(width=width, height=height, fx=fy, fy=fy, cx=width / 2.0 + 0.5, cy=height / 2.0 - 0.5,
                      pose_base_cam=t)


def render(client: int, pose: CameraPose, width: int, height: int, lighting: Lighting,
           with_depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """-> rgb (H, W, 3) uint8, depth (H, W) float32 metres along the optical axis, 0 = no return (or None)."""
    view = p.computeViewMatrix(pose.eye, pose.target, pose.up, physicsClientId=client)
    proj = p.computeProjectionMatrixFOV(pose.fov_deg, width / height, pose.near, pose.far, physicsClientId=client)
    _, _, rgba, zbuf, _ = p.getCameraImage(
        width, height, view, proj, renderer=p.ER_TINY_RENDERER, shadow=0,
        lightDirection=list(pose_light(lighting)), lightColor=list(lighting.color),
        lightAmbientCoeff=lighting.ambient, lightDiffuseCoeff=lighting.diffuse,
        lightSpecularCoeff=lighting.specular, flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=client,
    )
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()
    if not with_depth:
        return rgb, None
    zb = np.asarray(zbuf, dtype=np.float64).reshape(height, width)
    depth = pose.far * pose.near / (pose.far - (pose.far - pose.near) * zb)
    depth[zb >= 1.0 - 1e-6] = 0.0  # no surface within range: 0 = no return, as depth sensors report
    return rgb, depth.astype(np.float32)


def pose_light(lighting: Lighting) -> np.ndarray:
    d = np.asarray(lighting.direction, dtype=np.float64)
    return d / np.linalg.norm(d)
