"""End-effector actions -> joint targets for the robot model the node is given (pure Python, no ROS).

The node keeps a commanded TCP target (`sim.control.CartesianTarget`, the same update the simulator
applies), solves IK on a kinematic model of the arm (a URDF file; the node writes a received `/robot_description`
to one) and returns the joint targets; every command then passes the node's safety stage
(`ros_nodes.safety_stage`: position, velocity and acceleration limits from the same URDF). Joint states
outside the model's limits by more than a margin (or not finite) are refused (`check_joints`): they come
from a broken driver, not the arm.
Proprioception is rebuilt from joint states by forward kinematics, in the layout the policy was trained on.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ros_nodes.safety_stage import JointLimits
from sim.arms import IKSolver, get_arm_spec, proprio_joints
from sim.control import CartesianTarget, tcp_yaw


@dataclass(frozen=True)
class CommanderConfig:
    arm: str = "panda"  # joint layout, TCP offset and gripper of this arm (sim.arms)
    urdf: str = ""  # the robot model; "" = the arm's model from pybullet_data
    joint_limit_margin: float = 0.1  # rad (m for prismatic fingers: a tenth of it) a joint state may exceed

    def __post_init__(self) -> None:
        get_arm_spec(self.arm)
        if self.urdf and not Path(self.urdf).is_file():
            raise ValueError(f"urdf {self.urdf!r} is not a file")
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

    def close(self) -> None:
        self.ik.close()

    def joint_limits(self, acceleration: float) -> JointLimits:
        """The arm joints' position and velocity limits as the model states them (pybullet reads the URDF's
        `<limit>`; a joint without one is unlimited there), and `acceleration` (rad/s^2) for each: URDF has
        no acceleration limit (ros2_control takes it from parameters for the same reason)."""
        import pybullet as p

        info = [p.getJointInfo(self.ik.body, j, physicsClientId=self.ik.client) for j in self.spec.ik_joints]
        velocity = np.array([i[11] if i[11] > 0 else np.inf for i in info])
        n = len(info)
        return JointLimits(tuple(self.arm_joints), self.lower.copy(), self.upper.copy(), velocity,
                           np.full(n, float(acceleration)))

    def proprio(self, q_arm: np.ndarray, q_fingers: np.ndarray) -> np.ndarray:
        """(12,) float32: TCP xyz, TCP yaw, gripper width, the first 7 arm joints, 0-padded (`PROPRIO_NAMES`)."""
        pos, quat = self.ik.fk(q_arm)
        width = self.ik.gripper_width(q_fingers)
        return np.concatenate([pos, [tcp_yaw(quat), width], proprio_joints(q_arm)]).astype(np.float32)

    def sync(self, q_arm: np.ndarray, gripper: float = 1.0) -> None:
        """Restart from the measured pose (activation, reset, after a hold): no jump towards an old target."""
        pos, quat = self.ik.fk(q_arm)
        self.target = CartesianTarget(pos, quat, gripper)

    def step(self, action: np.ndarray, q_arm: np.ndarray, gripper_index: int = 6) -> tuple[np.ndarray, float, float]:
        """Apply one per-step action -> (joint targets (J,), gripper command, IK position error in m)."""
        if self.target is None:
            self.sync(q_arm)
        self.target.apply(action, gripper_index)
        q, err = self.ik.solve(self.target.pos, self.target.quat, q_arm)
        return np.asarray(q, dtype=np.float64), self.target.gripper, err

    def anchor(self, q_arm: np.ndarray) -> None:
        """Move the TCP target to where these joint commands put it (the gripper command stays): after the
        safety stage held or slowed a command, so the target never runs ahead of what the arm was told
        (a target wound up that way was later refused as a jump, and held the arm)."""
        pos, quat = self.ik.fk(q_arm)
        self.target.reset(pos, quat, self.target.gripper)

    def path(self, actions: np.ndarray, q_arm: np.ndarray, gripper_index: int = 6
             ) -> tuple[np.ndarray, list[CartesianTarget]]:
        """actions (K, A) applied in turn from the current target -> (joint targets (K, J), the target after
        each), without moving `target`: a chunk's whole path, for a trajectory sent at once."""
        if self.target is None:
            self.sync(q_arm)
        target, seed, qs, targets = copy.deepcopy(self.target), np.asarray(q_arm, np.float64), [], []
        for action in actions:
            target.apply(action, gripper_index)
            seed, _ = self.ik.solve(target.pos, target.quat, seed)
            seed = np.asarray(seed, np.float64)
            qs.append(seed)
            targets.append(copy.deepcopy(target))
        return np.stack(qs), targets

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
