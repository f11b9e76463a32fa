"""The commanded TCP target that actions move: one implementation for the simulator and the ROS node.

An action is an end-effector delta in the base frame. It moves a *commanded* target, not the measured
pose, so small tracking errors never accumulate into drift; the target is clamped to the workspace and
to a maximum tilt from straight down (beyond it only the yaw part of the rotation is applied, so a policy
can still turn the wrist). Damped IK (`sim.arms.IKSolver`) turns the target into joint targets.
"""

from __future__ import annotations

import numpy as np
import pybullet as p

WORKSPACE_LOW = np.array([0.25, -0.35, 0.005])
WORKSPACE_HIGH = np.array([0.75, 0.35, 0.35])
MAX_TILT = 0.6  # rad between the TCP axis and straight down


class CartesianTarget:
    """pos (3,) metres and quat (4,) xyzw of the commanded TCP in the base frame, plus the gripper command."""

    def __init__(self, pos, quat, gripper: float = 1.0, low: np.ndarray = WORKSPACE_LOW,
                 high: np.ndarray = WORKSPACE_HIGH, max_tilt: float = MAX_TILT) -> None:
        self.low, self.high, self.max_tilt = np.asarray(low, float), np.asarray(high, float), float(max_tilt)
        if self.low.shape != (3,) or self.high.shape != (3,) or not np.all(self.low < self.high):
            raise ValueError(f"workspace bounds must be (3,) with low < high, got low={low} high={high}")
        self.reset(pos, quat, gripper)

    def reset(self, pos, quat, gripper: float = 1.0) -> None:
        pos, quat = np.asarray(pos, dtype=np.float64), np.asarray(quat, dtype=np.float64)
        if pos.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f"target pose must be finite pos (3,) and quat (4,), got {pos} {quat}")
        if abs(np.linalg.norm(quat) - 1.0) > 1e-6:
            raise ValueError(f"target quaternion must have unit norm, got {quat} (norm {np.linalg.norm(quat)})")
        self.pos, self.quat, self.gripper = pos.copy(), quat.copy(), float(gripper)

    def apply(self, action: np.ndarray, gripper_index: int = 6) -> None:
        """action (7,): dx dy dz droll dpitch dyaw gripper, already validated and clamped per step."""
        a = np.asarray(action)
        self.pos = np.clip(self.pos + a[:3], self.low, self.high)
        dq = p.getQuaternionFromEuler(a[3:6].astype(np.float64))
        q_new = np.asarray(p.multiplyTransforms([0, 0, 0], dq, [0, 0, 0], self.quat)[1])
        if tilt(q_new) <= self.max_tilt:
            self.quat = q_new
        else:
            self.quat = np.asarray(p.multiplyTransforms(
                [0, 0, 0], p.getQuaternionFromEuler([0, 0, float(a[5])]), [0, 0, 0], self.quat)[1])
        self.gripper = float(a[gripper_index])


def tcp_yaw(quat) -> float:
    """Yaw of the gripper about the world z axis (its x axis projected on the table)."""
    rot = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def tilt(quat) -> float:
    rot = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
    return float(np.arccos(np.clip(-rot[2, 2], -1.0, 1.0)))
