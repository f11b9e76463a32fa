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
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TOPICS = ("/joint_states", "/camera/image_raw")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", type=int, required=True, help="the graph's ROS_DOMAIN_ID")
    ap.add_argument("--seconds", type=float, default=25.0)
    args = ap.parse_args()
    os.environ.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    from sensor_msgs.msg import Image, JointState

    from ros_nodes.probe import Probe

    with Probe("topic_rates") as probe:
        for msg_type, topic in zip((JointState, Image), TOPICS):
            probe.subscribe(msg_type, topic)
        time.sleep(args.seconds)  # the measurement window itself, not a wait for discovery
        wall_offset = time.time() - time.monotonic()  # Probe stamps arrivals with time.monotonic()
        seen = {topic: (probe.arrivals(topic), probe.received(topic)) for topic in TOPICS}
    out = {}
    for topic, (arrivals, msgs) in seen.items():
        if len(msgs) < 3:
            raise SystemExit(f"{topic}: {len(msgs)} messages in {args.seconds} s on domain {args.domain}; "
                             "is the graph running?")
        arrived = np.array(arrivals)  # (messages,) monotonic s
        stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs])  # (messages,) wall s
        age = (arrived + wall_offset - stamps) * 1e3
        out[topic] = {"messages": len(msgs), "rate_hz": round((len(msgs) - 1) / (arrived[-1] - arrived[0]), 2),
                      "age_p50_ms": round(float(np.percentile(age, 50)), 1),
                      "age_p99_ms": round(float(np.percentile(age, 99)), 1)}
        print(f"{topic}: {out[topic]['rate_hz']} Hz, age on arrival p50 {out[topic]['age_p50_ms']} ms, "
              f"p99 {out[topic]['age_p99_ms']} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
