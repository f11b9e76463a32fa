"""ros_nodes.mcap_io: messages round-trip through mcap_ros2, and a crash loses at most one flush period."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (the `ros` extra)")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed (the `ros` extra)")

from mcap_ros2.reader import read_ros2_messages
from std_msgs.msg import Float64, Header, String

from ros_nodes import convert
from ros_nodes.mcap_io import McapRecorder, iter_records, message_class, message_definition, recover

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
HDR = Header(frame_id="panda_link0")
HDR.stamp.sec, HDR.stamp.nanosec = 12, 345


def _read(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in read_ros2_messages(str(path)):
        out.setdefault(m.channel.topic, []).append(m)
    return out


def test_messages_round_trip_through_mcap_ros2(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    traj = convert.joint_trajectory([f"panda_joint{i}" for i in range(1, 8)], rng.normal(size=(2, 7)), 0.1, HDR)
    markers = convert.candidate_markers(rng.normal(size=(3, 4, 3)), np.array([0.5, -np.inf, 2.0]), 2, HDR)
    diag = convert.diagnostic("vla_policy", "WARN", "slow", {"latency_ms": 12.5, "n": 8}, HDR, hardware_id="cpu")
    path = tmp_path / "rec" / "episode.mcap"  # the parent folder is created
    with McapRecorder(path) as rec:
        rec.write("/camera/image_raw", convert.rgb_to_image(rgb, HDR), 1_000)
        rec.write("/joint_trajectory", traj, 2_000)
        rec.write("/vla_policy/candidates", markers, 3_000)
        rec.write("/diagnostics", diag, 4_000)
        rec.write("/camera/image_raw", convert.rgb_to_image(rgb[::-1], HDR), 5_000)
        assert rec.part_path.exists() and not path.exists()
    assert path.exists() and not rec.part_path.exists() and rec.message_count == 5

    got = _read(path)
    images = got["/camera/image_raw"]
    assert [m.log_time_ns for m in images] == [1_000, 5_000]
    assert images[0].schema.name == "sensor_msgs/msg/Image" and images[0].channel.message_encoding == "cdr"
    img = images[0].ros_msg
    assert (img.height, img.width, img.encoding, img.step) == (6, 5, "rgb8", 15)
    assert (img.header.frame_id, img.header.stamp.sec, img.header.stamp.nanosec) == ("panda_link0", 12, 345)
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(6, 5, 3), rgb)
    np.testing.assert_array_equal(np.frombuffer(bytes(images[1].ros_msg.data), np.uint8).reshape(6, 5, 3),
                                  rgb[::-1])

    t = got["/joint_trajectory"][0].ros_msg
    assert list(t.joint_names) == list(traj.joint_names)
    for p_got, p_sent in zip(t.points, traj.points, strict=True):
        np.testing.assert_allclose(p_got.positions, p_sent.positions)
        assert (p_got.time_from_start.sec, p_got.time_from_start.nanosec) == \
            (p_sent.time_from_start.sec, p_sent.time_from_start.nanosec)

    ma = got["/vla_policy/candidates"][0].ros_msg
    assert [(m.ns, m.id, m.type, m.action) for m in ma.markers] == \
        [(m.ns, m.id, m.type, m.action) for m in markers.markers]
    for m_got, m_sent in zip(ma.markers, markers.markers, strict=True):
        assert [(p.x, p.y, p.z) for p in m_got.points] == [(p.x, p.y, p.z) for p in m_sent.points]
        assert (m_got.color.r, m_got.color.g, m_got.color.a, m_got.scale.x) == pytest.approx(
            (m_sent.color.r, m_sent.color.g, m_sent.color.a, m_sent.scale.x))

    st = got["/diagnostics"][0].ros_msg.status[0]
    sent = diag.status[0]
    assert (st.name, st.message, st.hardware_id) == (sent.name, sent.message, sent.hardware_id)
    assert st.level == sent.level[0] == 1  # `byte`: bytes in rclpy, int in mcap_ros2
    assert {kv.key: kv.value for kv in st.values} == {"latency_ms": "12.5", "n": "8"}

    # the tolerant reader sees the same file, in file order, with the schema it was written with
    records = list(iter_records(path))
    assert [r.topic for r in records] == ["/camera/image_raw", "/joint_trajectory", "/vla_policy/candidates",
                                          "/diagnostics", "/camera/image_raw"]
    assert records[2].schema_text == message_definition("visualization_msgs/msg/MarkerArray")


def test_schema_text_has_every_dependency_once() -> None:
    text = message_definition("visualization_msgs/msg/MarkerArray")
    deps = [line[5:] for line in text.splitlines() if line.startswith("MSG: ")]
    assert deps[0] == "visualization_msgs/Marker" and len(deps) == len(set(deps))
    assert {"std_msgs/Header", "builtin_interfaces/Time", "builtin_interfaces/Duration", "geometry_msgs/Pose",
            "sensor_msgs/CompressedImage", "visualization_msgs/UVCoordinate", "visualization_msgs/MeshFile",
            } <= set(deps)
    assert message_definition("std_msgs/msg/Float64").strip().endswith("float64 data")
    assert message_class("sensor_msgs/msg/Image").__name__ == "Image"
    assert message_class("std_msgs/String") is String


CRASHER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from std_msgs.msg import Float64, Header
    from ros_nodes import convert
    from ros_nodes.mcap_io import McapRecorder
    rec = McapRecorder(sys.argv[1], flush_period_s=1.0)
    rgb = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # > 1 MiB chunks
    stamps = []
    start = time.monotonic()
    while time.monotonic() - start < 2.5:
        stamp = time.time_ns()
        rec.write("/camera/image_raw", convert.rgb_to_image(rgb, Header(frame_id="cam")), stamp)
        rec.write("/gripper_command", Float64(data=float(len(stamps))), stamp)
        stamps.append(stamp)
        time.sleep(0.05)
    crash = time.time_ns()
    print(json.dumps({"stamps": stamps, "crash_ns": crash}), flush=True)
    os._exit(1)  # no close(): no summary, no footer, no rename
""")


def test_crash_loses_at_most_one_flush_period(tmp_path: Path) -> None:
    path = tmp_path / "crash.mcap"
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    sent = json.loads(proc.stdout)
    stamps, crash_ns = sent["stamps"], sent["crash_ns"]
    part = path.with_name("crash.mcap.part")
    assert not path.exists() and part.exists()

    got = [r for r in iter_records(part) if r.topic == "/gripper_command"]
    assert got, "nothing survived the crash"
    got_stamps = [r.log_time_ns for r in got]
    assert got_stamps == stamps[: len(got_stamps)], "the surviving messages are not a prefix of those sent"
    old = [s for s in stamps if s < crash_ns - 1_000_000_000]
    assert len(old) >= 10 and got_stamps[: len(old)] == old, \
        f"lost {len(old) - min(len(old), len(got_stamps))} messages older than 1 s before the crash"
    lost_s = (crash_ns - got_stamps[-1]) / 1e9 if len(got_stamps) < len(stamps) else 0.0
    print(f"crash lost {len(stamps) - len(got_stamps)}/{len(stamps)} messages; newest kept was {lost_s:.3f} s old")

    # a crashed .part becomes an ordinary indexed recording that mcap_ros2 reads
    recovered = recover(part)
    assert recovered == path and part.exists()
    by_topic = _read(recovered)
    assert [m.ros_msg.data for m in by_topic["/gripper_command"]] == [float(i) for i in range(len(got))]
    assert len(by_topic["/camera/image_raw"]) - len(got) in (0, 1)  # a flush may fall between the pair
    assert by_topic["/camera/image_raw"][0].ros_msg.width == 256


def test_bad_arguments_raise(tmp_path: Path) -> None:
    for bad in (0, -1.0, math.nan, math.inf, "1", True, None):
        with pytest.raises(ValueError, match=f"flush_period_s .*{bad!r}" if bad != "1" else "'1'"):
            McapRecorder(tmp_path / "a.mcap", flush_period_s=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end in .mcap, got '.*episode.bag'"):
        McapRecorder(tmp_path / "episode.bag")
    with pytest.raises(ValueError, match="'pkg/msg/Type', got 'Image'"):
        message_class("Image")
    with pytest.raises(ValueError, match="unknown message type 'std_msgs/msg/Nope'"):
        message_class("std_msgs/msg/Nope")
    path = tmp_path / "b.mcap"
    rec = McapRecorder(path)
    with pytest.raises(FileExistsError, match="b.mcap.part"):
        McapRecorder(path)
    with pytest.raises(ValueError, match="stamp_ns .*-5"):
        rec.write("/x", String(data="a"), -5)
    with pytest.raises(ValueError, match="stamp_ns .*1.5"):
        rec.write("/x", String(data="a"), 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topic .*''"):
        rec.write("", String(data="a"), 1)
    with pytest.raises(TypeError, match="expected a ROS 2 message, got builtins.dict"):
        rec.write("/x", {"data": "a"}, 1)
    rec.write("/x", String(data="a"), 1)
    with pytest.raises(ValueError, match="'/x' is recorded as std_msgs/msg/String, got a std_msgs/msg/Float64"):
        rec.write("/x", Float64(data=1.0), 2)
    rec.close()
    rec.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        rec.write("/x", String(data="b"), 3)
    with pytest.raises(FileExistsError, match="b.mcap"):
        McapRecorder(path)
    assert [m.ros_msg.data for m in read_ros2_messages(str(path))] == ["a"]
