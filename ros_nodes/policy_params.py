"""The policy node's parameters: defaults, descriptions, ranges and validation (pure Python).

One table serves the node (declaration with descriptors, on-set validation) and the unit tests. Parameters
marked `live` take effect on the next decision; the rest are read in `on_configure` (change them, then
cleanup + configure again). Relative model paths resolve with `vla_runtime.paths.resolve_data_path` (the
working directory first, then the installed `share/vla_steering`), so the node runs from any directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from verifiers.steering import LEARNED_SCORERS, METHODS
from vla_runtime.backends import BACKENDS
from vla_runtime.paths import resolve_data_path

STEERING = METHODS  # none | mean (of n samples) | robomonkey | vgps | both
SELECTION = ("argmax", "softmax")
OUTPUT_MODES = ("stream", "chunk")
GRIPPER_INTERFACES = ("position", "forward_command", "action")
IMAGE_TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class Param:
    default: object
    description: str
    live: bool = False
    low: float | None = None  # inclusive numeric range
    high: float | None = None
    choices: tuple[str, ...] = ()


PARAMS: dict[str, Param] = {
    "policy": Param("models/policy", "policy checkpoint folder (relative: working directory, then the package share), "
                                     "or with backend remote the ws://HOST:PORT URL of `vla serve`"),
    "verifier": Param("models/verifier", "action verifier checkpoint folder (steering robomonkey / both)"),
    "value": Param("models/value", "V-GPS value function checkpoint folder (steering vgps / both)"),
    "backend": Param("torch", "inference backend (onnx / tensorrt export the checkpoints on first use)",
                     choices=BACKENDS),
    "export_dir": Param("", "onnx / tensorrt: a `vla export onnx` folder; empty = export the checkpoints on first "
                            "use (into runs/onnx)"),
    "engine_cache": Param("runs/tensorrt", "tensorrt: where engines are built and reused (an output: relative to the "
                                           "working directory unless it exists in the package share)"),
    "steering": Param("robomonkey", "test-time steering method", choices=STEERING),
    "n": Param(16, "policy samples per decision", live=True, low=1, high=256),
    "m": Param(16, "candidates scored per decision", live=True, low=1, high=256),
    "steps": Param(0, "DDIM steps of the policy's samples; 0 = the policy's own (fewer: cheaper, worse candidates)",
                   low=0, high=1000),
    "selection": Param("argmax", "how the scored candidate is picked", live=True, choices=SELECTION),
    "temperature": Param(1.0, "softmax selection temperature", live=True, low=1e-3, high=1e3),
    "safety": Param(False, "add the geometric safety scorer (needs depth and camera_pose)"),
    "camera_pose": Param("", "camera optical frame in the base frame, 'x y z qx qy qz qw' (safety scorer only)"),
    "control_rate_hz": Param(10.0, "command rate; the policy was trained at its action spec's rate", low=1.0,
                             high=100.0),
    "replan_every": Param(4, "steps executed from a chunk before the next decision is due", live=True, low=1,
                          high=64),
    "image_timeout_s": Param(0.5, "hold when the newest image is older than this", live=True, low=0.01, high=60.0),
    "joint_state_timeout_s": Param(0.5, "hold when the newest joint state is older than this", live=True,
                                   low=0.01, high=60.0),
    "max_clock_skew_s": Param(0.1, "a sensor stamp further ahead of its arrival than this is reported as clock "
                                   "skew (staleness is judged by arrival too)", live=True, low=0.001, high=60.0),
    "joint_limit_margin": Param(0.1, "joint states outside the model's limits by more than this (rad) are dropped",
                                low=0.0, high=3.2),
    "max_image_bytes": Param(3 << 20, "camera/depth frames larger than this are dropped and counted (3 MiB holds "
                                      "1280x720 rgb8)", live=True, low=1, high=1 << 30),
    "max_translation": Param(0.055, "end-effector translation limit per step (m)", live=True, low=1e-4, high=0.5),
    "max_rotation": Param(0.3, "end-effector rotation limit per step and axis (rad)", live=True, low=1e-3,
                          high=3.2),
    "max_joint_step": Param(0.15, "joint motion limit per control period (rad), a cap below the URDF velocity "
                                  "limits", low=1e-3, high=3.2),
    "velocity_scale": Param(1.0, "fraction of the URDF joint velocity limits commands may use", low=0.01, high=1.0),
    "max_joint_acceleration": Param(10.0, "joint acceleration limit (rad/s^2; URDF states none)", low=0.1,
                                    high=1000.0),
    "blend_in_s": Param(0.5, "after enable, reset or a hold the velocity limit ramps up from 0 over this", low=0.0,
                        high=10.0),
    "jump_factor": Param(4.0, "a joint target more than this many full-speed periods away is a violation: hold",
                         low=1.0, high=100.0),
    "output_mode": Param("stream", "stream: one trajectory point per tick; chunk: the planned chunk as one "
                                   "JointTrajectory (positions only, a point per control period)",
                         choices=OUTPUT_MODES),
    "gripper_interface": Param("position", "position: std_msgs/Float64 opening 1..0 on gripper_topic; "
                                           "forward_command: Float64MultiArray finger positions (m) on "
                                           "gripper_forward_topic; action: control_msgs GripperCommand",
                               choices=GRIPPER_INTERFACES),
    "gripper_max_effort": Param(20.0, "GripperCommand max_effort (N), gripper_interface action", low=0.0,
                                high=1000.0),
    "plan_ahead": Param(True, "start each decision so it lands when the queue reaches the replan point, from the "
                              "measured decision latency, on a frame that has just arrived", live=True),
    "command_on_landing": Param(True, "a new chunk's first command leaves as its plan lands (at least half a period "
                                      "after the previous command) and the control ticks follow on from there; "
                                      "false: at the next tick", live=True),
    "plan_margin_s": Param(0.01, "plan ahead: spare time between a decision's expected end and its takeover tick",
                           live=True, low=0.0, high=1.0),
    "blend_steps": Param(2, "continuity: steps over which a new chunk is cross-faded from the committed one "
                            "(0: switch at once)", live=True, low=0, high=64),
    "instruction": Param("", "the task instruction (the instruction topic overrides it)", live=True),
    "urdf": Param("", "robot model (URDF file) for IK and joint limits; empty = read robot_description_topic"),
    "robot_description_timeout_s": Param(10.0, "configure waits this long for robot_description_topic when urdf "
                                               "is empty and nothing arrived yet", low=0.0, high=600.0),
    "arm": Param("panda", "joint layout, TCP and gripper of the arm (sim.arms)", choices=("panda", "kuka", "xarm")),
    "frame_id": Param("panda_link0", "robot base frame of published poses and markers"),
    "seed": Param(0, "seed of the sampling generator (re-seeded on ~/reset)", low=0, high=2**31 - 1),
    "threads": Param(1, "torch intra-op threads", low=1, high=64),
    "use_depth": Param(False, "subscribe to the depth image"),
    "autostart": Param(False, "configure and activate at start-up"),
    "start_enabled": Param(False, "command the robot from activation on (false: dry run until ~/enable)"),
    "image_reliability": Param("reliable", "QoS reliability of the image and depth subscriptions (depth 2); "
                                           "best effort loses most large frames over Fast DDS defaults",
                               choices=("reliable", "best_effort")),
    "image_transport": Param("raw", "raw: sensor_msgs/Image on image_topic; compressed: CompressedImage (jpeg/png) "
                                    "on <image_topic>/compressed", choices=IMAGE_TRANSPORTS),
    "image_topic": Param("camera/image_raw", "rgb8/bgr8/rgba8/bgra8 camera image"),
    "depth_topic": Param("camera/depth", "32FC1/16UC1 depth image"),
    "camera_info_topic": Param("camera/camera_info", "camera intrinsics"),
    "joint_states_topic": Param("joint_states", "measured joint positions"),
    "instruction_topic": Param("instruction", "instruction (std_msgs/String, transient local)"),
    "estop_topic": Param("estop", "e-stop (std_msgs/Bool, reliable; transient-local publishers are heard by a node "
                                  "that starts late); subscribed at start-up; latched until ~/reset"),
    "trajectory_topic": Param("joint_trajectory", "joint targets for joint_trajectory_controller"),
    "gripper_topic": Param("gripper_command", "gripper command (std_msgs/Float64: 1 open, 0 closed)"),
    "gripper_forward_topic": Param("gripper_controller/commands", "forward_command_controller command topic"),
    "gripper_action": Param("gripper_controller/gripper_cmd", "GripperCommand action (gripper_interface action)"),
    "robot_description_topic": Param("/robot_description", "robot model (std_msgs/String URDF, transient local)"),
    "command_stamps_topic": Param("~/command_stamps", "sensor_msgs/TimeReference per command: time_ref is the "
                                                      "stamp of the image it was planned from"),
    "ee_target_topic": Param("ee_target", "commanded end-effector pose"),
}


def check(name: str, value, values: dict) -> str | None:
    """None when `value` is acceptable for `name` given the other current `values`; else the reason."""
    if name not in PARAMS:
        return f"unknown parameter {name!r}"
    spec = PARAMS[name]
    default = spec.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"{name} must be a {type(default).__name__}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return f"{name} must be finite, got {value}"
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            return f"{name} must lie within [{spec.low}, {spec.high}], got {value}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {list(spec.choices)}, got {value!r}"
    if (name == "policy" or (name == "export_dir" and value)) and not resolve_data_path(value).is_dir():
        return f"{name} checkpoint folder {value!r} does not exist"
    if name == "urdf" and value and not resolve_data_path(value).is_file():
        return f"urdf {value!r} is not a file"
    if name == "camera_pose" and value:
        try:
            parse_pose(value)
        except ValueError as e:
            return str(e)
    steering, n, m = (value if k == name else values.get(k, PARAMS[k].default) for k in ("steering", "n", "m"))
    if name in ("steering", "n", "m") and steering == "vgps" and m > n:
        return f"vgps ranks the policy's own samples: m={m} must be <= n={n}"
    if name.endswith("_topic") and not value:
        return f"{name} must not be empty"
    return None


def needed_folders(values: dict) -> dict[str, Path]:
    """Parameter -> resolved checkpoint folder, for the folders the chosen steering and backend read: an
    onnx / tensorrt `export_dir` holds the policy and its scorers; otherwise `policy` and the learned
    scorers of the steering method (robomonkey: verifier, vgps: value, both: both)."""
    if values.get("backend", "torch") not in ("torch", "remote") and values.get("export_dir"):
        names = ["export_dir"]
    elif values.get("backend") == "remote":  # the policy is a server's URL; only scorer folders are local
        names = list(LEARNED_SCORERS[values["steering"]])
    else:
        names = ["policy", *LEARNED_SCORERS[values["steering"]]]
    return {name: resolve_data_path(values[name]) for name in names}


def missing_folders(values: dict) -> list[str]:
    """One reason per checkpoint folder the configuration needs that does not exist (names the parameter
    and the path as given and as resolved)."""
    return [f"{name} checkpoint folder {values[name]!r} does not exist (looked at {str(path)!r})"
            for name, path in needed_folders(values).items() if not path.is_dir()]


def defaults() -> dict:
    return {k: p.default for k, p in PARAMS.items()}


def parse_pose(text: str):
    """'x y z qx qy qz qw' -> (4, 4) float64 transform."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    try:
        v = np.array([float(t) for t in text.replace(",", " ").split()])
    except ValueError:
        v = np.array([])
    if v.shape != (7,) or not np.all(np.isfinite(v)) or abs(np.linalg.norm(v[3:]) - 1) > 1e-3:
        raise ValueError(f"camera_pose must be 7 finite numbers 'x y z qx qy qz qw' with a unit quaternion, "
                         f"got {text!r}")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(v[3:]).as_matrix()
    pose[:3, 3] = v[:3]
    return pose
