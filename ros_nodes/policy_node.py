"""`policy_node`: the steered VLA policy as a ROS 2 lifecycle node.

Models load in `on_configure`, control starts in `on_activate`, `on_deactivate` holds the measured pose and
`on_cleanup` frees the models. ROS callbacks (sensors, e-stop, services, the control timer) are all short
and run on a SingleThreadedExecutor; inference runs in its own thread, woken by an event when the chunk
executor needs a plan. Sensor callbacks only store the newest message, so a plan always starts from the
newest observation, and control pops one action per period (`ros_nodes.control_clock`), waiting for a plan
at most half a period. (rclpy's MultiThreadedExecutor with a callback group for inference was the first
design: its executor loop polled its futures on most of a core and held the GIL, slowing sampling many
times over and missing most control deadlines.)
A chunk planned from an observation taken at step s starts at step s, so the steps executed while it was
computed are skipped.

Latency (image stamp -> the first command planned from it): with `plan_ahead` a decision starts on a frame
that has just arrived, timed so that the median decision lands when its chunk takes over; with
`command_on_landing` the landing wakes the executor (a guard condition) and the first command leaves at
once, the control grid restarting from there. What is left is the camera's own latency, the decision, and
a few milliseconds of hand-over.

Safety (`ros_nodes.watchdog`, `ros_nodes.arm_commander`):
- nothing is commanded until `~/enable` (dry run: decisions, targets and candidates are still published);
- stale images or joint states hold the arm (one hold command, then none) until fresh data arrive. An
  image is stale when its stamp or its arrival is older than `image_timeout_s`, so a camera clock running
  ahead cannot keep the arm moving; stamps ahead of their arrival by more than `max_clock_skew_s`, or
  already stale on arrival, are counted (`<topic>_stamps_future` / `_past`) and reported;
- a frame (image, depth) or joint state stamped no later than the newest one kept is dropped and counted
  (`dropped_<topic>_out_of_order`) rather than rolling the observation back;
- the e-stop latches until `~/reset`, across every lifecycle transition: the e-stop topic is subscribed
  from start-up (reliable, both transient-local, so a node that starts late sees a latched pressed
  e-stop, and volatile), the latch lives as long as the node, and `~/reset` is refused while the e-stop
  still reads pressed;
- every joint command, holds included, is clamped to the model's limits and to `max_joint_step` from
  the last command; a hold after stale joint states stays at the last command instead of jumping back to
  the old measurement;
- joint states outside the model's limits by more than `joint_limit_margin`, or not finite, are dropped
  (`dropped_joint_limits`); frames over `max_image_bytes` are dropped (`dropped_<topic>_oversized`);
- a bad message is dropped with a diagnostic, never a crash; configure fails, naming the parameter and
  path, when a checkpoint folder the steering needs is missing.

Model paths (policy, verifier, value, export_dir, urdf) may be relative: they resolve with
`vla_runtime.paths.resolve_data_path` (working directory first, then the installed `share/vla_steering`),
so `policy_node --params-file <share>/config/policy_node.yaml` runs from any directory.

Camera QoS: images and depth are subscribed RELIABLE, KEEP_LAST depth 2 (`image_reliability`). Over best
effort with Fast DDS defaults a 640x480 frame is lost whenever one of its fragments is (the sender's
shared-memory segment is smaller than a frame), and most frames of a 30 Hz stream were lost on this host;
reliable delivery is what `tests/ros/test_safety_policy_node.py` holds to at least 90% of such a stream.
A camera that only publishes best effort is refused by a reliable subscription (reported as incompatible
QoS in the log and `incompatible_qos_<topic>`): set `image_reliability: best_effort` and give the
camera's own process a Fast DDS profile with a shared-memory `segment_size` above one frame. Each
image/depth callback counts `received_<topic>`.

Shutdown (`ros_nodes.node_main`): Ctrl-C / SIGTERM stop the spin; `destroy_node` joins the inference
thread before the rclpy context goes down.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import NamedTuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo as CameraInfoMsg
from sensor_msgs.msg import CompressedImage, Image, JointState, TimeReference
from std_msgs.msg import Bool, Float64, Float64MultiArray, Header, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from ros_nodes import convert
from ros_nodes.arm_commander import ArmCommander, CommanderConfig
from ros_nodes.control_clock import ControlClock
from ros_nodes.node_main import run_node
from ros_nodes.policy_params import PARAMS, check, missing_folders, parse_pose
from ros_nodes.safety_stage import INTERVENTIONS, SafetyConfig, SafetyStage
from ros_nodes.urdf import kinematic_urdf
from ros_nodes.watchdog import (
    ESTOP,
    FUTURE,
    OK,
    OUT_OF_ORDER,
    PAST,
    STALE_IMAGE,
    STALE_JOINTS,
    WAITING,
    Watchdog,
    WatchdogConfig,
    judge_stamp,
)
from verifiers.pipeline import DECISION_STAGES
from vla_runtime.execution import check_replan
from vla_runtime.paths import resolve_data_path

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
ESTOP_VOLATILE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # plain `Bool` publishers
CAMERA_DEPTH = 2  # frames queued per camera subscription: the newest is used, 2 rides out one slow callback
PLANNER_JOIN_S = 30.0  # a decision takes well under a second; a stuck one is reported, not waited for forever
WINDOW = 4096  # decisions kept for latency percentiles
# the pipeline's, then the node's own. image_to_command = plan_image_age (image stamp -> the planner taking
# it; of which image_arrival_age is the camera and transport's part, stamp -> arrival here) + the decision +
# landing_to_command (the plan landing -> its first command leaving)
STAGES = (*DECISION_STAGES, "act", "image_arrival_age", "plan_image_age", "landing_to_command", "image_to_command",
          "control_tick")
LATENCY_QUANTILE = 90  # plan ahead from this percentile of recent decision latencies
LATENCY_WINDOW = 20  # ... over this many decisions
FRAME_WINDOW = 16  # image arrivals kept to estimate the camera period
GIL_SWITCH_S = 0.001  # the inference thread's Python stretches hand the GIL to callbacks this often (default 5 ms)


def _descriptor(name: str) -> ParameterDescriptor:
    spec = PARAMS[name]
    text = spec.description + (" [live]" if spec.live else " [read on configure]")
    if spec.choices:
        text += f"; one of {list(spec.choices)}"
    d = ParameterDescriptor(description=text)
    if spec.low is not None and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high))]
    elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return d


class Sample(NamedTuple):
    value: object  # rgb (H, W, 3) uint8, depth (H, W) float32 m, or CameraInfo
    stamp: float  # header stamp, s on the node's clock (its arrival when unstamped)
    received: float  # arrival, s on the node's clock


class Joints(NamedTuple):
    q_arm: np.ndarray
    fingers: np.ndarray
    received: float
    stamp: float


def camera_qos(reliability: str) -> QoSProfile:
    """The image/depth subscription QoS (see the module docstring for the measurement behind it)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=CAMERA_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("vla_policy", **kwargs)
        for name, spec in PARAMS.items():
            self.declare_parameter(name, spec.default, _descriptor(name))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self._lock = threading.RLock()
        self._models = None  # (policy, SteeredPolicy) once configured
        self._commander: ArmCommander | None = None
        self._steering = None
        self._entities: list = []  # subscriptions, publishers, timers created on configure
        self._active = False
        self._enabled = bool(self.get_parameter("start_enabled").value)
        self._planner = None
        # One watchdog for the node's life: no lifecycle transition can clear a latched e-stop.
        self._watchdog = Watchdog(self._watchdog_config())
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._clear_state()
        # The e-stop is heard in every lifecycle state (subscribed before any configure), from latched
        # (transient local: a late-starting node gets a pressed e-stop at once) and plain publishers.
        # (A volatile publisher is refused by the latched subscription and heard by the other: no warning.)
        self.create_subscription(Bool, self._param("estop_topic"), self._on_estop, LATCHED,
                                 event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda info: None))
        self.create_subscription(Bool, self._param("estop_topic"), self._on_estop, ESTOP_VOLATILE,
                                 event_callbacks=self._qos_events("estop", "a best-effort e-stop cannot be heard"))
        # The robot model as robots publish it (latched): heard from start-up, used on configure when the
        # `urdf` parameter is empty.
        self._robot_description = ""
        self.create_subscription(String, self._param("robot_description_topic"), self._on_robot_description,
                                 LATCHED)

    # --- parameters --------------------------------------------------------------------------------
    def _param(self, name: str):
        return self.get_parameter(name).value

    def _validate_parameters(self, params) -> SetParametersResult:
        values = {name: self._param(name) for name in PARAMS}
        for p in params:
            values[p.name] = p.value
        for p in params:
            reason = check(p.name, p.value, values)
            if not reason and p.name == "replan_every" and self._models is not None:
                try:
                    check_replan(p.value, self._models[0].config.action_spec.chunk_length)
                except ValueError as e:
                    reason = str(e)
            if reason:
                self.get_logger().warning(f"rejected parameter: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        live = {p.name for p in params if p.name in PARAMS and PARAMS[p.name].live}
        if live and self._models is not None:
            self._pending_live = True  # applied by the next decision
        return SetParametersResult(successful=True)

    # --- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            missing = missing_folders({name: self._param(name) for name in PARAMS})
            if missing:
                raise FileNotFoundError("; ".join(missing))
            self._load_models()
        except (ValueError, OSError, RuntimeError, KeyError) as e:
            self.get_logger().error(f"configure failed: {e}")
            self._unload()
            return TransitionCallbackReturn.FAILURE
        self._create_io()
        self.get_logger().info(f"configured: policy {self._path('policy')}, steering {self._param('steering')} "
                               f"n={self._param('n')} m={self._param('m')}, backend {self._param('backend')}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._new_episode("activated", resync=True)
            self._active = True
            self._steps_clock.restart()
        self.get_logger().info(f"active ({'enabled' if self._enabled else 'dry run: call ~/enable to command'})")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
            self._hold("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_io()
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active = False
        self._destroy_io()
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop and join the inference thread first (while the rclpy context is still up), then free the
        rest: a thread left inside torch at interpreter exit aborts the process."""
        with self._lock:
            self._active = False
        self._destroy_io()
        self._unload()
        super().destroy_node()

    def _path(self, name: str) -> str:
        """A path parameter as the node reads it: relative ones via `resolve_data_path`; "" stays ""."""
        value = self._param(name)
        if name == "policy" and self._param("backend") == "remote":
            return value  # a served policy's URL
        return str(resolve_data_path(value)) if value else ""

    def _load_models(self) -> None:
        import torch

        from verifiers.steering import SteeringConfig, steered_pipeline
        from vla_runtime.execution import ChunkExecutor

        backend = self._param("backend")
        # onnx / tensorrt run their own threads; torch then only does pre/post-processing
        torch.set_num_threads(int(self._param("threads")) if backend == "torch" else 1)
        steering = SteeringConfig(method=self._param("steering"), n=self._param("n"), m=self._param("m"),
                                  verifier=self._path("verifier"), value=self._path("value"),
                                  selection=self._param("selection"), temperature=self._param("temperature"),
                                  safety=self._param("safety"), steps=int(self._param("steps")) or None)
        if steering.safety and not (self._param("use_depth") and self._param("camera_pose")):
            raise ValueError("safety needs use_depth:=true and camera_pose (the camera in the base frame)")
        steered = steered_pipeline(self._path("policy"), steering, backend,
                                   export_dir=self._path("export_dir") or None,
                                   threads=int(self._param("threads")), trt_cache=self._param("engine_cache"))
        policy = steered.policy
        spec = policy.config.action_spec
        rate = float(self._param("control_rate_hz"))
        if abs(rate - spec.control_hz) > 1e-6:
            self.get_logger().warning(f"control_rate_hz {rate} differs from the rate the policy was trained at "
                                      f"({spec.control_hz} Hz): its actions are per-step deltas")
        self._steering = steering
        self._scorers = {s.name: s for s in steered.scorers}
        self._camera_pose = parse_pose(self._param("camera_pose")) if self._param("camera_pose") else np.eye(4)
        self._models = (policy, steered)
        self._commander = ArmCommander(CommanderConfig(arm=self._param("arm"), urdf=self._robot_model(),
                                                       joint_limit_margin=self._param("joint_limit_margin")))
        limits = self._commander.joint_limits(self._param("max_joint_acceleration"))
        self._safety = SafetyStage(limits, SafetyConfig(
            period_s=1.0 / rate, velocity_scale=self._param("velocity_scale"),
            max_joint_step=self._param("max_joint_step"), ramp_s=self._param("blend_in_s"),
            jump_factor=self._param("jump_factor")))
        self._gripper_client = self._gripper_action_client() if self._param("gripper_interface") == "action" else None
        self._watchdog.config = self._watchdog_config()  # the same watchdog: its e-stop latch survives
        self._generator = torch.Generator().manual_seed(int(self._param("seed")))
        self._pending_live = False
        if self._param("instruction"):
            self._instruction = self._param("instruction").strip()
        self._warm_up(policy, steered)
        self._executor = ChunkExecutor(spec, self._executor_config())  # plans ahead by the warm-up's latency

    def _robot_model(self) -> str:
        """The URDF file IK and the joint limits read: the `urdf` parameter, else the robot description
        received on `robot_description_topic`, stripped to its kinematics (its meshes are `package://` URIs
        this process need not resolve) and written to a private file."""
        if self._param("urdf"):
            return self._path("urdf")
        if not self._robot_description:  # not heard yet: wait for it here (its own wait set, not the executor)
            from rclpy.wait_for_message import wait_for_message

            topic, timeout = self._param("robot_description_topic"), self._param("robot_description_timeout_s")
            ok, msg = wait_for_message(String, self, topic, qos_profile=LATCHED, time_to_wait=timeout)
            if ok:
                self._on_robot_description(msg)
        if not self._robot_description:
            raise ValueError(f"urdf is empty and no robot description arrived on "
                             f"{self._param('robot_description_topic')} within robot_description_timeout_s "
                             f"({self._param('robot_description_timeout_s')} s; a transient-local std_msgs/String): "
                             f"start robot_state_publisher or set urdf")
        import tempfile

        from vla_runtime.io import atomic_write_text

        folder = Path(tempfile.gettempdir()) / f"vla_policy_{os.getpid()}"
        folder.mkdir(exist_ok=True)
        path = folder / "robot_description.urdf"
        atomic_write_text(path, kinematic_urdf(self._robot_description))
        return str(path)

    def _gripper_action_client(self):
        """gripper_interface action: a control_msgs GripperCommand client (control_msgs comes with
        ros2_control on a workstation; it has no PyPI wheel)."""
        try:
            from control_msgs.action import GripperCommand
        except ImportError:
            raise ValueError("gripper_interface action needs control_msgs (apt install ros-jazzy-control-msgs); "
                             "use forward_command or position without it") from None
        from rclpy.action import ActionClient

        self._gripper_goal_type = GripperCommand
        return ActionClient(self, GripperCommand, self._param("gripper_action"))

    def _on_robot_description(self, msg: String) -> None:
        if not msg.data.strip():
            return self._drop("robot_description", "empty robot description")
        try:
            kinematic_urdf(msg.data)
        except ValueError as e:
            return self._drop("robot_description", str(e))
        with self._lock:
            self._robot_description = msg.data
        return None

    def _warm_up(self, policy, steered) -> None:
        """One decision on a blank observation: loads the language encoder and touches every kernel, so the
        first real decision after activation is as fast as the rest (cold, it loads the encoder: seconds)."""
        import torch

        from vla_runtime.types import CameraInfo, Observation

        h, w = policy.config.image_size
        cam = CameraInfo(width=w, height=h, fx=w, fy=w, cx=w / 2, cy=h / 2, pose_base_cam=self._camera_pose)
        obs = Observation(images={c: np.zeros((h, w, 3), np.uint8) for c in policy.config.cameras},
                          instruction=self._instruction or "warm up",
                          proprio=np.zeros(policy.config.proprio_dim, np.float32),
                          depth={"static": np.ones((h, w), np.float32)}, cameras={"static": cam})
        t0 = time.perf_counter()
        steered.act(obs, torch.Generator().manual_seed(0))
        t1 = time.perf_counter()
        steered.act(obs, torch.Generator().manual_seed(1))  # warm: what a decision costs from now on
        self._warm_up_ms = (time.perf_counter() - t1) * 1e3
        steered.reset()
        self.get_logger().info(f"warm-up decisions took {(t1 - t0) * 1e3:.0f} ms cold, {self._warm_up_ms:.0f} ms warm")

    def _executor_config(self):
        from vla_runtime.execution import ExecutorConfig

        return ExecutorConfig(replan_every=self._param("replan_every"), max_translation=self._param("max_translation"),
                              max_rotation=self._param("max_rotation"), lead_steps=self._lead_steps(),
                              blend_steps=self._param("blend_steps"))

    def _expected_latency(self, quantile: float = LATENCY_QUANTILE) -> float:
        """Seconds a decision is expected to take: this percentile of the recent ones (the warm-up's before
        any), plus the margin."""
        recent = list(getattr(self, "_timings", {}).get("act", ()))[-LATENCY_WINDOW:] or [self._warm_up_ms]
        return float(np.percentile(recent, quantile)) / 1e3 + self._param("plan_margin_s")

    def _lead_steps(self) -> int:
        """Plan ahead by the control periods a decision spans (0: plan at the replan point)."""
        if not self._param("plan_ahead"):
            return 0
        return int(np.ceil(self._expected_latency() * float(self._param("control_rate_hz")) - 1e-9))

    def _watchdog_config(self) -> WatchdogConfig:
        return WatchdogConfig(image_timeout_s=self._param("image_timeout_s"),
                              joint_state_timeout_s=self._param("joint_state_timeout_s"),
                              max_clock_skew_s=self._param("max_clock_skew_s"))

    def _unload(self) -> None:
        with self._lock:
            if getattr(self, "_commander", None) is not None:
                self._commander.close()
            self._commander = None
            self._models = None
            self._scorers = {}
            if getattr(self, "_gripper_client", None) is not None:
                self._gripper_client.destroy()
            self._gripper_client = None

    def _create_io(self) -> None:
        p = self._param
        self._frame_arrived = threading.Event()  # set by each new image: plan ahead starts on a fresh frame
        e = self._entities
        camera = camera_qos(p("image_reliability"))
        hint = f"this node subscribes {p('image_reliability')}, see image_reliability"
        if p("image_transport") == "compressed":
            e.append(self.create_subscription(CompressedImage, f"{p('image_topic')}/compressed", self._on_compressed,
                                              camera, event_callbacks=self._qos_events("image", hint)))
        else:
            e.append(self.create_subscription(Image, p("image_topic"), self._on_image, camera,
                                              event_callbacks=self._qos_events("image", hint)))
        if p("use_depth"):
            e.append(self.create_subscription(Image, p("depth_topic"), self._on_depth, camera,
                                              event_callbacks=self._qos_events("depth", hint)))
        e.append(self.create_subscription(CameraInfoMsg, p("camera_info_topic"), self._on_camera_info,
                                          qos_profile_sensor_data))
        e.append(self.create_subscription(JointState, p("joint_states_topic"), self._on_joints,
                                          qos_profile_sensor_data))
        e.append(self.create_subscription(String, p("instruction_topic"), self._on_instruction, LATCHED))
        # Every command output is a lifecycle publisher: nothing leaves it unless the node is active.
        lifecycle = self.create_lifecycle_publisher
        self._traj_pub = lifecycle(JointTrajectory, p("trajectory_topic"), 10)
        gripper = p("gripper_interface")
        self._gripper_pub = lifecycle(Float64, p("gripper_topic"), 10) if gripper == "position" else \
            lifecycle(Float64MultiArray, p("gripper_forward_topic"), 10) if gripper == "forward_command" else None
        self._pose_pub = lifecycle(PoseStamped, p("ee_target_topic"), 10)
        self._stamp_pub = lifecycle(TimeReference, p("command_stamps_topic"), 10)
        self._marker_pub = self.create_publisher(MarkerArray, "~/candidates", 1)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        e += [x for x in (self._traj_pub, self._gripper_pub, self._pose_pub, self._stamp_pub, self._marker_pub,
                          self._diag_pub) if x is not None]
        self._period = 1.0 / float(p("control_rate_hz"))
        self._steps_clock = dataclasses.replace(self._steps_clock, period_s=self._period)  # the counts carry on
        self._control_timer = self.create_timer(self._steps_clock.timer_period_s, self._on_control_tick)
        e.append(self._control_timer)
        # the inference thread wakes the executor with this when a plan lands (command_on_landing)
        self._landed = self.create_guard_condition(self._on_plan_landed)
        e.append(self._landed)
        e.append(self.create_timer(1.0, self._publish_diagnostics))
        self._plan_request = threading.Event()
        self._stop_planner = threading.Event()
        self._in_flight = False  # a new inference thread: a plan the old one dropped must not block it
        self._planner = threading.Thread(target=self._planner_loop, name="vla_policy_inference", daemon=True)
        self._planner.start()

    def _qos_events(self, kind: str, hint: str = "see image_reliability") -> SubscriptionEventCallbacks:
        """Report a publisher whose QoS a subscription refuses (a best-effort camera or e-stop against a
        reliable subscription): otherwise the node would wait for images, or miss an e-stop, in silence."""
        def incompatible(info) -> None:
            text = (f"a publisher on the {kind} topic offers a QoS this subscription refuses "
                    f"(policy id {info.last_policy_kind}): {hint}")
            with self._lock:
                self._incompatible[kind] = info.total_count
                self._last_warning = text
            self.get_logger().error(text, throttle_duration_sec=2.0)

        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    def _destroy_io(self) -> None:
        planner = self._planner
        if planner is not None:
            self._stop_planner.set()
            self._plan_request.set()
            self._frame_arrived.set()
            planner.join(timeout=PLANNER_JOIN_S)
            if planner.is_alive():
                self.get_logger().error(f"the inference thread did not stop within {PLANNER_JOIN_S} s")
            self._planner = None
        destroy = {"Subscription": self.destroy_subscription, "Publisher": self.destroy_publisher,
                   "LifecyclePublisher": self.destroy_lifecycle_publisher, "Timer": self.destroy_timer,
                   "GuardCondition": self.destroy_guard_condition}
        for entity in self._entities:
            destroy[type(entity).__name__](entity)
        self._entities.clear()

    # --- episode state -----------------------------------------------------------------------------
    def _clear_state(self) -> None:
        self._image = self._depth = self._camera = None  # newest Sample: rgb, depth, CameraInfo
        self._joints: Joints | None = None
        self._instruction = ""
        self._state, self._reason = WAITING, "not configured"
        self._epoch = 0  # bumps on every reset/hold: a plan started before is discarded
        self._in_flight = False
        self._chunk_image_stamp = None  # image stamp of the newest chunk until its first command
        self._landed_at = 0.0  # s, when the newest chunk landed
        self._command_image_stamp = None  # image stamp of the chunk being executed
        self._chunk_path = None  # chunk mode: (commands (K, J), safety states, targets, events) being run
        self._path_index = 0
        self._plan_start_at = 0.0  # plan ahead: when the inference thread should take its observation
        self._last_gripper = None  # gripper_interface action: the last goal sent
        self._interventions: Counter = Counter()
        self._last_command_at = -float("inf")  # s, when the last joint command left
        self._jumps: deque = deque(maxlen=WINDOW)  # m: executed translation change at each chunk switch
        self._episode_t0 = 0.0  # images stamped before this belong to the previous episode
        self._sync_after = 0.0  # joint states stamped before this may show a world since reset or moved
        self._steps_clock = ControlClock(1.0 / float(self._param("control_rate_hz")))  # when control steps run
        self._frames: deque = deque(maxlen=FRAME_WINDOW)  # image arrival times, s
        self._starved = 0
        self._dropped: Counter = Counter()
        self._received: Counter = Counter()  # image / depth callbacks
        self._skew: Counter = Counter()  # "<topic>_stamps_future" / "_past"
        self._incompatible: dict[str, int] = {}
        self._timings: dict[str, deque] = {s: deque(maxlen=WINDOW) for s in STAGES}
        self._picks: deque = deque(maxlen=WINDOW)
        self._spreads: deque = deque(maxlen=WINDOW)
        self._decisions = 0
        self._commands = 0
        self._last_warning = ""
        self._server_error = ""  # backend remote: why the last decision could not reach the server

    def _new_episode(self, why: str, resync: bool = False) -> None:
        """Forget chunks and the latched anchor; restart from the measured pose. The first plan waits for an
        image taken after this moment: an anchor policy latches its episode anchor from that frame, and a
        frame of the previous scene (a reset just happened) would misplace the whole episode. `resync`
        (`~/reset`, activation): the world may have been reset or moved meanwhile, see `_resync`; a new
        instruction alone continues from the commands in flight."""
        self._forget_plan()
        self._episode_t0 = self._now()
        if resync:
            self._resync()
        if self._models is not None:
            self._models[1].reset()
        self._chunk_image_stamp = None
        self.get_logger().info(f"new episode ({why})")

    def _resync(self) -> None:
        """Nothing commanded before this moment describes the arm any more (a simulator reset teleports it;
        a disabled arm may have been moved by hand): the next command, or hold, starts from a joint state
        stamped after now, not from the last command or an older measurement. (Before this, a soak's first
        command of an episode could start from the previous episode's final pose and swing the arm there.)"""
        self._sync_after = self._now()
        self._last_command_at = -float("inf")
        if self._models is not None:
            self._safety.state = None

    def _hold(self, why: str) -> None:
        """Stop: brake from the last command to rest at the acceleration limit (one trajectory); no chunk
        survives the hold. Without a command sent yet, hold at the measured joints when they are fresh."""
        self._forget_plan()
        if self._models is None:
            return
        if self._enabled:
            if self._safety.state is None:
                joints = self._joints
                if (joints is not None and joints.stamp >= self._sync_after
                        and self._now() - joints.received <= self._param("joint_state_timeout_s")):
                    self._safety.reset(joints.q_arm)
            if self._safety.state is not None:
                q, states = self._safety.brake_path()
                self._safety.state = states[-1]
                self._publish_trajectory(q, self._header(), stamped=False)
        self.get_logger().warning(f"holding: {why}")

    def _forget_plan(self) -> None:
        """No chunk survives (a plan in flight is discarded when it lands) and the next command restarts
        from the measured pose."""
        self._epoch += 1
        self._chunk_path = None
        if self._models is not None:
            self._executor.reset()
            self._commander.target = None

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self._param("frame_id"))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _drop(self, what: str, reason: str) -> None:
        with self._lock:
            self._dropped[what] += 1
            self._last_warning = f"dropped {what}: {reason}"
        self.get_logger().warning(self._last_warning, throttle_duration_sec=2.0)

    # --- sensor callbacks: validate, store the newest ----------------------------------------------------
    def _stamp(self, header: Header, received: float) -> float:
        s = convert.stamp_seconds(header.stamp)
        return s if s > 0 else received  # an unstamped message counts from its arrival

    def _judge(self, kind: str, stamp: float, received: float, newest: tuple[float, float] | None,
               timeout_s: float) -> bool:
        """False (dropped, counted) for a message older than the newest kept; counts clock skew."""
        verdict = judge_stamp(stamp, received, newest, timeout_s, self._param("max_clock_skew_s"))
        if verdict == OUT_OF_ORDER:
            self._drop(f"{kind}_out_of_order", f"stamp {stamp:.3f} is not newer than the newest kept "
                       f"({newest[0]:.3f})")
            return False
        if verdict in (FUTURE, PAST):
            with self._lock:
                self._skew[f"{kind}_stamps_{verdict}"] += 1
                self._last_warning = (f"{kind} stamped {stamp - received:+.3f} s from its arrival: clock skew? "
                                      f"(staleness is judged by arrival too)")
            self.get_logger().warning(self._last_warning, throttle_duration_sec=2.0)
        return True

    def _store(self, kind: str, msg, parse, frame: bool = True) -> None:
        """Keep the newest valid message of a kind as a Sample; drop a bad one with the reason. A camera
        `frame` (image, depth) is also counted, and dropped when oversized or not newer than the newest."""
        received = self._now()
        stamp = self._stamp(msg.header, received)
        if frame:
            with self._lock:
                self._received[kind] += 1
                newest = getattr(self, f"_{kind}")
            limit = self._param("max_image_bytes")
            if len(msg.data) > limit:
                what = f"{msg.width}x{msg.height} {msg.encoding}" if hasattr(msg, "encoding") else msg.format
                return self._drop(f"{kind}_oversized", f"{what} frame of {len(msg.data)} bytes > max_image_bytes "
                                  f"{limit}")
            if not self._judge(kind, stamp, received, newest and (newest.stamp, newest.received),
                               self._param("image_timeout_s")):
                return None
        try:
            value = parse(msg)
        except ValueError as e:
            return self._drop(kind, str(e))
        with self._lock:
            setattr(self, f"_{kind}", Sample(value, stamp, received))
            if kind == "image":
                self._frames.append(received)
                self._timings["image_arrival_age"].append((received - stamp) * 1e3)
                self._frame_arrived.set()
        return None

    def _on_image(self, msg: Image) -> None:
        self._store("image", msg, convert.image_to_rgb)

    def _on_compressed(self, msg: CompressedImage) -> None:
        budget = self._param("max_image_bytes") // 3  # the pixels a raw rgb8 frame within the byte limit holds
        self._store("image", msg, lambda m: convert.compressed_to_rgb(m, budget))

    def _on_depth(self, msg: Image) -> None:
        self._store("depth", msg, convert.image_to_depth)

    def _on_camera_info(self, msg: CameraInfoMsg) -> None:
        self._store("camera", msg, lambda m: convert.camera_info_from_msg(m, self._camera_pose), frame=False)

    def _on_joints(self, msg: JointState) -> None:
        commander = self._commander
        if commander is None:
            return
        received = self._now()
        try:
            q_arm = convert.joint_positions(msg, commander.arm_joints)
            # fingers may come in the same message or from a separate gripper driver (then: the last known)
            fingers = convert.joint_positions(msg, commander.finger_joints) \
                if set(commander.finger_joints) <= set(msg.name) else None
        except ValueError as e:
            return self._drop("joint_states", str(e))
        try:
            commander.check_joints(q_arm, fingers)
        except ValueError as e:
            return self._drop("joint_limits", str(e))
        stamp = self._stamp(msg.header, received)
        with self._lock:
            newest = self._joints
        if not self._judge("joint_states", stamp, received, newest and (newest.stamp, newest.received),
                           self._param("joint_state_timeout_s")):
            return None
        with self._lock:
            if fingers is None:
                fingers = self._joints.fingers if self._joints else np.full(len(commander.finger_joints), 0.04)
            self._joints = Joints(q_arm, fingers, received, stamp)
        return None

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        if not text:
            return self._drop("instruction", "empty instruction")
        with self._lock:
            if text != self._instruction:
                self._instruction = text
                self._new_episode(f"instruction {text!r}")

    def _on_estop(self, msg: Bool) -> None:
        """Latches in every lifecycle state, configured or not."""
        with self._lock:
            was = self._watchdog.estopped
            self._watchdog.estop(bool(msg.data))
            if self._watchdog.estopped and not was:
                self._state, self._reason = ESTOP, "e-stop engaged; call ~/reset to clear"
                if self._active:
                    self._hold("e-stop")  # a trajectory already sent (chunk mode) must not run on
                else:
                    self._forget_plan()
                self.get_logger().error("E-STOP: commands stopped until ~/reset")

    # --- services -------------------------------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            if request.data and not self._enabled:
                self._resync()
            self._enabled = bool(request.data)
            if self._models is not None:
                self._commander.target = None  # restart from the measured pose
        response.success = True
        response.message = "enabled: commanding the robot" if request.data else "disabled: dry run"
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        import torch

        with self._lock:
            refused = self._watchdog.reset()
            if refused:
                response.success, response.message = False, f"reset refused: {refused}"
                self.get_logger().warning(response.message)
                return response
            if self._state == ESTOP:
                self._state, self._reason = WAITING, "e-stop cleared"
            if self._models is None:
                response.success, response.message = True, "reset: e-stop cleared (not configured)"
                return response
            self._generator = torch.Generator().manual_seed(int(self._param("seed")))
            self._new_episode("~/reset", resync=True)
        response.success, response.message = True, "reset: e-stop cleared, new episode"
        return response

    # --- control (10 Hz; `ros_nodes.control_clock` says when a step runs) -----------------------------------
    def _on_control_tick(self) -> None:
        with self._lock:
            if not self._active or self._models is None:
                return
            now = self._now()
            due = self._steps_clock.on_timer(now, self._awaiting_plan())
            if due is not None:
                self._run_step(now, due)

    def _awaiting_plan(self) -> bool:
        """command_on_landing: the next step would run the old chunk past its takeover while the plan is in
        flight (the clock then waits for it, briefly)."""
        ex = self._executor
        return (bool(self._param("command_on_landing")) and self._in_flight and not ex.switching
                and ex.replan_step is not None and ex.step >= ex.replan_step)

    def _on_plan_landed(self) -> None:
        """A plan landed (the inference thread's guard condition): with command_on_landing its first command
        leaves now, unless its step is due much later."""
        with self._lock:
            if not (self._active and self._models is not None and self._executor.switching
                    and self._param("command_on_landing")):
                return
            now = self._now()
            due = self._steps_clock.on_landing(now)
            if due is not None:
                self._run_step(now, due)
                self._control_timer.reset()  # the timer keeps the restarted grid's phase

    def _run_step(self, now: float, due: float) -> None:
        t0 = time.perf_counter()
        due = self._steps_clock.run(now, due)
        self._control_step()
        self._steps_clock.finished(self._now(), due)
        self._timings["control_tick"].append((time.perf_counter() - t0) * 1e3)

    def _control_step(self) -> None:
        now = self._now()
        self._apply_live_parameters()
        joints, image = self._joints, self._image
        if image is not None and image.stamp < self._episode_t0:
            image = None
        if joints is not None and joints.stamp < self._sync_after:
            joints = None
        state, reason = self._watchdog.state(now, image and image.stamp, joints and joints.received,
                                             self._instruction, image_received=image and image.received)
        if state != self._state:
            if self._state == OK:
                self._hold(reason)
            elif state == OK:
                self.get_logger().info("inputs fresh: resuming")
            self._state, self._reason = state, reason
        if state != OK:
            return
        q_arm = joints.q_arm
        if self._commander.target is None:  # restart from the measured pose; the blend-in ramp starts again
            self._commander.sync(q_arm)
            if self._safety.state is not None and now - self._last_command_at <= 1.5 * self._period:
                # commands are flowing (a new episode or instruction mid-motion): continue from the last
                # command, not the lagging measurement, so the command stream never steps back
                self._safety.state = dataclasses.replace(self._safety.state, ticks=0)
            else:
                self._safety.reset(q_arm)
            self._chunk_path = None
        if self._executor.needs_plan and not self._in_flight:
            self._in_flight = True
            self._plan_start_at = self._plan_start_time()
            self._plan_request.set()
        if not self._executor.covers_step():
            self._starved += 1
            self._executor.idle()  # time passes: the arm holds at its last command
            return
        switching = self._executor.switching
        if switching:
            self._command_image_stamp = self._chunk_image_stamp
        action = self._executor.next_action()
        if switching and self._executor.boundary_jumps:
            self._jumps.append(self._executor.boundary_jumps[-1])
        header = self._header()
        gi = self._models[0].config.action_spec.gripper_index
        if not self._enabled:  # dry run: each preview starts from the measured pose; no command leaves
            self._commander.sync(q_arm)
            self._commander.step(action, q_arm, gi)
        elif self._param("output_mode") == "chunk":
            self._chunk_command(action, q_arm, gi, switching, header)
        else:
            q_raw, _, _ = self._commander.step(action, q_arm, gi)
            q_cmd = self._safety.command(q_raw)
            self._interventions.update(self._safety.last_events)
            if self._safety.last_events:  # no wind-up: the TCP target follows what the arm was commanded
                self._commander.anchor(q_cmd)
            self._publish_trajectory(q_cmd[None], header)
        target = self._commander.target
        self._pose_pub.publish(convert.pose_stamped(target.pos, target.quat, header))
        if self._enabled:
            self._publish_gripper(target.gripper)
            self._commands += 1
            if switching and self._command_image_stamp is not None:
                now = self._now()
                self._timings["image_to_command"].append((now - self._command_image_stamp) * 1e3)
                self._timings["landing_to_command"].append((now - self._landed_at) * 1e3)

    def _chunk_command(self, action: np.ndarray, q_arm: np.ndarray, gi: int, switching: bool,
                       header: Header) -> None:
        """output_mode chunk: on a new chunk (or when the path ran out), limit its whole remaining path and
        send it as one trajectory; every tick then commits the point being executed."""
        if switching or self._chunk_path is None or self._path_index >= len(self._chunk_path[0]):
            actions = np.vstack([action[None], self._executor.upcoming()])
            q_raw, targets = self._commander.path(actions, q_arm, gi)
            q_cmd, states, events = self._safety.limit_path(q_raw)
            self._chunk_path, self._path_index = (q_cmd, states, targets, events), 0
            self._publish_trajectory(q_cmd, header)
        q_cmd, states, targets, events = self._chunk_path
        i = self._path_index
        self._safety.state, self._commander.target = states[i], copy.deepcopy(targets[i])
        self._interventions.update(events[i])
        if events[i]:  # no wind-up (see stream mode); the rest of the path stands until the next chunk
            self._commander.anchor(q_cmd[i])
        self._path_index += 1

    def _publish_trajectory(self, q: np.ndarray, header: Header, stamped: bool = True) -> None:
        """Joint commands (K, J), one per control period from now, and (not for holds) the image time they
        were planned from."""
        self._traj_pub.publish(convert.joint_trajectory(self._commander.arm_joints, q, self._period, header))
        self._last_command_at = self._now()
        if stamped and self._command_image_stamp is not None:
            self._stamp_pub.publish(convert.time_reference(self._command_image_stamp, header, "image"))

    def _publish_gripper(self, opening: float) -> None:
        """opening 1 (open) .. 0 (closed) on the configured interface; finger positions span the model's
        finger limits (closed at the lower)."""
        kind = self._param("gripper_interface")
        if kind == "position":
            self._gripper_pub.publish(Float64(data=float(opening)))
            return
        lower, upper = self._commander.finger_lower, self._commander.finger_upper
        fingers = lower + float(opening) * (upper - lower)
        if kind == "forward_command":
            self._gripper_pub.publish(convert.finger_command(fingers))
        elif self._last_gripper is None or abs(opening - self._last_gripper) > 0.25:  # action: on change only
            self._last_gripper = float(opening)
            goal = self._gripper_goal_type.Goal()
            goal.command.position = float(fingers[0])
            goal.command.max_effort = float(self._param("gripper_max_effort"))
            self._gripper_client.send_goal_async(goal)

    def _plan_start_time(self) -> float:
        """When the inference thread should take its observation: now, or (plan ahead) the expected decision
        latency before the step at which the new chunk takes over. With command_on_landing a plan may land
        up to half a period off that step (`ControlClock`), so the median decision is aimed at it (the
        first frame of the camera period before this start is taken: half a frame interval early on
        average); without it a late plan costs a whole period, so a high percentile plus the margin."""
        takeover = self._executor.replan_step
        if not self._param("plan_ahead") or takeover is None:
            return 0.0
        due = self._steps_clock.due + (takeover - self._executor.step) * self._period
        if self._param("command_on_landing"):
            return due - self._expected_latency(50) + self._camera_period() / 2
        return due - self._expected_latency()

    def _apply_live_parameters(self) -> None:
        if not self._pending_live:
            return
        from verifiers.steering import SteeringConfig, build_steered

        self._pending_live = False
        cfg = SteeringConfig(method=self._steering.method, n=self._param("n"), m=self._param("m"),
                             verifier=self._steering.verifier, value=self._steering.value,
                             selection=self._param("selection"), temperature=self._param("temperature"),
                             safety=self._steering.safety)
        policy, old = self._models
        steered = build_steered(policy, cfg, scorers=self._scorers)
        steered.episode = old.episode  # keep the latched anchor
        self._models, self._steering = (policy, steered), cfg
        self._executor.configure(self._executor_config())
        self._watchdog.config = self._watchdog_config()
        text = self._param("instruction").strip()
        if text and text != self._instruction:
            self._instruction = text
            self._new_episode(f"instruction parameter {text!r}")
        self.get_logger().info(f"live parameters applied: n={cfg.n} m={cfg.m} selection={cfg.selection}")

    # --- inference (own thread) -------------------------------------------------------------------------
    def _planner_loop(self) -> None:
        while True:
            self._plan_request.wait()
            self._plan_request.clear()
            if self._stop_planner.is_set():
                return
            self._on_plan_request()

    def _camera_period(self) -> float:
        """The camera's frame interval (median of recent arrivals), at most one control period."""
        with self._lock:
            arrivals = np.asarray(self._frames)
        if len(arrivals) < 3:
            return self._period
        return float(min(max(np.median(np.diff(arrivals)), 1e-3), self._period))

    def _wait_for_start(self) -> bool:
        """Plan ahead: wait until a frame arrives within one camera period before the planned start (or
        until the start, without one), so the decision takes an image that is only its transport old rather
        than up to a frame interval more. False when stopped meanwhile."""
        window = self._camera_period()
        wait = self._plan_start_at - window - self._now()
        if wait > 0 and self._stop_planner.wait(min(wait, 1.0)):
            return False
        self._frame_arrived.clear()
        wait = self._plan_start_at - self._now()
        if wait > 0:
            self._frame_arrived.wait(min(wait, 1.0))
        return not self._stop_planner.is_set()

    def _on_plan_request(self) -> None:
        from vla_runtime.types import Observation

        if self._plan_start_at > 0 and not self._wait_for_start():
            with self._lock:  # stopped while waiting (cleanup): nothing is in flight any more
                self._in_flight = False
            return
        with self._lock:
            if self._models is None or self._state != OK or self._image is None or self._joints is None:
                self._in_flight = False
                return
            rgb, image_stamp = self._image.value, self._image.stamp
            image_age_ms = (self._now() - image_stamp) * 1e3
            q_arm, fingers = self._joints.q_arm, self._joints.fingers
            depth = {"static": self._depth.value} if self._depth is not None else {}
            cameras = {"static": self._camera.value} if self._camera is not None else {}
            proprio = self._commander.proprio(q_arm, fingers)
            obs = Observation(images={"static": rgb}, instruction=self._instruction, proprio=proprio,
                              depth=depth, cameras=cameras, stamp=image_stamp)
            start, epoch, steered, generator = self._executor.step, self._epoch, self._models[1], self._generator
        try:
            t0 = time.perf_counter()
            result = steered.act(obs, generator)
            act_ms = (time.perf_counter() - t0) * 1e3
        except ConnectionError as e:  # the policy server (backend remote) is gone: hold until it answers again
            with self._lock:
                self._in_flight = False
                if not self._server_error and epoch == self._epoch:
                    self._hold(f"policy server unavailable: {e}")
                self._server_error = str(e)
            self.get_logger().error(f"policy server unavailable: {e}", throttle_duration_sec=2.0)
            return
        except (ValueError, RuntimeError) as e:
            self._drop("observation", f"decision failed: {e}")
            with self._lock:
                self._in_flight = False
            return
        with self._lock:
            self._in_flight = False
            if self._server_error:
                self._server_error = ""
                self.get_logger().info("policy server answering again: resuming")
            if epoch != self._epoch:  # a reset or hold happened meanwhile: this plan is stale
                return
            self._executor.add_chunk(result.chunk, start=start)
            self._chunk_image_stamp = image_stamp
            self._landed_at = self._now()
            self._landed.trigger()
            self._timings["act"].append(act_ms)
            self._timings["plan_image_age"].append(image_age_ms)
            self._executor.configure(self._executor_config())  # the lead follows the measured latency
            self._decisions += 1
            for stage, ms in result.timings_ms.items():
                if stage in self._timings:
                    self._timings[stage].append(ms)
            self._picks.append(result.index)
            if result.scores:
                first = next(iter(result.scores.values()))
                finite = first[np.isfinite(first)]
                self._spreads.append(float(finite.max() - finite.min()) if len(finite) else 0.0)
            watched = self._commander.target is not None and self._marker_pub.get_subscription_count() > 0
            paths = np.stack([self._commander.chunk_path(c) for c in result.candidates]) if watched else None
        if paths is not None:  # candidate paths only when someone displays them
            scores = sum(result.scores.values()) if result.scores else np.zeros(len(result.candidates))
            self._marker_pub.publish(convert.candidate_markers(paths, np.asarray(scores), result.index,
                                                               self._header()))

    # --- diagnostics ------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        with self._lock:
            values = {"state": self._state, "reason": self._reason, "active": self._active,
                      "enabled": self._enabled, "decisions": self._decisions, "commands": self._commands,
                      "control_ticks": self._steps_clock.ticks, "deadline_misses": self._steps_clock.misses,
                      "control_rate_hz": f"{self._steps_clock.rate(self._now()):.2f}",
                      "starved_ticks": self._starved, "estops": self._watchdog.estop_count,
                      "steering": self._steering.method, "n": self._steering.n, "m": self._steering.m}
            for stage, xs in self._timings.items():
                if xs:
                    values[f"{stage}_p50_ms"] = f"{np.percentile(xs, 50):.2f}"
                    values[f"{stage}_p99_ms"] = f"{np.percentile(xs, 99):.2f}"
            if self._picks:
                picked = [i for i in self._picks if i >= 0]
                values["pick_mean_index"] = f"{np.mean(picked):.2f}" if picked else "-"
                # decisions in the window where every candidate was rejected and the mean of the samples ran
                values["steering_fallbacks"] = str(len(self._picks) - len(picked))
            if self._spreads:
                values["score_spread_mean"] = f"{np.mean(self._spreads):.3f}"
            for what, count in sorted(self._dropped.items()):
                values[f"dropped_{what}"] = count
            for what, count in sorted(self._received.items()):
                values[f"received_{what}"] = count
            values.update(sorted(self._skew.items()))
            values.update({f"incompatible_qos_{k}": n for k, n in sorted(self._incompatible.items())})
            values["estop_pressed"] = self._watchdog.pressed
            for kind in INTERVENTIONS:  # the safety stage's interventions, each counted
                values[f"safety_{kind}"] = self._interventions[kind]
            if self._jumps:
                values["max_boundary_jump_m"] = f"{max(self._jumps):.4f}"
            if self._models is not None:
                values["lead_steps"] = self._executor.config.lead_steps
            values["output_mode"] = self._param("output_mode")
            if self._state in (ESTOP, STALE_IMAGE, STALE_JOINTS):
                level, message = "ERROR", self._reason
            elif self._server_error:
                level, message = "ERROR", f"policy server unavailable: {self._server_error}"
            elif self._last_warning:
                level, message = "WARN", self._last_warning
                self._last_warning = ""
            else:
                level, message = "OK", self._reason
        self._diag_pub.publish(convert.diagnostic("vla_policy: control", level, message, values, self._header(),
                                                  hardware_id=self.get_fully_qualified_name()))


def _autostart(node: PolicyNode) -> None:
    if node.get_parameter("autostart").value:
        node.trigger_configure()  # waits for the robot description when `urdf` is empty
        if node._models is not None:
            node.trigger_activate()


def main(args=None) -> None:
    sys.setswitchinterval(GIL_SWITCH_S)
    run_node(PolicyNode, "vla_policy", args, on_start=_autostart)


if __name__ == "__main__":
    main()
