"""Contracts shared by every layer (numpy only, no torch, no ROS).

`sim`, `verifiers`, the ROS nodes and the policy all speak these types, so they
stay dependency-free and cheap to construct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

GRIPPER_OPEN = 1.0
GRIPPER_CLOSED = 0.0


@dataclass(frozen=True)
class CameraInfo:
    """Pinhole intrinsics plus the camera pose in the robot base frame.

    `pose_base_cam` is a 4x4 transform in the OpenCV optical convention
    (x right, y down, z forward) so `depth` back-projects with the usual
    `K^-1 [u v 1] * z` and lands in the base frame after one matmul.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    pose_base_cam: np.ndarray  # (4, 4) float64

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        pose = np.asarray(self.pose_base_cam, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError(f"pose_base_cam must be a finite 4x4 matrix, got shape {pose.shape}")
        object.__setattr__(self, "pose_base_cam", pose)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "pose_base_cam": self.pose_base_cam.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CameraInfo:
        return cls(
            width=int(d["width"]),
            height=int(d["height"]),
            fx=float(d["fx"]),
            fy=float(d["fy"]),
            cx=float(d["cx"]),
            cy=float(d["cy"]),
            pose_base_cam=np.asarray(d["pose_base_cam"], dtype=np.float64),
        )


def backproject(depth: np.ndarray, cam: CameraInfo) -> np.ndarray:
    """Depth image (H, W) metres -> points (H*W, 3) in the base frame (NaN where depth<=0)."""
    h, w = depth.shape
    if (w, h) != (cam.width, cam.height):
        raise ValueError(f"depth is {w}x{h} but camera info says {cam.width}x{cam.height}")
    v, u = np.mgrid[0:h, 0:w]
    z = depth.astype(np.float64)
    x = (u + 0.5 - cam.cx) / cam.fx * z
    y = (v + 0.5 - cam.cy) / cam.fy * z
    pts_cam = np.stack([x, y, z, np.ones_like(z)], axis=-1).reshape(-1, 4)  # (H*W, 4)
    pts = (pts_cam @ cam.pose_base_cam.T)[:, :3]
    pts[(z <= 0).reshape(-1)] = np.nan
    return pts


@dataclass
class Observation:
    """One synchronous snapshot of the robot's senses."""

    images: dict[str, np.ndarray]  # camera -> (H, W, 3) uint8
    instruction: str
    proprio: np.ndarray  # (P,) float32
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (H, W) float32 metres
    cameras: dict[str, CameraInfo] = field(default_factory=dict)
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("Observation needs at least one image")
        for name, img in self.images.items():
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
                raise ValueError(f"image '{name}' must be (H, W, 3) uint8, got {desc}")
        for name, d in self.depth.items():
            if name not in self.images:
                raise ValueError(f"depth for camera '{name}' has no matching image")
            if d.shape != self.images[name].shape[:2]:
                raise ValueError(f"depth '{name}' shape {d.shape} != image shape {self.images[name].shape[:2]}")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {self.instruction!r}")
        proprio = np.asarray(self.proprio, dtype=np.float32)
        if proprio.ndim != 1 or not np.all(np.isfinite(proprio)):
            raise ValueError(f"proprio must be a finite 1-D vector, got shape {proprio.shape}")
        self.proprio = proprio


# Proprio layout shared by every arm, so a policy transfers across embodiments.
PROPRIO_NAMES: tuple[str, ...] = (
    "ee_x", "ee_y", "ee_z", "ee_yaw", "gripper_width",
    "q0", "q1", "q2", "q3", "q4", "q5", "q6",
)


@dataclass(frozen=True)
class ActionSpec:
    """Names, bounds and timing of the action a policy emits (one row of a chunk)."""

    names: tuple[str, ...] = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
    low: tuple[float, ...] = (-0.03, -0.03, -0.03, -0.2, -0.2, -0.3, 0.0)
    high: tuple[float, ...] = (0.03, 0.03, 0.03, 0.2, 0.2, 0.3, 1.0)
    gripper_index: int = 6
    chunk_length: int = 8
    control_hz: float = 10.0

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.low) != n or len(self.high) != n:
            raise ValueError(f"names/low/high lengths differ: {n}, {len(self.low)}, {len(self.high)}")
        if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"bounds must be finite with low < high, got low={self.low} high={self.high}")
        if not 0 <= self.gripper_index < n:
            raise ValueError(f"gripper_index {self.gripper_index} outside 0..{n - 1}")
        if self.chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {self.chunk_length}")
        if not (self.control_hz > 0 and math.isfinite(self.control_hz)):
            raise ValueError(f"control_hz must be positive, got {self.control_hz}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, dtype=np.float32)

    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, dtype=np.float32)

    def validate(self, action: np.ndarray) -> np.ndarray:
        """Return `action` as float32 clipped to bounds; raise on wrong shape or non-finite values.

        Clipping (not rejecting) out-of-range values is the documented behaviour:
        a policy's slight overshoot should not stop a robot.
        """
        a = np.asarray(action, dtype=np.float32)
        if a.shape[-1:] != (self.dim,):
            raise ValueError(f"action must end in dimension {self.dim} ({', '.join(self.names)}), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        return np.clip(a, self.low_array(), self.high_array())

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "low": list(self.low),
            "high": list(self.high),
            "gripper_index": self.gripper_index,
            "chunk_length": self.chunk_length,
            "control_hz": self.control_hz,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ActionSpec:
        return cls(
            names=tuple(d["names"]),
            low=tuple(float(x) for x in d["low"]),
            high=tuple(float(x) for x in d["high"]),
            gripper_index=int(d["gripper_index"]),
            chunk_length=int(d["chunk_length"]),
            control_hz=float(d["control_hz"]),
        )
