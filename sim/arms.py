"""Simulated arms: what differs between embodiments, behind one end-effector interface.

Every arm exposes the same tool-centre-point (TCP) pose, gripper opening in
metres and seven proprio joint entries (an arm with fewer joints reports the
missing ones as 0, see `proprio_joints`), so tasks, experts and policies never
branch on the arm. Adding an arm means adding one `ArmSpec`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

from sim.quiet import c_stdout_silenced

# Gripper pointing straight down with yaw 0: TCP z axis along world -z.
DOWN_QUAT = p.getQuaternionFromEuler([np.pi, 0.0, 0.0])
PROPRIO_JOINTS = 7  # q0..q6 in vla_runtime.types.PROPRIO_NAMES


def proprio_joints(q: np.ndarray) -> np.ndarray:
    """The first 7 IK joint positions, zero-padded for arms with fewer (the 6-joint xArm reports q6 = 0), so
    every arm fills the same proprio layout; extra IK joints (the KUKA's wrist yaw) are not reported."""
    q = np.asarray(q)
    if len(q) >= PROPRIO_JOINTS:
        return q[:PROPRIO_JOINTS]
    return np.concatenate([q, np.zeros(PROPRIO_JOINTS - len(q), dtype=q.dtype)])


@dataclass(frozen=True)
class GripperSpec:
    """Finger joints driven linearly between closed (command 0) and open (command 1) targets."""

    joints: tuple[int, ...]
    closed: tuple[float, ...]
    opened: tuple[float, ...]
    force: float
    width_links: tuple[int, int]  # opening = distance between these link frames - pad_offset
    pad_offset: float = 0.0
    passive_joints: tuple[int, ...] = ()  # held at 0 with a weak motor (compliant fingertips)
    passive_force: float = 0.0
    # (leader, follower) joints held equal by a gear constraint: the closed linkages that URDF <mimic> tags
    # describe and PyBullet ignores. A follower has no motor of its own.
    mimic: tuple[tuple[int, int], ...] = ()
    mimic_force: float = 10000.0  # the gears' force limit: far above any grasp, so the linkage never gives

    def targets(self, command: float) -> list[tuple[int, float]]:
        g = float(np.clip(command, 0.0, 1.0))
        return [(j, c + g * (o - c)) for j, c, o in zip(self.joints, self.closed, self.opened)]

    def with_followers(self, positions: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Driven joint positions plus each mimic follower at its leader's position."""
        value = dict(positions)
        return positions + [(f, value[lead]) for lead, f in self.mimic if lead in value]


@dataclass(frozen=True)
class ArmSpec:
    """Static description of one arm model from `pybullet_data`."""

    name: str
    model: str  # path inside pybullet_data (.urdf or .sdf)
    arm_joints: tuple[int, ...]  # the joints IK drives and proprio reports (at most 7; fewer are 0-padded)
    extra_ik_joints: tuple[int, ...]  # movable joints IK may use beyond arm_joints (e.g. a wrist yaw)
    base_xyz: tuple[float, float, float]  # mounting point in the table frame
    ik_link: int  # link whose pose IK targets
    tcp_offset: tuple[float, float, float]  # TCP position in ik_link frame
    tcp_yaw_offset: float  # rotation about the TCP z axis between ik_link and our TCP frame
    home_tcp: tuple[float, float, float]
    rest_pose: tuple[float, ...]  # joint positions IK is seeded with / pulled towards (len = all ik joints)
    finger_links: tuple[int, ...]  # links whose contact with an object counts as holding it
    gripper: GripperSpec
    max_width: float  # gripper opening in metres at command 1.0
    arm_force: float
    joint_damping: float = 0.05

    @property
    def ik_joints(self) -> tuple[int, ...]:
        return self.arm_joints + self.extra_ik_joints


PANDA = ArmSpec(
    name="panda",
    model="franka_panda/panda.urdf",
    arm_joints=(0, 1, 2, 3, 4, 5, 6),
    extra_ik_joints=(),
    base_xyz=(0.0, 0.0, 0.0),
    ik_link=11,  # panda_grasptarget, between the fingertips
    tcp_offset=(0.0, 0.0, 0.0),
    tcp_yaw_offset=0.0,
    home_tcp=(0.5, 0.0, 0.25),
    rest_pose=(0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785),
    finger_links=(9, 10),
    gripper=GripperSpec(joints=(9, 10), closed=(0.0, 0.0), opened=(0.04, 0.04), force=100.0, width_links=(9, 10)),
    max_width=0.08,
    arm_force=240.0,
)

KUKA = ArmSpec(
    name="kuka",
    model="kuka_iiwa/kuka_with_gripper2.sdf",
    arm_joints=(0, 1, 2, 3, 4, 5, 6),
    extra_ik_joints=(7,),  # gripper_to_arm: a free wrist yaw
    base_xyz=(-0.2, 0.0, 0.0),  # a longer arm: mounted further back so it can reach the table
    ik_link=7,
    tcp_offset=(0.0, 0.022, 0.213),  # between the finger pads, 2 cm above their tips
    tcp_yaw_offset=0.0,
    home_tcp=(0.5, 0.0, 0.25),
    rest_pose=(0.0, 0.4, 0.0, -1.6, 0.0, 1.1, 0.0, 0.0),
    finger_links=(8, 10, 11, 13),
    gripper=GripperSpec(joints=(8, 11), closed=(0.0, 0.0), opened=(-0.3, 0.3), force=60.0, width_links=(10, 13),
                        pad_offset=0.02, passive_joints=(10, 13), passive_force=4.0),
    max_width=0.09,
    arm_force=300.0,
)

# UFactory xArm6 with its parallel-linkage gripper: 6 arm joints (proprio q6 is always 0). The two outer
# knuckles are driven (0 open, ~8.3 cm between the pads; 0.85 closed); the fingers and inner knuckles follow
# them through gear constraints (the URDF's <mimic> tags, all multipliers 1), which keeps the pads parallel.
# A weak 5 N m drive: at the Panda-like 50 the squeeze overpowers the gears, the fingers tilt and a cube slips
# down in the grasp (stack fell to 13/20 expert successes). A shorter arm than the Panda: mounted 10 cm
# forward so the whole placement area (x 0.34..0.68, |y| <= 0.24) is reachable pointing straight down.
XARM = ArmSpec(
    name="xarm",
    model="xarm/xarm6_with_gripper.urdf",
    arm_joints=(1, 2, 3, 4, 5, 6),  # joint 0 is the fixed world joint
    extra_ik_joints=(),
    base_xyz=(0.1, 0.0, 0.0),
    ik_link=6,  # link6, the flange; its z axis points along the fingers, y across them (as the Panda's TCP)
    tcp_offset=(0.0, 0.0, 0.16),  # between the pads, 1.1 cm above their tips when closed on a 4 cm object
    tcp_yaw_offset=0.0,
    home_tcp=(0.5, 0.0, 0.25),
    rest_pose=(0.0, -0.3, -0.9, 0.0, 1.2, 0.0),
    finger_links=(9, 12),  # left_finger, right_finger
    gripper=GripperSpec(joints=(8, 11), closed=(0.85, 0.85), opened=(0.0, 0.0), force=5.0,
                        width_links=(9, 12), pad_offset=0.058, mimic=((8, 9), (8, 10), (11, 12), (11, 13))),
    max_width=0.083,
    arm_force=240.0,
)

ARMS: dict[str, ArmSpec] = {a.name: a for a in (PANDA, KUKA, XARM)}


def get_arm_spec(name: str) -> ArmSpec:
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; known arms: {sorted(ARMS)}")
    return ARMS[name]


def load_arm_body(spec: ArmSpec, client: int) -> int:
    """Load the arm at its mounting point; poses everywhere are in the table ("base") frame."""
    path = os.path.join(pybullet_data.getDataPath(), spec.model)  # an absolute `model` (a URDF parameter) wins
    if spec.model.endswith(".sdf"):
        with c_stdout_silenced():
            body = p.loadSDF(path, physicsClientId=client)[0]
        p.resetBasePositionAndOrientation(body, spec.base_xyz, [0, 0, 0, 1], physicsClientId=client)
        # SDF bodies come with a free base: pin it to the table.
        p.createConstraint(body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0], spec.base_xyz,
                           physicsClientId=client)
    else:
        body = p.loadURDF(path, spec.base_xyz, useFixedBase=True, physicsClientId=client)
    return body


def tcp_to_link_pose(spec: ArmSpec, pos, quat) -> tuple[list, list]:
    """TCP target pose -> pose of `spec.ik_link` that realises it."""
    off_q = p.getQuaternionFromEuler([0, 0, spec.tcp_yaw_offset])
    inv_pos, inv_q = p.invertTransform(spec.tcp_offset, off_q)
    return p.multiplyTransforms(pos, quat, inv_pos, inv_q)


def link_to_tcp_pose(spec: ArmSpec, pos, quat) -> tuple[list, list]:
    off_q = p.getQuaternionFromEuler([0, 0, spec.tcp_yaw_offset])
    return p.multiplyTransforms(pos, quat, spec.tcp_offset, off_q)


class IKSolver:
    """Damped IK refined on a kinematic shadow of the arm in its own physics client.

    PyBullet's IK is a single damped step from the body's current state; we
    iterate it on a shadow copy (never touching the simulated robot) until the
    TCP error is below `tol`, which gets ~0.1 mm instead of ~1 cm.
    """

    def __init__(self, spec: ArmSpec, max_iters: int = 40, tol: float = 2e-4) -> None:
        self.spec = spec
        self.max_iters = max_iters
        self.tol = tol
        self.client = p.connect(p.DIRECT)
        self.body = load_arm_body(spec, self.client)
        n = p.getNumJoints(self.body, physicsClientId=self.client)
        joint_types = [p.getJointInfo(self.body, j, physicsClientId=self.client)[2] for j in range(n)]
        self._movable = [j for j in range(n) if joint_types[j] != p.JOINT_FIXED]
        info = [p.getJointInfo(self.body, j, physicsClientId=self.client) for j in self._movable]
        self._lower = [i[8] if i[8] < i[9] else -np.pi for i in info]
        self._upper = [i[9] if i[8] < i[9] else np.pi for i in info]
        self._ranges = [u - lo for lo, u in zip(self._lower, self._upper)]
        self._ik_pos = [self._movable.index(j) for j in spec.ik_joints]

    def close(self) -> None:
        if self.client >= 0 and p.isConnected(self.client):
            p.disconnect(self.client)
        self.client = -1

    def joint_names(self, joints: tuple[int, ...]) -> list[str]:
        """The model's names of these joint indices (what `sensor_msgs/JointState` carries)."""
        return [p.getJointInfo(self.body, j, physicsClientId=self.client)[1].decode() for j in joints]

    @property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) positions of the IK joints; unlimited joints get ±pi."""
        return np.asarray(self._lower)[self._ik_pos], np.asarray(self._upper)[self._ik_pos]

    def gripper_width(self, fingers: np.ndarray) -> float:
        """Finger joint positions (len gripper.joints) -> opening in metres, measured as `Arm.gripper_width`
        does on the simulated robot (here on the shadow model, so a real robot's joint states serve)."""
        g = self.spec.gripper
        for j, v in g.with_followers([(j, float(v)) for j, v in zip(g.joints, fingers)]):
            p.resetJointState(self.body, j, v, physicsClientId=self.client)
        a, b = (np.asarray(p.getLinkState(self.body, link, computeForwardKinematics=True,
                                          physicsClientId=self.client)[4]) for link in g.width_links)
        return float(np.clip(np.linalg.norm(a - b) - g.pad_offset, 0.0, self.spec.max_width))

    def _set(self, q: np.ndarray) -> None:
        for j, v in zip(self.spec.ik_joints, q):
            p.resetJointState(self.body, j, float(v), physicsClientId=self.client)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (len ik_joints) -> TCP position, quaternion."""
        self._set(q)
        s = p.getLinkState(self.body, self.spec.ik_link, computeForwardKinematics=True, physicsClientId=self.client)
        pos, quat = link_to_tcp_pose(self.spec, s[4], s[5])
        return np.asarray(pos), np.asarray(quat)

    def solve(self, pos, quat, q_seed: np.ndarray) -> tuple[np.ndarray, float]:
        """Return joint targets (len ik_joints) and the remaining TCP position error (m).

        The first step is null-space IK pulled towards `rest_pose` (keeps the elbow
        where it belongs); later steps are plain damped IK from there, which, unlike
        the rest-pose-biased solver, converge to sub-millimetre error.
        """
        link_pos, link_q = tcp_to_link_pose(self.spec, pos, quat)
        q = np.asarray(q_seed, dtype=np.float64).copy()
        lo, hi = np.asarray(self._lower)[self._ik_pos], np.asarray(self._upper)[self._ik_pos]
        damping = [self.spec.joint_damping] * len(self._movable)
        null_space = {"lowerLimits": self._lower, "upperLimits": self._upper, "jointRanges": self._ranges,
                      "restPoses": list(self.spec.rest_pose) + [0.0] * (len(self._movable) - len(self.spec.rest_pose))}
        err = np.inf
        for it in range(self.max_iters):
            self._set(q)
            sol = p.calculateInverseKinematics(
                self.body, self.spec.ik_link, link_pos, link_q, jointDamping=damping,
                maxNumIterations=20, residualThreshold=1e-7, physicsClientId=self.client,
                **(null_space if it == 0 else {}),
            )
            q = np.clip(np.asarray(sol)[self._ik_pos], lo, hi)
            tcp_pos, _ = self.fk(q)
            err = float(np.linalg.norm(tcp_pos - np.asarray(pos)))
            if err < self.tol:
                break
        return q, err


class Arm:
    """A loaded arm in a simulation client: joint control, gripper, TCP state."""

    def __init__(self, spec: ArmSpec, client: int, ik: IKSolver) -> None:
        self.spec = spec
        self.client = client
        self.ik = ik
        self.body = load_arm_body(spec, client)
        for link in spec.finger_links:
            p.changeDynamics(self.body, link, lateralFriction=2.0, spinningFriction=0.01,
                             rollingFriction=0.0001, frictionAnchor=True, physicsClientId=client)
        for lead, follower in spec.gripper.mimic:
            gear = p.createConstraint(self.body, lead, self.body, follower, jointType=p.JOINT_GEAR,
                                      jointAxis=[1, 0, 0], parentFramePosition=[0, 0, 0],
                                      childFramePosition=[0, 0, 0], physicsClientId=client)
            # gearRatio -1 holds the two joint positions equal (measured; +1 mirrors them)
            p.changeConstraint(gear, gearRatio=-1, erp=0.2, maxForce=spec.gripper.mimic_force, physicsClientId=client)
            p.setJointMotorControl2(self.body, follower, p.VELOCITY_CONTROL, force=0.0, physicsClientId=client)
        self.home_q, _ = ik.solve(spec.home_tcp, DOWN_QUAT, np.asarray(spec.rest_pose))
        self.reset_joints(self.home_q, gripper=1.0)

    # --- state -----------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        states = p.getJointStates(self.body, self.spec.ik_joints, physicsClientId=self.client)
        return np.array([s[0] for s in states])

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        s = p.getLinkState(self.body, self.spec.ik_link, computeForwardKinematics=True, physicsClientId=self.client)
        pos, quat = link_to_tcp_pose(self.spec, s[4], s[5])
        return np.asarray(pos), np.asarray(quat)

    def gripper_width(self) -> float:
        g = self.spec.gripper
        a, b = (np.asarray(p.getLinkState(self.body, link, physicsClientId=self.client)[4]) for link in g.width_links)
        return float(np.clip(np.linalg.norm(a - b) - g.pad_offset, 0.0, self.spec.max_width))

    # --- commands --------------------------------------------------------
    def reset_joints(self, q: np.ndarray, gripper: float) -> None:
        for j, v in zip(self.spec.ik_joints, q):
            p.resetJointState(self.body, j, float(v), physicsClientId=self.client)
        g = self.spec.gripper
        for j, v in g.with_followers(g.targets(gripper)):
            p.resetJointState(self.body, j, v, physicsClientId=self.client)
        self.command(q, gripper)

    def command(self, q: np.ndarray, gripper: float) -> None:
        """Position targets for arm joints and fingers (held until the next command)."""
        p.setJointMotorControlArray(
            self.body, list(self.spec.ik_joints), p.POSITION_CONTROL, targetPositions=list(map(float, q)),
            forces=[self.spec.arm_force] * len(q), positionGains=[0.08] * len(q), physicsClientId=self.client,
        )
        g = self.spec.gripper
        for j, v in g.targets(gripper):
            p.setJointMotorControl2(self.body, j, p.POSITION_CONTROL, targetPosition=v, force=g.force,
                                    physicsClientId=self.client)
        for j in g.passive_joints:
            p.setJointMotorControl2(self.body, j, p.POSITION_CONTROL, targetPosition=0.0, force=g.passive_force,
                                    physicsClientId=self.client)

    def in_contact_with(self, body: int) -> bool:
        """True when any finger link touches `body` (a grasp, not a brush of the wrist)."""
        for link in self.spec.finger_links:
            if p.getContactPoints(self.body, body, linkIndexA=link, physicsClientId=self.client):
                return True
        return False
