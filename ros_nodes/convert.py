"""ROS message <-> numpy conversion for the nodes: the only place message layouts are known.

Every reader validates what it gets and raises `ValueError` with the reason (wrong encoding, size
mismatch, NaN, unknown joint names), so a node can drop the message with a diagnostic instead of
crashing. `cv_bridge` is not installable here, so raw images are converted by hand (rgb8 / bgr8 /
rgba8 / bgra8 colour, 32FC1 metres or 16UC1 millimetres depth) and compressed ones (jpeg / png) are
decoded with Pillow, after checking the encoded size against the pixel budget (a decompression bomb is
refused before it is decoded).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped
from sensor_msgs.msg import CameraInfo as CameraInfoMsg
from sensor_msgs.msg import CompressedImage, Image, JointState, TimeReference
from std_msgs.msg import ColorRGBA, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from vla_runtime.types import CameraInfo

COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
COMPRESSED_FORMATS = ("jpeg", "png")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR,
          "STALE": DiagnosticStatus.STALE}


def _pixels(msg: Image, channels: int, itemsize: int) -> np.ndarray:
    """The image buffer as (H, W*channels*itemsize) bytes rows, honouring `step` padding."""
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ValueError(f"image is empty ({w}x{h})")
    row = w * channels * itemsize
    if msg.step < row:
        raise ValueError(f"image step {msg.step} is shorter than a {w}-pixel {msg.encoding} row ({row} bytes)")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size != msg.step * h:
        raise ValueError(f"image data holds {data.size} bytes, {msg.encoding} {w}x{h} with step {msg.step} "
                         f"needs {msg.step * h}")
    return data.reshape(h, msg.step)[:, :row]


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image rgb8, bgr8, rgba8 or bgra8 -> (H, W, 3) uint8 RGB (alpha dropped)."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ValueError(f"colour image encoding must be one of {COLOUR_ENCODINGS}, got {msg.encoding!r}")
    channels = 4 if msg.encoding.endswith("a8") else 3
    pixels = _pixels(msg, channels, 1).reshape(int(msg.height), int(msg.width), channels)[..., :3]
    return np.array(pixels[..., ::-1] if msg.encoding.startswith("bgr") else pixels)  # a copy, not a view of data


def compressed_to_rgb(msg: CompressedImage, max_pixels: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg / png, as image_transport's compressed plugin publishes:
    `format` like "rgb8; jpeg compressed bgr8" or just "jpeg") -> (H, W, 3) uint8 RGB."""
    import io

    from PIL import Image as PILImage

    kind = next((f for f in COMPRESSED_FORMATS if f in msg.format.lower()), None)
    if kind is None:
        raise ValueError(f"compressed image format must name one of {COMPRESSED_FORMATS}, got {msg.format!r}")
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ValueError(f"compressed image is {w}x{h}, above the budget of {max_pixels} pixels")
            if img.format is None or img.format.lower() != kind:
                raise ValueError(f"compressed image says {kind} but holds {img.format}")
            return np.array(img.convert("RGB"))
    except PILImage.DecompressionBombError as e:  # Pillow's own limit, hit in open() before the budget check
        raise ValueError(f"compressed image is above the budget of {max_pixels} pixels: {e}") from None
    except (OSError, SyntaxError) as e:  # Pillow's errors for truncated or garbled data
        raise ValueError(f"compressed image cannot be decoded: {e}") from None


def rgb_to_compressed(rgb: np.ndarray, header: Header, kind: str = "jpeg", quality: int = 90) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage, as image_transport's compressed plugin would."""
    import io

    from PIL import Image as PILImage

    if kind not in COMPRESSED_FORMATS:
        raise ValueError(f"kind must be one of {COMPRESSED_FORMATS}, got {kind!r}")
    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format=kind.upper(), quality=quality)
    return CompressedImage(header=header, format=f"rgb8; {kind} compressed rgb8", data=buffer.getvalue())


def image_to_depth(msg: Image) -> np.ndarray:
    """sensor_msgs/Image 32FC1 (metres) or 16UC1 (millimetres) -> (H, W) float32 metres; 0 = no reading."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth image encoding must be one of {DEPTH_ENCODINGS}, got {msg.encoding!r}")
    itemsize = 4 if msg.encoding == "32FC1" else 2
    dtype = np.dtype(np.float32 if itemsize == 4 else np.uint16).newbyteorder(">" if msg.is_bigendian else "<")
    raw = _pixels(msg, 1, itemsize).copy().view(dtype).reshape(int(msg.height), int(msg.width))
    depth = raw.astype(np.float32) / (1000.0 if itemsize == 2 else 1.0)
    depth[~np.isfinite(depth)] = 0.0  # NaN / inf are "no reading", as 0 is
    return depth


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {a.shape} {a.dtype}")
    h, w = a.shape[:2]
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                 data=np.ascontiguousarray(a).tobytes())


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """(H, W) float32 metres -> sensor_msgs/Image 32FC1 (little-endian)."""
    d = np.asarray(depth, dtype="<f4")
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {d.shape}")
    h, w = d.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=4 * w,
                 data=np.ascontiguousarray(d).tobytes())


def camera_info_from_msg(msg: CameraInfoMsg, pose_base_cam: np.ndarray) -> CameraInfo:
    """Intrinsics from sensor_msgs/CameraInfo (K row-major) + the camera's pose in the base frame (4x4,
    optical convention; from a parameter or TF) -> `vla_runtime.types.CameraInfo`."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,) or not np.all(np.isfinite(k)):
        raise ValueError(f"CameraInfo.k must hold 9 finite numbers, got {k.tolist()}")
    return CameraInfo(width=int(msg.width), height=int(msg.height), fx=float(k[0]), fy=float(k[4]), cx=float(k[2]),
                      cy=float(k[5]), pose_base_cam=pose_base_cam)


def camera_info_to_msg(cam: CameraInfo, header: Header) -> CameraInfoMsg:
    """`CameraInfo` -> sensor_msgs/CameraInfo (plumb-bob, no distortion; P = [K | 0])."""
    k = cam.K
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfoMsg(header=header, width=cam.width, height=cam.height, distortion_model="plumb_bob",
                         d=[0.0] * 5, k=k.ravel().tolist(), r=np.eye(3).ravel().tolist(), p=p.ravel().tolist())


def joint_positions(msg: JointState, names: list[str]) -> np.ndarray:
    """sensor_msgs/JointState -> (len(names),) float64 positions in the order of `names`. Extra joints
    (fingers, other arms) are ignored; a missing or duplicated name, a length mismatch or a NaN is an error."""
    got = list(msg.name)
    pos = np.asarray(msg.position, dtype=np.float64)
    if len(got) != len(pos):
        raise ValueError(f"JointState has {len(got)} names but {len(pos)} positions")
    if len(set(got)) != len(got):
        raise ValueError(f"JointState names repeat: {got}")
    missing = [n for n in names if n not in got]
    if missing:
        raise ValueError(f"JointState lacks joints {missing} (has {got})")
    out = pos[[got.index(n) for n in names]]
    if not np.all(np.isfinite(out)):
        raise ValueError(f"JointState positions are not finite: {dict(zip(names, out.tolist()))}")
    return out


def joint_state(names: list[str], positions: np.ndarray, header: Header) -> JointState:
    p = np.asarray(positions, dtype=np.float64)
    if p.shape != (len(names),):
        raise ValueError(f"positions must be ({len(names)},), got {p.shape}")
    return JointState(header=header, name=list(names), position=p.tolist())


def _duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_trajectory(names: list[str], positions: np.ndarray, dt: float, header: Header,
                     offset: float = 0.0) -> JointTrajectory:
    """(T, J) joint targets reached every `dt` seconds -> trajectory_msgs/JointTrajectory, the form
    joint_trajectory_controller takes (point k at time_from_start offset + (k+1) dt, positions only: the
    controller interpolates between the points at its own rate)."""
    q = np.asarray(positions, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != len(names) or len(q) == 0:
        raise ValueError(f"positions must be (T >= 1, {len(names)}), got {q.shape}")
    if not np.all(np.isfinite(q)) or not dt > 0:
        raise ValueError(f"trajectory needs finite positions and dt > 0, got dt={dt}")
    points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=_duration(offset + (k + 1) * dt))
              for k, row in enumerate(q)]
    return JointTrajectory(header=header, joint_names=list(names), points=points)


def trajectory_targets(msg: JointTrajectory, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """JointTrajectory -> (times (T,) seconds, positions (T, len(names))) in the order of `names`."""
    got = list(msg.joint_names)
    missing = [n for n in names if n not in got]
    if missing or not msg.points:
        raise ValueError(f"JointTrajectory must name joints {names} and hold points; lacks {missing}, "
                         f"{len(msg.points)} points")
    ragged = [k for k, p in enumerate(msg.points) if len(p.positions) != len(got)]
    if ragged or len(set(got)) != len(got):
        raise ValueError(f"JointTrajectory joint names must be unique ({got}) and every point hold one position "
                         f"per name; points {ragged} do not")
    idx = [got.index(n) for n in names]
    q = np.array([[p.positions[i] for i in idx] for p in msg.points], dtype=np.float64)
    t = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    if not np.all(np.isfinite(q)) or np.any(np.diff(t) < 0):
        raise ValueError("JointTrajectory positions must be finite and times non-decreasing")
    return t, q


def finger_command(positions: np.ndarray) -> Float64MultiArray:
    """Finger joint positions (m) -> std_msgs/Float64MultiArray, what a forward_command_controller takes."""
    q = np.asarray(positions, dtype=np.float64)
    if q.ndim != 1 or not np.all(np.isfinite(q)):
        raise ValueError(f"finger positions must be a finite (F,) vector, got {q}")
    return Float64MultiArray(data=q.tolist())


def time_reference(source_stamp: float, header: Header, source: str) -> TimeReference:
    """sensor_msgs/TimeReference relating a command (header.stamp) to the sensor time it was computed
    from (`time_ref`): how a subscriber measures image-to-command latency."""
    ns = int(round(source_stamp * 1e9))
    return TimeReference(header=header, time_ref=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
                         source=source)


def pose_stamped(position: np.ndarray, quaternion_xyzw: np.ndarray, header: Header) -> PoseStamped:
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quaternion_xyzw)
    return msg


def candidate_markers(paths: np.ndarray, scores: np.ndarray, chosen: int, header: Header,
                      ns: str = "candidates") -> MarkerArray:
    """paths (m, P, 3) end-effector positions per candidate, scores (m,) -> one LINE_STRIP per candidate,
    coloured from red (worst) to green (best); -inf (rejected) is grey, the chosen one is thicker.
    A DELETEALL marker first clears the previous decision's strips."""
    p = np.asarray(paths, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3 or s.shape != (len(p),):
        raise ValueError(f"paths must be (m, P, 3) with scores (m,), got {p.shape} and {s.shape}")
    finite = np.isfinite(s)
    lo, hi = (s[finite].min(), s[finite].max()) if finite.any() else (0.0, 0.0)
    out = MarkerArray(markers=[Marker(header=header, ns=ns, action=Marker.DELETEALL)])
    for i, (path, score) in enumerate(zip(p, s)):
        t = (score - lo) / (hi - lo) if finite[i] and hi > lo else 1.0
        colour = ColorRGBA(r=float(1 - t), g=float(t), b=0.0, a=1.0) if finite[i] else \
            ColorRGBA(r=0.5, g=0.5, b=0.5, a=0.5)
        m = Marker(header=header, ns=ns, id=i, type=Marker.LINE_STRIP, action=Marker.ADD, color=colour,
                   points=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in path])
        m.pose.orientation.w = 1.0
        m.scale.x = 0.004 if i == chosen else 0.0015
        out.markers.append(m)
    return out


def diagnostic(name: str, level: str, message: str, values: dict, header: Header,
               hardware_id: str = "") -> DiagnosticArray:
    """One DiagnosticStatus (level OK / WARN / ERROR / STALE) with key-value pairs."""
    if level not in LEVELS:
        raise ValueError(f"diagnostic level must be one of {list(LEVELS)}, got {level!r}")
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=header, status=[status])


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
