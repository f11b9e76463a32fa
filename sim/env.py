"""The gymnasium environment: a table-top arm with language-conditioned tasks.

Physics runs at 240 Hz, the policy at 10 Hz. An action is an end-effector
delta `(dx, dy, dz, droll, dpitch, dyaw, gripper)` in the base frame that moves a
commanded TCP target; damped IK turns the target into joint position targets.
`reset()` rebuilds the world from scratch so a seed fully determines an episode.
"""

from __future__ import annotations

import string
from contextlib import contextmanager
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pybullet as p

from sim.arms import DOWN_QUAT, Arm, IKSolver, get_arm_spec, proprio_joints
from sim.camera import CameraPose, Lighting, camera_info, render
from sim.control import CartesianTarget, tcp_yaw
from sim.randomization import randomize
from sim.scene import SHIFTED_TABLE_RGB, TABLE_RGB, build_container, build_object, build_region, build_table
from sim.tasks import TaskInstance, WorldHandles, check_task, is_success, sample_task
from sim.variations import get_variation
from vla_runtime.types import PROPRIO_NAMES, ActionSpec, CameraInfo, Observation

PHYSICS_HZ = 240
PROPRIO_LIMIT = 10.0  # |metres| and |radians| of every proprio entry stay far below this
# Oblique, from the front-left: the hand hides the objects far less than from straight in front.
STATIC_CAMERA = CameraPose(eye=(0.85, 0.45, 0.6), target=(0.5, 0.0, 0.02), fov_deg=40.0)
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-"
CONTAINER_RGB = {"tray": (0.45, 0.45, 0.5), "bowl": (0.92, 0.92, 0.88)}
REGION_RGB = {"left": (0.95, 0.95, 0.95), "right": (0.95, 0.95, 0.95)}


@dataclass(frozen=True)
class EnvConfig:
    task: str = "pick_lift"
    variation: str = "id"
    arm: str = "panda"
    image_size: tuple[int, int] = (128, 128)  # (H, W)
    wrist_camera: bool = False
    depth: bool = True
    max_steps: int = 80
    render_images: bool = True  # False: black images, for privileged-state runs (expert checks)
    randomize: bool = False  # training-time domain randomisation (sim.randomization); `id` variation only
    action_spec: ActionSpec = field(default_factory=ActionSpec)

    def __post_init__(self) -> None:
        check_task(self.task)
        var = get_variation(self.variation)
        get_arm_spec(self.arm)
        if self.randomize and self.variation != "id":
            # the evaluation splits are held out: randomising on top of one would blur what it measures
            raise ValueError(f"randomize=True is training-time randomisation of the 'id' variation, "
                             f"not of variation {self.variation!r}")
        if var.arm is not None and self.arm not in ("panda", var.arm):
            raise ValueError(f"variation {self.variation!r} runs on arm {var.arm!r}, not {self.arm!r}")
        h, w = self.image_size
        if not (16 <= h <= 1024 and 16 <= w <= 1024):
            raise ValueError(f"image_size must be within 16..1024 pixels per side, got {self.image_size}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.action_spec.dim != 7:
            raise ValueError(f"the arm env takes 7-D actions, action_spec has {self.action_spec.dim}")

    @property
    def effective_arm(self) -> str:
        return get_variation(self.variation).arm or self.arm


class ArmEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = None) -> None:
        self.config = config or EnvConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.variation = get_variation(self.config.variation)
        self.arm_spec = get_arm_spec(self.config.effective_arm)
        self.spec_actions = self.config.action_spec
        self.substeps = round(PHYSICS_HZ / self.spec_actions.control_hz)
        h, w = self.config.image_size
        self.action_space = gym.spaces.Box(self.spec_actions.low_array(), self.spec_actions.high_array(),
                                           dtype=np.float32)
        spaces: dict[str, gym.Space] = {
            "rgb": gym.spaces.Box(0, 255, (h, w, 3), np.uint8),
            "proprio": gym.spaces.Box(-PROPRIO_LIMIT, PROPRIO_LIMIT, (len(PROPRIO_NAMES),), np.float32),
            "instruction": gym.spaces.Text(max_length=256, min_length=1, charset=INSTRUCTION_CHARSET),
        }
        if self.config.depth:
            spaces["depth"] = gym.spaces.Box(0.0, STATIC_CAMERA.far, (h, w), np.float32)
        if self.config.wrist_camera:
            spaces["wrist_rgb"] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.client = p.connect(p.DIRECT)
        self.ik = IKSolver(self.arm_spec)
        self.instance: TaskInstance | None = None
        self.world: WorldHandles | None = None
        self.arm: Arm | None = None
        self._steps = 0
        self._done = True
        self.last_observation: Observation | None = None

    # --- gym API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self.instance = sample_task(self.config.task, rng, self.variation)
        self._camera, self._lighting, table_rgb = self._sample_view(rng)
        if self.config.randomize:  # drawn after everything above, so an unrandomised reset is unchanged
            r = randomize(self.instance, self._camera, rng)
            self.instance, self._camera, self._lighting, table_rgb = r.instance, r.camera, r.lighting, r.table_rgb
        self._build(table_rgb)
        self._steps = 0
        self._done = False
        obs = self._observe()
        return self._gym_obs(obs), self._info(success=False)

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        a = self.spec_actions.validate(action)
        if a.ndim != 1:
            raise ValueError(f"step() takes one action of shape ({self.spec_actions.dim},), got {a.shape}")
        self._apply(a)
        self._steps += 1
        success = is_success(self.instance, self.world, self.arm.in_contact_with)
        terminated = success
        truncated = self._steps >= self.config.max_steps and not terminated
        self._done = terminated or truncated
        obs = self._observe()
        return self._gym_obs(obs), float(success), terminated, truncated, self._info(success)

    def render(self):
        if self.last_observation is None:
            raise RuntimeError("render() before reset()")
        return self.last_observation.images["static"]

    def close(self) -> None:
        if self.client >= 0 and p.isConnected(self.client):
            p.disconnect(self.client)
        self.client = -1
        self.ik.close()

    # --- privileged state (experts, predicates, ROS sim node) ---------------------
    @property
    def target_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._target.pos.copy(), self._target.quat.copy()

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def gripper_command(self) -> float:
        """The held gripper command (0 closed .. 1 open)."""
        return self._target.gripper

    def succeeded(self) -> bool:
        """The task's success predicate in the current state."""
        self._require_world("succeeded")
        return bool(is_success(self.instance, self.world, self.arm.in_contact_with))

    # --- lookahead (the oracle and DAgger relabelling ask the expert what it would do from here) --------
    @contextmanager
    def lookahead(self):
        """Inside, `simulate(action)` moves the world without rendering or episode bookkeeping; on exit the
        physics state and the commanded target are restored, so the episode goes on as if nothing ran."""
        self._require_world("lookahead")
        state = p.saveState(physicsClientId=self.client)
        target = (self._target.pos.copy(), self._target.quat.copy(), self._target.gripper)
        try:
            yield self
        finally:
            p.restoreState(stateId=state, physicsClientId=self.client)
            p.removeState(state, physicsClientId=self.client)
            self._target.reset(*target)

    def simulate(self, action: np.ndarray) -> None:
        """One control step of physics under `action`, nothing rendered or counted (use inside `lookahead`)."""
        self._apply(self.spec_actions.validate(action))

    def camera_infos(self) -> dict[str, CameraInfo]:
        return dict(self._cam_infos)

    # --- real-time joint control (ROS sim node) ------------------------------------
    # A ROS robot is driven by joint targets on its own clock, not by 10 Hz Cartesian actions: these methods
    # bypass step() (and its IK) and leave the episode bookkeeping of reset()/step() untouched.
    def command_joints(self, q_arm: np.ndarray, gripper: float) -> None:
        """Position targets for the IK joints and the fingers (gripper 0 closed .. 1 open), held until the
        next command; what a JointTrajectory / gripper command turns into."""
        self._require_world("command_joints")
        q = np.asarray(q_arm, dtype=np.float64)
        n = len(self.arm_spec.ik_joints)
        if q.shape != (n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q_arm must be {n} finite joint positions, got shape {q.shape}: {q.tolist()}")
        if not np.isfinite(gripper):
            raise ValueError(f"gripper command must be finite, got {gripper}")
        self.arm.command(q, float(np.clip(gripper, 0.0, 1.0)))

    def advance(self, substeps: int) -> bool:
        """Step physics `substeps` times (1/240 s each) under the held targets; -> the success predicate."""
        self._require_world("advance")
        if int(substeps) != substeps or substeps < 1:
            raise ValueError(f"substeps must be a positive integer, got {substeps}")
        for _ in range(int(substeps)):
            p.stepSimulation(physicsClientId=self.client)
        return bool(is_success(self.instance, self.world, self.arm.in_contact_with))

    def observe(self) -> Observation:
        """Render the cameras and read proprio now (a ROS camera tick); `stamp` counts step() calls only."""
        self._require_world("observe")
        return self._observe()

    def joint_names(self) -> tuple[list[str], list[str]]:
        """(IK joint names, driven finger joint names) from the loaded model, the names JointState and
        JointTrajectory use (panda_joint1..7, panda_finger_joint1/2 for the Panda)."""
        self._require_world("joint_names")
        names = [p.getJointInfo(self.arm.body, j, physicsClientId=self.client)[1].decode()
                 for j in self.arm_spec.ik_joints + self.arm_spec.gripper.joints]
        n = len(self.arm_spec.ik_joints)
        return names[:n], names[n:]

    def joint_state(self) -> tuple[list[str], np.ndarray]:
        """Names and measured positions of the IK joints followed by the finger joints."""
        arm, fingers = self.joint_names()
        joints = list(self.arm_spec.ik_joints) + list(self.arm_spec.gripper.joints)
        states = p.getJointStates(self.arm.body, joints, physicsClientId=self.client)
        return arm + fingers, np.array([s[0] for s in states], dtype=np.float64)

    def _require_world(self, what: str) -> None:
        if self.arm is None:
            raise RuntimeError(f"{what}() before reset(): no world is loaded")

    # --- internals -----------------------------------------------------------
    def _sample_view(self, rng: np.random.Generator) -> tuple[CameraPose, Lighting, tuple]:
        var = self.variation
        cam, light, table = STATIC_CAMERA, Lighting(), TABLE_RGB
        if var.camera_jitter > 0:
            j = var.camera_jitter
            cam = CameraPose(eye=tuple(np.add(cam.eye, rng.uniform(-j, j, 3))),
                             target=tuple(np.add(cam.target, rng.uniform(-j, j, 3) * np.array([1, 1, 0]))),
                             fov_deg=cam.fov_deg + float(rng.uniform(-4, 4)))
        if var.appearance_shift:
            light = Lighting(direction=tuple(rng.uniform([-1, -1, 0.4], [1, 1, 1.0])),
                             color=tuple(rng.uniform(0.75, 1.0, 3)), ambient=float(rng.uniform(0.35, 0.8)),
                             diffuse=float(rng.uniform(0.3, 0.7)))
            table = SHIFTED_TABLE_RGB
        return cam, light, table

    def _build(self, table_rgb) -> None:
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_HZ, numSolverIterations=80,
                                    deterministicOverlappingPairs=1, physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        table = build_table(c, table_rgb)
        inst = self.instance
        container = None
        if inst.container is not None:
            container = build_container(c, inst.container, CONTAINER_RGB[inst.container.kind])
        for r in inst.regions:
            build_region(c, r, REGION_RGB[r.name])
        objects = [build_object(c, o) for o in inst.objects]
        self.world = WorldHandles(client=c, objects=objects, table=table, container=container)
        self.arm = Arm(self.arm_spec, c, self.ik)
        self._target = CartesianTarget(self.arm.tcp_pose()[0], DOWN_QUAT, gripper=1.0)
        for _ in range(self.substeps):  # let objects settle on the table
            p.stepSimulation(physicsClientId=c)
        h, w = self.config.image_size
        self._cam_infos = {"static": camera_info(self._camera, w, h)}

    def _apply(self, a: np.ndarray) -> None:
        self._target.apply(a, self.spec_actions.gripper_index)
        q_cmd, _ = self.ik.solve(self._target.pos, self._target.quat, self.arm.joint_positions())
        self.arm.command(q_cmd, self._target.gripper)
        for _ in range(self.substeps):
            p.stepSimulation(physicsClientId=self.client)

    def proprio(self) -> np.ndarray:
        pos, quat = self.arm.tcp_pose()
        q = proprio_joints(self.arm.joint_positions())
        return np.concatenate([pos, [tcp_yaw(quat), self.arm.gripper_width()], q]).astype(np.float32)

    def _observe(self) -> Observation:
        h, w = self.config.image_size
        images, depth, cams = {}, {}, dict(self._cam_infos)
        if self.config.render_images:
            rgb, d = render(self.client, self._camera, w, h, self._lighting, self.config.depth)
        else:
            rgb, d = np.zeros((h, w, 3), np.uint8), (np.zeros((h, w), np.float32) if self.config.depth else None)
        images["static"] = rgb
        if d is not None:
            depth["static"] = d
        if self.config.wrist_camera:
            pose = self._wrist_pose()
            cams["wrist"] = camera_info(pose, w, h)
            images["wrist"] = (render(self.client, pose, w, h, self._lighting, False)[0]
                               if self.config.render_images else np.zeros((h, w, 3), np.uint8))
        self.last_observation = Observation(images=images, instruction=self.instance.instruction,
                                            proprio=self.proprio(), depth=depth, cameras=cams,
                                            stamp=self._steps / self.spec_actions.control_hz)
        return self.last_observation

    def _wrist_pose(self) -> CameraPose:
        pos, quat = self.arm.tcp_pose()
        rot = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
        eye = pos + rot @ np.array([0.07, 0.0, -0.12])
        return CameraPose(eye=tuple(eye), target=tuple(pos + rot @ np.array([0.0, 0.0, 0.05])),
                          up=tuple(rot[:, 0]), fov_deg=70.0, near=0.01)

    def _gym_obs(self, obs: Observation) -> dict:
        out = {"rgb": obs.images["static"], "proprio": obs.proprio, "instruction": obs.instruction}
        if self.config.depth:
            out["depth"] = obs.depth["static"]
        if self.config.wrist_camera:
            out["wrist_rgb"] = obs.images["wrist"]
        return out

    def _info(self, success: bool) -> dict:
        return {"success": bool(success), "is_success": bool(success), "task": self.config.task,
                "variation": self.config.variation, "arm": self.arm_spec.name, "step": self._steps,
                "instruction": self.instance.instruction}


# `gymnasium.make("vla_steering/Arm-v0", config=EnvConfig(...))` for tools that expect registered ids.
if "vla_steering/Arm-v0" not in gym.registry:
    gym.register(id="vla_steering/Arm-v0", entry_point="sim.env:ArmEnv")
