"""`recorder` as a real process over DDS: what is published lands in the MCAP file, flushed while running
and finished (indexed, renamed from .part) on SIGINT.

The node runs on its own ROS domain (localhost discovery only); every wait is a deadline on a condition.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed (the `ros` extra)")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed (the `ros` extra)")

from mcap_ros2.reader import read_ros2_messages
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, Header, String

from ros_nodes import convert
from ros_nodes.launcher import isolated_ros_env
from ros_nodes.mcap_io import iter_records
from ros_nodes.probe import Probe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = int(isolated_ros_env()["ROS_DOMAIN_ID"])  # this run's own (pid-derived): concurrent runs never mix
ROS_ENV = {"ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_published_messages_are_recorded_and_the_file_is_finished_on_sigint(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ROS_ENV.items():
        monkeypatch.setenv(k, v)  # read by rcl when the contexts (the node's and ours) initialise
    path, log = tmp_path / "rec" / "episode.mcap", tmp_path / "recorder.log"
    part = path.with_name("episode.mcap.part")
    proc = None
    with Probe("recorder_probe") as probe:
        image_pub = probe.publisher(Image, "camera/image_raw", 5)
        gripper_pub = probe.publisher(Float64, "gripper", 10)
        instruction_pub = probe.publisher(String, "instruction", LATCHED)
        instruction_pub.publish(String(data="pick up the green cube"))  # before the recorder exists: latched
        try:
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ros_nodes.recorder_node", "--ros-args", "-p", f"path:={path}",
                     "-p", "topics:=[camera/image_raw, gripper_command, instruction]",
                     "-p", "types:=[sensor_msgs/msg/Image, std_msgs/Float64, std_msgs/msg/String]",
                     "-r", "gripper_command:=gripper"],
                    cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))

            def wait(predicate, what: str, repeat=None) -> None:
                try:
                    probe.wait_for(predicate, 15.0, what, repeat=repeat, every=0.2,
                                   alive=lambda: proc.poll() is None)
                except (TimeoutError, RuntimeError) as e:
                    pytest.fail(f"{e} (recorder exit code {proc.poll()}); log:\n{log.read_text()[-3000:]}")

            for pub in (image_pub, gripper_pub, instruction_pub):
                wait(lambda p=pub: p.get_subscription_count() > 0, f"the recorder to subscribe {pub.topic_name}")
            rgb = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
            for i in range(3):
                gripper_pub.publish(Float64(data=float(i)))

            def part_topics() -> dict[str, int]:
                counts: dict[str, int] = {}
                for r in iter_records(part) if part.exists() else []:
                    counts[r.topic] = counts.get(r.topic, 0) + 1
                return counts

            # flushed while recording (within the 1 s flush period), readable from the .part file
            wait(lambda: part_topics().get("/gripper", 0) == 3 and part_topics().get("/instruction", 0) == 1,
                 "the reliable messages to reach the .part file")
            # the camera subscription is best effort: images published before the recorder's reader has matched
            # our writer are dropped (get_subscription_count sees only our side), so publish until one lands
            wait(lambda: part_topics().get("/camera/image_raw", 0) >= 1, "an image to reach the .part file",
                 repeat=lambda: image_pub.publish(convert.rgb_to_image(rgb, Header())))
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"recorder ignored SIGINT; log:\n{log.read_text()[-3000:]}")
            assert proc.returncode == 0, f"recorder exited {proc.returncode}; log:\n{log.read_text()[-3000:]}"
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    assert path.exists() and not part.exists()
    got: dict[str, list] = {}
    for m in read_ros2_messages(str(path)):  # the seeking reader: needs the summary written on close
        got.setdefault(m.channel.topic, []).append(m)
    assert [m.ros_msg.data for m in got["/gripper"]] == [0.0, 1.0, 2.0]  # recorded under the remapped name
    assert got["/gripper"][0].schema.name == "std_msgs/msg/Float64"
    assert [m.ros_msg.data for m in got["/instruction"]] == ["pick up the green cube"]
    images = got["/camera/image_raw"]
    assert bytes(images[0].ros_msg.data) == rgb.tobytes() and images[0].ros_msg.encoding == "rgb8"
    assert "wrote" in log.read_text()
