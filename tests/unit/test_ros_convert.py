"""ros_nodes.convert against the real message classes (ROS 2 Jazzy wheels, the `ros` extra)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed (the `ros` extra)")

from sensor_msgs.msg import CameraInfo as CameraInfoMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ros_nodes import convert
from vla_runtime.types import CameraInfo

pytestmark = pytest.mark.unit
HDR = Header(frame_id="base")


def test_colour_images_round_trip_and_bgr_is_swapped() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = convert.rgb_to_image(rgb, HDR)
    np.testing.assert_array_equal(convert.image_to_rgb(msg), rgb)
    bgr = Image(height=5, width=7, encoding="bgr8", step=21, data=rgb[..., ::-1].tobytes())
    np.testing.assert_array_equal(convert.image_to_rgb(bgr), rgb)
    padded = Image(height=5, width=7, encoding="rgb8", step=24,
                   data=np.pad(rgb.reshape(5, 21), ((0, 0), (0, 3))).tobytes())  # row padding honoured
    np.testing.assert_array_equal(convert.image_to_rgb(padded), rgb)


@pytest.mark.parametrize(("msg", "message"), [
    (Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4)), "encoding must be one of"),
    (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(11)), "holds 11 bytes"),
    (Image(height=2, width=2, encoding="rgb8", step=5, data=bytes(10)), "step 5 is shorter"),
    (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), "empty"),
])
def test_malformed_colour_images_are_refused_with_the_reason(msg: Image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert.image_to_rgb(msg)


def test_depth_in_metres_or_millimetres_and_no_readings_become_zero() -> None:
    d = np.array([[0.5, np.nan], [1.25, 2.0]], np.float32)
    np.testing.assert_array_equal(convert.image_to_depth(convert.depth_to_image(d, HDR)), [[0.5, 0.0], [1.25, 2.0]])
    mm = np.array([[500, 0], [1250, 2000]], "<u2")
    msg = Image(height=2, width=2, encoding="16UC1", step=4, data=mm.tobytes())
    np.testing.assert_allclose(convert.image_to_depth(msg), [[0.5, 0.0], [1.25, 2.0]])
    big = Image(height=2, width=2, encoding="32FC1", is_bigendian=1, step=8, data=d.astype(">f4").tobytes())
    np.testing.assert_array_equal(convert.image_to_depth(big), [[0.5, 0.0], [1.25, 2.0]])
    with pytest.raises(ValueError, match="depth image encoding"):
        convert.image_to_depth(Image(height=1, width=1, encoding="rgb8", step=3, data=bytes(3)))


def test_camera_info_round_trips_with_the_given_pose() -> None:
    cam = CameraInfo(width=64, height=48, fx=80.0, fy=81.0, cx=31.5, cy=23.5, pose_base_cam=np.eye(4))
    msg = convert.camera_info_to_msg(cam, HDR)
    assert isinstance(msg, CameraInfoMsg) and msg.p[3] == 0.0
    back = convert.camera_info_from_msg(msg, cam.pose_base_cam)
    assert back.to_dict() == cam.to_dict()
    msg.k[0] = float("nan")
    with pytest.raises(ValueError, match="9 finite numbers"):
        convert.camera_info_from_msg(msg, np.eye(4))


def test_joint_states_are_reordered_by_name_and_checked() -> None:
    names = ["j1", "j2", "j3"]
    msg = JointState(name=["finger", "j3", "j1", "j2"], position=[0.04, 3.0, 1.0, 2.0])
    np.testing.assert_array_equal(convert.joint_positions(msg, names), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"lacks joints \['j3'\]"):
        convert.joint_positions(JointState(name=["j1", "j2"], position=[0.0, 0.0]), names)
    with pytest.raises(ValueError, match="not finite"):
        convert.joint_positions(JointState(name=names, position=[0.0, float("nan"), 0.0]), names)
    with pytest.raises(ValueError, match="3 names but 2 positions"):
        convert.joint_positions(JointState(name=names, position=[0.0, 0.0]), names)
    with pytest.raises(ValueError, match="names repeat"):
        convert.joint_positions(JointState(name=["j1", "j1", "j2", "j3"], position=[0.0] * 4), names)


def test_joint_trajectories_round_trip_with_their_timing() -> None:
    names = ["a", "b"]
    q = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    msg = convert.joint_trajectory(names, q, 0.1, HDR)
    assert [p.time_from_start.nanosec for p in msg.points] == [100_000_000, 200_000_000, 300_000_000]
    t, back = convert.trajectory_targets(msg, ["b", "a"])
    np.testing.assert_allclose(t, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(back, q[:, ::-1])
    with pytest.raises(ValueError, match="dt > 0"):
        convert.joint_trajectory(names, q, 0.0, HDR)
    with pytest.raises(ValueError, match=r"lacks \['c'\]"):
        convert.trajectory_targets(msg, ["a", "c"])


def test_candidate_markers_colour_by_score_and_grey_out_rejections() -> None:
    paths = np.zeros((3, 4, 3))
    paths[:, :, 0] = np.arange(4) * 0.01
    arr = convert.candidate_markers(paths, np.array([1.0, -np.inf, 3.0]), chosen=2, header=HDR)
    clear, worst, rejected, best = arr.markers
    assert clear.action == Marker.DELETEALL
    assert (worst.color.r, worst.color.g) == (1.0, 0.0) and (best.color.r, best.color.g) == (0.0, 1.0)
    assert rejected.color.a == 0.5 and best.scale.x > worst.scale.x
    assert [round(p.x, 3) for p in best.points] == [0.0, 0.01, 0.02, 0.03]


def test_diagnostics_carry_level_and_values() -> None:
    arr = convert.diagnostic("vla/policy", "WARN", "dropped a bgr16 image", {"p50_ms": 12.5}, HDR)
    status = arr.status[0]
    assert status.level == convert.LEVELS["WARN"] and status.values[0].key == "p50_ms"
    assert status.values[0].value == "12.5"
    with pytest.raises(ValueError, match="level must be one of"):
        convert.diagnostic("x", "FATAL", "", {}, HDR)
