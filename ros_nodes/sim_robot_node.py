"""`sim_robot`: the PyBullet arm as a ROS robot, so the whole policy loop runs over DDS.

It publishes what a real cell would (camera image + depth + intrinsics, joint states, the arm's URDF on
`/robot_description`, latched) and takes what a real arm takes: a JointTrajectory for the arm and a
gripper command, either a `std_msgs/Float64` opening (1 open .. 0 closed) on `gripper_command` or
finger positions in metres (`std_msgs/Float64MultiArray`, a forward_command_controller's input) on
`gripper_controller/commands`. A trajectory of several points is followed in time: each point becomes
the arm's position target when its segment starts (at `time_from_start` minus one point spacing, counted
from the header stamp, or from arrival when the stamp is zero or past), so a one-point trajectory
(stream mode) acts at once, as the simulator loop does, and a chunk sent as one trajectory plays out at
the control rate; a new trajectory replaces the rest of the old one, as joint_trajectory_controller does.
Physics keeps to the wall clock: each physics tick runs the 1/240 s substeps due since the last one, so a
tick delayed by rendering (the executor is single-threaded) does not slow the world, and a slow policy
sees it move on without it, as on hardware. Episode plumbing a real robot lacks is kept on the node's
private names: `~/reset` rebuilds the world and `~/instruction` / `~/success` say what the episode asks
and when it is done.

    python -m ros_nodes.sim_robot_node --ros-args -p task:=pick_lift -p image_size:=[64,64]
"""

from __future__ import annotations

import math
import os

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros_nodes import convert
from ros_nodes.node_main import run_node
from sim.env import PHYSICS_HZ, ArmEnv, EnvConfig

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# name -> (default, description). Changes are validated on set and take effect at the next ~/reset.
PARAMETERS: dict[str, tuple[object, str]] = {
    "task": ("pick_lift", "task to build (pick_lift, place_in, push_to, stack); applied on ~/reset"),
    "variation": ("id", "scene variation id (see sim/variations.py); applied on ~/reset"),
    "seed": (0, "episode seed: the same task/variation/seed rebuilds the same world; applied on ~/reset"),
    "arm": ("panda", "arm model (panda, kuka, xarm); applied on ~/reset"),
    "image_size": ([64, 64], "camera image [height, width] in pixels, 16..1024 each; applied on ~/reset"),
    "depth": (True, "also publish camera/depth (32FC1 metres); applied on ~/reset"),
    "camera_hz": (30.0, "camera publishing rate in Hz (0 < hz <= physics_hz); applied on ~/reset"),
    "physics_hz": (60.0, f"physics timer rate in Hz (each tick runs the substeps due on the wall clock); "
                          f"{PHYSICS_HZ} must be divisible by it; applied on ~/reset"),
    "frame_id": ("panda_link0", "robot base frame id, stamped on joint_states"),
    "camera_frame_id": ("camera_optical", "optical frame id stamped on the camera topics"),
}


def env_config(values: dict) -> EnvConfig:
    """Parameter values -> EnvConfig; raises ValueError naming the bad value (EnvConfig checks the rest)."""
    size = list(values["image_size"])
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"image_size must be two positive integers [height, width], got {size}")
    if values["seed"] < 0:
        raise ValueError(f"seed must be >= 0, got {values['seed']}")
    return EnvConfig(task=values["task"], variation=values["variation"], arm=values["arm"],
                     image_size=(size[0], size[1]), depth=values["depth"], wrist_camera=False)


MAX_CATCH_UP_S = 0.1  # physics one late tick may catch up; a longer stall is dropped (the world pauses)
MAX_CATCH_UP_SUBSTEPS = round(MAX_CATCH_UP_S * PHYSICS_HZ)


def substeps_due(elapsed_s: float, accounted: int, max_substeps: int) -> tuple[int, int]:
    """(substeps to run now, substeps to drop) so that physics stays at `elapsed_s` of wall time since
    the reset, given the substeps `accounted` for so far (run or dropped) and the most one tick may run."""
    due = math.floor(elapsed_s * PHYSICS_HZ + 1e-9) - accounted
    run = min(max(due, 0), max_substeps)
    return run, max(due - run, 0)


def check_rates(physics_hz: float, camera_hz: float) -> None:
    if not (math.isfinite(physics_hz) and physics_hz > 0) or abs(PHYSICS_HZ / physics_hz - round(
            PHYSICS_HZ / physics_hz)) > 1e-9:
        raise ValueError(f"physics_hz must divide {PHYSICS_HZ} (e.g. 60, 120, 240), got {physics_hz}")
    if not (math.isfinite(camera_hz) and 0 < camera_hz <= physics_hz):
        raise ValueError(f"camera_hz must be in (0, physics_hz={physics_hz}], got {camera_hz}")


class SimRobotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_robot", **kwargs)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        self.env: ArmEnv | None = None
        self._timers: list = []
        self._q_target = np.zeros(0)
        self._gripper = 1.0
        self._succeeded = False
        self._names: list[str] = []
        self._arm_names: list[str] = []

        self.image_pub = self.create_publisher(Image, "camera/image_raw", 2)
        self.depth_pub = self.create_publisher(Image, "camera/depth", 2)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", 2)
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.instruction_pub = self.create_publisher(String, "~/instruction", LATCHED)
        self.success_pub = self.create_publisher(Bool, "~/success", LATCHED)
        self.description_pub = self.create_publisher(String, "/robot_description", LATCHED)
        self.create_subscription(JointTrajectory, "joint_trajectory", self._on_trajectory, 10)
        self.create_subscription(Float64, "gripper_command", self._on_gripper, 10)
        self.create_subscription(Float64MultiArray, "gripper_controller/commands", self._on_fingers, 10)
        self._trajectory: tuple[np.ndarray, np.ndarray] | None = None  # (segment start times s, targets (T, J))
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.reset_world()  # raises on a start-up configuration that cannot be built

    # --- parameters ------------------------------------------------------------------
    def _values(self) -> dict:
        return {n: (self.get_parameter(n).value if self.has_parameter(n) else d)
                for n, (d, _) in PARAMETERS.items()}

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject a change that the next reset could not build, with the reason (also called per parameter
        while declaring, so a bad `--ros-args -p` stops start-up)."""
        values = self._values()
        values.update({p.name: p.value for p in params})
        try:
            env_config(values)
            check_rates(values["physics_hz"], values["camera_hz"])
            for key in ("frame_id", "camera_frame_id"):
                if not values[key]:
                    raise ValueError(f"{key} must not be empty")
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    # --- episode ---------------------------------------------------------------------
    def reset_world(self) -> str:
        """Rebuild the world from the current parameters; the arm holds its home pose until commanded."""
        values = self._values()
        config = env_config(values)
        if self.env is None or self.env.config != config:
            if self.env is not None:
                self.env.close()
                self.env = None
            self.env = ArmEnv(config)
        self.env.reset(seed=int(values["seed"]))
        self._arm_names, fingers = self.env.joint_names()
        self._names = self._arm_names + fingers
        self._q_target = self.env.arm.home_q.copy()
        self._trajectory = None
        self._gripper = 1.0
        self._publish_description()
        self._succeeded = False
        for timer in self._timers:
            self.destroy_timer(timer)
        physics_hz = values["physics_hz"]
        self._physics_t0, self._substeps_accounted = self._now(), 0
        self._timers = [self.create_timer(1.0 / physics_hz, self._on_physics),
                        self.create_timer(1.0 / values["camera_hz"], self._on_camera)]
        instruction = self.env.instance.instruction
        self.instruction_pub.publish(String(data=instruction))
        self.success_pub.publish(Bool(data=False))
        self.get_logger().info(f"reset: {config.task}/{config.variation} seed {values['seed']}: {instruction!r}")
        return instruction

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message = self.reset_world()
            response.success = True
        except ValueError as e:  # a parameter combination only the build rejects; the old world stays
            response.success, response.message = False, str(e)
        return response

    # --- timers ----------------------------------------------------------------------
    def _header(self, frame_id: str) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=frame_id)

    def _publish_description(self) -> None:
        """The arm's URDF, as robot_state_publisher would latch it (SDF models have no URDF to publish)."""
        import pybullet_data

        model = self.env.arm_spec.model
        if model.endswith(".urdf"):
            path = model if os.path.isabs(model) else os.path.join(pybullet_data.getDataPath(), model)
            with open(path) as f:
                self.description_pub.publish(String(data=f.read()))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_physics(self) -> None:
        now = self._now()
        if self._trajectory is not None:
            starts, q = self._trajectory
            k = int(np.searchsorted(starts, now, side="right")) - 1
            if k >= 0 and not np.array_equal(q[k], self._q_target):
                self._q_target = q[k]
                self.env.command_joints(self._q_target, self._gripper)
        run, dropped = substeps_due(now - self._physics_t0, self._substeps_accounted, MAX_CATCH_UP_SUBSTEPS)
        self._substeps_accounted += run + dropped
        if dropped:
            self.get_logger().warning(f"physics stalled: {dropped / PHYSICS_HZ * 1e3:.0f} ms of wall time not "
                                      "simulated", throttle_duration_sec=5.0)
        success = self.env.advance(run) if run else False
        names, q = self.env.joint_state()
        self.joint_pub.publish(convert.joint_state(names, q, self._header(self.get_parameter("frame_id").value)))
        if success and not self._succeeded:
            self._succeeded = True
            self.success_pub.publish(Bool(data=True))
            self.get_logger().info("success")

    def _on_camera(self) -> None:
        header = self._header(self.get_parameter("camera_frame_id").value)  # the instant the frame shows
        obs = self.env.observe()
        self.image_pub.publish(convert.rgb_to_image(obs.images["static"], header))
        if "static" in obs.depth:
            self.depth_pub.publish(convert.depth_to_image(obs.depth["static"], header))
        self.info_pub.publish(convert.camera_info_to_msg(obs.cameras["static"], header))

    # --- commands --------------------------------------------------------------------
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        """Follow the points in time (see the module docstring); the first one acts at once when due."""
        try:
            unknown = [n for n in msg.joint_names if n not in self._names]
            if unknown:
                raise ValueError(f"JointTrajectory names joints this robot lacks: {unknown}")
            times, q = convert.trajectory_targets(msg, self._arm_names)
        except ValueError as e:
            self.get_logger().warning(f"dropped joint_trajectory: {e}", throttle_duration_sec=1.0)
            return
        now = self._now()
        stamp = convert.stamp_seconds(msg.header.stamp)
        t0 = stamp if stamp > now else now
        spacing = np.diff(np.concatenate([[0.0], times]))
        self._trajectory = (t0 + times - spacing, q)
        if times[0] - spacing[0] <= 0 and t0 <= now:  # the first point's segment starts now
            self._q_target = q[0]
            self.env.command_joints(self._q_target, self._gripper)

    def _on_fingers(self, msg: Float64MultiArray) -> None:
        """Finger positions (m) -> the opening command the simulated gripper takes (mean over its fingers)."""
        spec = self.env.arm_spec.gripper
        fingers = np.asarray(msg.data, dtype=np.float64)
        if fingers.shape != (len(spec.joints),) or not np.all(np.isfinite(fingers)):
            self.get_logger().warning(f"dropped gripper_controller/commands {list(msg.data)}: expected "
                                      f"{len(spec.joints)} finite finger positions", throttle_duration_sec=1.0)
            return
        closed, opened = np.asarray(spec.closed), np.asarray(spec.opened)
        self._gripper = float(np.clip(np.mean((fingers - closed) / (opened - closed)), 0.0, 1.0))
        self.env.command_joints(self._q_target, self._gripper)

    def _on_gripper(self, msg: Float64) -> None:
        if not math.isfinite(msg.data):
            self.get_logger().warning(f"dropped gripper_command {msg.data}", throttle_duration_sec=1.0)
            return
        self._gripper = float(np.clip(msg.data, 0.0, 1.0))
        self.env.command_joints(self._q_target, self._gripper)

    def destroy_node(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(SimRobotNode, "sim_robot", args, startup_errors=(InvalidParameterValueException, ValueError))


if __name__ == "__main__":
    main()
