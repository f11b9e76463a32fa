"""How often do a running graph's joint states and camera frames arrive, and how old are they on arrival?

    python benchmarks/diagnostics/ros_topic_rates.py --domain 96 [--seconds 25]

Joins the graph on ROS_DOMAIN_ID `--domain` (a soak's nodes run on their own, derived from its pid: read
it from a node's /proc/PID/environ) with localhost discovery, listens for `--seconds`, and prints the
message rate of `/joint_states` (one per physics tick of `sim_robot`) and `/camera/image_raw`, with each
message's age on arrival (header stamp -> here; for the camera that includes rendering, since a frame is
stamped when its render starts). Last stdout line: JSON `{topic: {"messages", "rate_hz",
"age_p50_ms", "age_p99_ms"}}`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", type=int, required=True, help="the graph's ROS_DOMAIN_ID")
    ap.add_argument("--seconds", type=float, default=25.0)
    args = ap.parse_args()
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    import rclpy
    from sensor_msgs.msg import Image, JointState

    rclpy.init()
    node = rclpy.create_node("topic_rates")
    seen: dict[str, list[tuple[float, float]]] = {"/joint_states": [], "/camera/image_raw": []}

    def recorder(topic: str):
        return lambda m: seen[topic].append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    node.create_subscription(JointState, "/joint_states", recorder("/joint_states"), 10)
    node.create_subscription(Image, "/camera/image_raw", recorder("/camera/image_raw"), 10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    out = {}
    for topic, rows in seen.items():
        if len(rows) < 3:
            raise SystemExit(f"{topic}: {len(rows)} messages in {args.seconds} s on domain {args.domain}; "
                             "is the graph running?")
        a = np.array(rows)  # (messages, [arrival s, stamp s])
        age = (a[:, 0] - a[:, 1]) * 1e3
        out[topic] = {"messages": len(rows), "rate_hz": round((len(rows) - 1) / (a[-1, 0] - a[0, 0]), 2),
                      "age_p50_ms": round(float(np.percentile(age, 50)), 1),
                      "age_p99_ms": round(float(np.percentile(age, 99)), 1)}
        print(f"{topic}: {out[topic]['rate_hz']} Hz, age on arrival p50 {out[topic]['age_p50_ms']} ms, "
              f"p99 {out[topic]['age_p99_ms']} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
