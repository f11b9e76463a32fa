"""ros_nodes.convert against the real message classes (ROS 2 Jazzy wheels, the `ros` extra)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed (the `ros` extra)")

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo as CameraInfoMsg
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header
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


# --------------------------------------------------------------------------- rgba / bgra, compressed images

JPEG_MEAN_TOL = 2.0  # grey levels: mean |error| of a quality-90 JPEG of a smooth image
JPEG_MAX_TOL = 12  # grey levels: the largest single-pixel error allowed there
BUDGET = 640 * 480  # pixels: the node's default budget scale


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A gradient image: JPEG keeps it close (noise would not compress faithfully)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=-1).astype(np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_rgba_and_bgra_drop_alpha_in_rgb_order() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (3, 5, 1), dtype=np.uint8)
    rgba = Image(height=3, width=5, encoding="rgba8", step=20, data=np.concatenate([rgb, alpha], -1).tobytes())
    out = convert.image_to_rgb(rgba)
    np.testing.assert_array_equal(out, rgb)
    assert out.shape == (3, 5, 3) and out.flags.writeable  # a copy, not a read-only view of the message
    bgra = np.concatenate([rgb[..., ::-1], alpha], -1)
    padded = np.pad(bgra.reshape(3, 20), ((0, 0), (0, 4)))  # 4 bytes of row padding
    msg = Image(height=3, width=5, encoding="bgra8", step=24, data=padded.tobytes())
    np.testing.assert_array_equal(convert.image_to_rgb(msg), rgb)
    with pytest.raises(ValueError, match="holds 59 bytes"):
        convert.image_to_rgb(Image(height=3, width=5, encoding="rgba8", step=20, data=bytes(59)))


@pytest.mark.parametrize("encoding", ["mono16", "bgr16", "yuv422", "RGB8"])
def test_an_unsupported_colour_encoding_is_refused_by_name(encoding: str) -> None:
    with pytest.raises(ValueError, match=f"got '{encoding}'"):
        convert.image_to_rgb(Image(height=1, width=1, encoding=encoding, step=4, data=bytes(4)))


def test_jpeg_round_trip_within_tolerance() -> None:
    rgb = smooth_rgb()
    msg = convert.rgb_to_compressed(rgb, HDR, "jpeg")
    assert "jpeg" in msg.format and msg.header.frame_id == "base"
    out = convert.compressed_to_rgb(msg, BUDGET)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - rgb)
    assert error.mean() <= JPEG_MEAN_TOL and error.max() <= JPEG_MAX_TOL
    msg.format = "jpeg"  # the bare form some drivers publish
    np.testing.assert_array_equal(convert.compressed_to_rgb(msg, BUDGET), out)


def test_png_round_trip_is_exact() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    msg = convert.rgb_to_compressed(rgb, HDR, "png")
    assert msg.format == "rgb8; png compressed rgb8"
    np.testing.assert_array_equal(convert.compressed_to_rgb(msg, BUDGET), rgb)


def test_compressed_format_must_name_a_known_codec_and_match_the_data() -> None:
    png = convert.rgb_to_compressed(smooth_rgb(), HDR, "png")
    with pytest.raises(ValueError, match="got 'rgb8; tiff compressed rgb8'"):
        convert.compressed_to_rgb(CompressedImage(format="rgb8; tiff compressed rgb8", data=png.data), BUDGET)
    with pytest.raises(ValueError, match="says jpeg but holds PNG"):
        convert.compressed_to_rgb(CompressedImage(format="jpeg", data=png.data), BUDGET)
    with pytest.raises(ValueError, match="kind must be one of"):
        convert.rgb_to_compressed(smooth_rgb(), HDR, "bmp")


@pytest.mark.parametrize("kind", ["jpeg", "png"])
@pytest.mark.parametrize("keep", [0, 8, 30, 0.5])
def test_truncated_or_garbled_compressed_data_is_refused(kind: str, keep: float) -> None:
    msg = convert.rgb_to_compressed(smooth_rgb(), HDR, kind)
    data = bytes(msg.data)
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    with pytest.raises(ValueError, match="cannot be decoded"):
        convert.compressed_to_rgb(CompressedImage(format=msg.format, data=data[:cut]), BUDGET)


def test_an_image_over_the_pixel_budget_is_refused() -> None:
    rgb = smooth_rgb(48, 64)
    for kind in ("jpeg", "png"):
        msg = convert.rgb_to_compressed(rgb, HDR, kind)
        assert convert.compressed_to_rgb(msg, 48 * 64).shape == (48, 64, 3)  # at the budget: fine
        with pytest.raises(ValueError, match="64x48, above the budget of 3071 pixels"):
            convert.compressed_to_rgb(msg, 48 * 64 - 1)


def test_a_decompression_bomb_header_is_refused_as_over_budget() -> None:
    """A header claiming 20000 x 20000 trips Pillow's own limit inside open(): still a ValueError (a node
    drops the frame), not Pillow's DecompressionBombError."""
    bomb = CompressedImage(format="png", data=_png_header_only(20_000, 20_000))
    with pytest.raises(ValueError, match="above the budget"):
        convert.compressed_to_rgb(bomb, BUDGET)


# --------------------------------------------------------------------------- gripper, stamps, trajectory offset


def test_finger_command_carries_the_positions() -> None:
    msg = convert.finger_command(np.array([0.04, 0.035]))
    assert isinstance(msg, Float64MultiArray) and list(msg.data) == [0.04, 0.035]
    for bad in (np.array([0.04, np.nan]), np.zeros((2, 1)), np.array([np.inf])):
        with pytest.raises(ValueError, match="finite"):
            convert.finger_command(bad)


@pytest.mark.parametrize(("sec", "nanosec"), [(0, 0), (12, 345_678_901), (4_000, 999_999_999),
                                              (1_700_000_000, 500_000_000)])
def test_time_reference_carries_the_stamp_to_the_nanosecond(sec: int, nanosec: int) -> None:
    """Sim-time stamps and wall-clock ones a float holds exactly come back to the nanosecond."""
    stamp = convert.stamp_seconds(Time(sec=sec, nanosec=nanosec))
    msg = convert.time_reference(stamp, HDR, "image")
    assert (msg.time_ref.sec, msg.time_ref.nanosec) == (sec, nanosec)
    assert msg.source == "image" and msg.header.frame_id == "base"


def test_time_reference_rounds_up_into_the_next_second() -> None:
    msg = convert.time_reference(4.9999999999, HDR, "image")
    assert (msg.time_ref.sec, msg.time_ref.nanosec) == (5, 0)


def test_joint_trajectory_offset_shifts_every_point() -> None:
    q = np.arange(12.0).reshape(6, 2) * 0.1
    msg = convert.joint_trajectory(["a", "b"], q, 0.1, HDR, offset=1.55)
    stamps = [(p.time_from_start.sec, p.time_from_start.nanosec) for p in msg.points]
    assert stamps == [(1, 650_000_000), (1, 750_000_000), (1, 850_000_000), (1, 950_000_000), (2, 50_000_000),
                      (2, 150_000_000)]
    t, back = convert.trajectory_targets(msg, ["a", "b"])
    np.testing.assert_allclose(t, 1.55 + 0.1 * np.arange(1, 7), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(back, q)
