"""End-effector actions -> joint targets for the robot model the node is given (pure Python, no ROS).

The node keeps a commanded TCP target (`sim.control.CartesianTarget`, the same update the simulator
applies), solves IK on a kinematic model of the arm (a URDF; by default the Panda from `pybullet_data`)
and clamps the result to the joint limits and to a per-step joint motion limit relative to the last
command sent. Every command passes `clamp`, holds included: a hold after stale joint states must not jump
back to a measurement that is a whole timeout window old. Joint states outside the model's limits by more
than a margin (or not finite) are refused (`check_joints`): they come from a broken driver, not the arm.
Proprioception is rebuilt from joint states by forward kinematics, in the layout the policy was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sim.arms import IKSolver, get_arm_spec
from sim.control import CartesianTarget, tcp_yaw


@dataclass(frozen=True)
class CommanderConfig:
    arm: str = "panda"  # joint layout, TCP offset and gripper of this arm (sim.arms)
    urdf: str = ""  # the robot model; "" = the arm's model from pybullet_data
    max_joint_step: float = 0.15  # rad per control period, per joint
    joint_limit_margin: float = 0.1  # rad (m for prismatic fingers: a tenth of it) a joint state may exceed

    def __post_init__(self) -> None:
        get_arm_spec(self.arm)
        if self.urdf and not Path(self.urdf).is_file():
            raise ValueError(f"urdf {self.urdf!r} is not a file")
        if not (math.isfinite(self.max_joint_step) and self.max_joint_step > 0):
            raise ValueError(f"max_joint_step must be a positive number of radians, got {self.max_joint_step}")
        if not (math.isfinite(self.joint_limit_margin) and self.joint_limit_margin >= 0):
            raise ValueError(f"joint_limit_margin must be a non-negative number, got {self.joint_limit_margin}")


class ArmCommander:
    def __init__(self, config: CommanderConfig) -> None:
        self.config = config
        spec = get_arm_spec(config.arm)
        if config.urdf:
            spec = replace(spec, model=str(Path(config.urdf).resolve()))
        self.spec = spec
        self.ik = IKSolver(spec)
        self.arm_joints = self.ik.joint_names(spec.ik_joints)
        self.finger_joints = self.ik.joint_names(spec.gripper.joints)
        self.lower, self.upper = self.ik.limits
        self.finger_lower, self.finger_upper = _limits(self.ik, spec.gripper.joints)
        self.target: CartesianTarget | None = None
        self.last_command: np.ndarray | None = None  # (J,) joint targets last sent

    def close(self) -> None:
        self.ik.close()

    def proprio(self, q_arm: np.ndarray, q_fingers: np.ndarray) -> np.ndarray:
        """(12,) float32: TCP xyz, TCP yaw, gripper width, the first 7 arm joints (`PROPRIO_NAMES`)."""
        pos, quat = self.ik.fk(q_arm)
        width = self.ik.gripper_width(q_fingers)
        return np.concatenate([pos, [tcp_yaw(quat), width], q_arm[:7]]).astype(np.float32)

    def sync(self, q_arm: np.ndarray, gripper: float = 1.0) -> None:
        """Restart from the measured pose (activation, reset, after a hold): no jump towards an old target."""
        pos, quat = self.ik.fk(q_arm)
        self.target = CartesianTarget(pos, quat, gripper)
        self.last_command = np.asarray(q_arm, dtype=np.float64).copy()

    def step(self, action: np.ndarray, q_arm: np.ndarray, gripper_index: int = 6) -> tuple[np.ndarray, float, float]:
        """Apply one per-step action -> (joint targets (J,), gripper command, IK position error in m)."""
        if self.target is None:
            self.sync(q_arm)
        self.target.apply(action, gripper_index)
        q, err = self.ik.solve(self.target.pos, self.target.quat, q_arm)
        return self.clamp(q), self.target.gripper, err

    def clamp(self, q: np.ndarray) -> np.ndarray:
        """The clamps every command passes: the joint limits, then at most `max_joint_step` per joint from
        the last command (none yet: limits only). Records the result as the last command."""
        q = np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)
        if self.last_command is not None:
            step = self.config.max_joint_step
            q = self.last_command + np.clip(q - self.last_command, -step, step)
        self.last_command = q
        return q

    def hold(self, q_measured: np.ndarray | None) -> np.ndarray | None:
        """Joint targets that stop the arm: towards the measured joints when they are fresh, else (None:
        stale) the last command itself; clamped like any command. None when there is nothing to hold to."""
        goal = self.last_command if q_measured is None else q_measured
        return None if goal is None else self.clamp(goal)

    def check_joints(self, q_arm: np.ndarray, q_fingers: np.ndarray | None = None) -> None:
        """ValueError naming the joints whose measured positions are not finite or lie outside the model's
        limits by more than the margin (a tenth of it for the fingers, which move centimetres)."""
        margin = self.config.joint_limit_margin
        bad = _outside(self.arm_joints, q_arm, self.lower, self.upper, margin)
        if q_fingers is not None:
            bad += _outside(self.finger_joints, q_fingers, self.finger_lower, self.finger_upper, margin / 10)
        if bad:
            raise ValueError(f"joint positions outside the limits (margin {margin}): {', '.join(bad)}")

    def chunk_path(self, chunk: np.ndarray) -> np.ndarray:
        """chunk (H, A) -> (H + 1, 3) TCP positions the chunk would visit from the current target (for
        visualising candidates; workspace clamps applied, rotations ignored)."""
        if self.target is None:
            raise RuntimeError("chunk_path() before sync()")
        steps = np.cumsum(np.asarray(chunk)[:, :3], axis=0)
        path = np.vstack([self.target.pos, self.target.pos + steps])
        return np.clip(path, self.target.low, self.target.high)


def _limits(ik: IKSolver, joints: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of these joints in the model; unlimited ones get +-inf."""
    import pybullet as p

    info = [p.getJointInfo(ik.body, j, physicsClientId=ik.client) for j in joints]
    lower = np.array([i[8] if i[8] < i[9] else -np.inf for i in info])
    upper = np.array([i[9] if i[8] < i[9] else np.inf for i in info])
    return lower, upper


def _outside(names: list[str], q: np.ndarray, lower: np.ndarray, upper: np.ndarray, margin: float) -> list[str]:
    q = np.asarray(q, dtype=np.float64)
    ok = np.isfinite(q) & (q >= lower - margin) & (q <= upper + margin)
    return [f"{n}={v:g} (limits [{lo:g}, {hi:g}])" for n, v, lo, hi, good in zip(names, q, lower, upper, ok)
            if not good]
