"""`recorder`: records chosen topics to one MCAP file per run, for replaying and debugging episodes.

Subscriptions are raw (`raw=True`): the CDR bytes DDS delivers go to the file as they are, without a
deserialize/serialize round trip per image. A timer every half `flush_period_s` flushes, so a crash of
this process loses at most the last `flush_period_s` of data (see ros_nodes/mcap_io.py); SIGINT or
SIGTERM closes the file and renames it from `<path>.part` to `<path>`.

    python -m ros_nodes.recorder_node --ros-args -p path:=runs/recordings/ep.mcap \
        -p topics:="[camera/image_raw, gripper_command]" -p types:="[sensor_msgs/msg/Image, std_msgs/msg/Float64]"
"""

from __future__ import annotations

import sys
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from ros_nodes.mcap_io import McapRecorder, message_class, type_name
from ros_nodes.node_main import run_node

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Best effort matches both best-effort and reliable publishers: right for camera-rate streams.
SENSOR_TYPES = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                          "sensor_msgs/msg/PointCloud2"})
DEFAULT_TOPICS = {  # the policy loop's topics (runs/notes/issue5_spec.md); config/recorder.yaml lists more
    "camera/image_raw": "sensor_msgs/msg/Image",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "gripper_command": "std_msgs/msg/Float64",
    "ee_target": "geometry_msgs/msg/PoseStamped",
    "vla_policy/candidates": "visualization_msgs/msg/MarkerArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "instruction": "std_msgs/msg/String",
    "estop": "std_msgs/msg/Bool",
}
PARAMETERS: dict[str, tuple[object, str]] = {
    "path": ("", "output .mcap file; empty: runs/recordings/episode-<local time>.mcap (relative to the cwd)"),
    "topics": (list(DEFAULT_TOPICS), "topics to record (relative names follow namespace and remaps)"),
    "types": (list(DEFAULT_TOPICS.values()), "message type of each topic, same order, e.g. sensor_msgs/msg/Image"),
    "latched_topics": (["instruction", "sim_robot/instruction", "sim_robot/success"],
                       "topics (as written in `topics`) published transient-local, subscribed likewise"),
    "flush_period_s": (1.0, "a crash loses at most this many seconds of recording"),
}


def default_path() -> str:
    return time.strftime("runs/recordings/episode-%Y%m%d-%H%M%S.mcap")


def subscription_plan(topics: list[str], types: list[str], latched: list[str]) -> list[tuple[str, str, QoSProfile]]:
    """(topic, pkg/msg/Type, QoS) per recorded topic; raises ValueError naming what is wrong."""
    if len(topics) != len(types):
        raise ValueError(f"topics and types must have the same length, got {len(topics)} topics {topics} and "
                         f"{len(types)} types {types}")
    if not topics or not all(topics):
        raise ValueError(f"topics must be non-empty names, got {topics}")
    if len(set(topics)) != len(topics):
        raise ValueError(f"topics must not repeat, got {topics}")
    plan = []
    for topic, name in zip(topics, types):
        msg_type = type_name(message_class(name))  # normalises pkg/Type to pkg/msg/Type; ValueError if unknown
        qos = LATCHED if topic in latched else qos_profile_sensor_data if msg_type in SENSOR_TYPES else RELIABLE
        plan.append((topic, msg_type, qos))
    return plan


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        plan = subscription_plan(list(p["topics"]), list(p["types"]), list(p["latched_topics"]))
        self.recorder = McapRecorder(p["path"] or default_path(), flush_period_s=p["flush_period_s"])
        for topic, msg_type, qos in plan:
            resolved = self.resolve_topic_name(topic)  # namespaced and remapped: what a replay publishes on
            self.create_subscription(message_class(msg_type), topic,
                                     lambda data, t=resolved, m=msg_type: self._record(t, m, data), qos, raw=True)
        self.create_timer(self.recorder.flush_period_s / 2, self.recorder.flush_if_due)
        self.get_logger().info(f"recording {len(plan)} topics to {self.recorder.path} "
                               f"(flushed to {self.recorder.part_path} at least every {p['flush_period_s']} s)")

    def _record(self, topic: str, msg_type: str, data: bytes) -> None:
        try:
            self.recorder.write_serialized(topic, msg_type, data, self.get_clock().now().nanoseconds)
        except (OSError, ValueError) as e:  # e.g. a full disk: say so, keep the node (and what is on disk) alive
            self.get_logger().error(f"could not record {topic}: {e}", throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    def close(self) -> None:
        if self.recorder.closed:
            return
        self.recorder.close()
        text = f"wrote {self.recorder.message_count} messages to {self.recorder.path}"
        if self.context.ok():
            self.get_logger().info(text)
        else:  # after SIGINT the context is shut down and the logger could not reach /rosout
            print(f"[recorder] {text}", file=sys.stderr)


def main(args: list[str] | None = None) -> None:
    run_node(RecorderNode, "recorder", args, startup_errors=(ValueError, FileExistsError))


if __name__ == "__main__":
    main()
