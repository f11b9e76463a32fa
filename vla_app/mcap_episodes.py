"""Recorder MCAPs (`ros_nodes/recorder_node.py`) -> episodes in our dataset format, so runs on a real robot can
train the verifier and the value function.

Plain Python (`mcap`, `mcap_ros2`, pybullet for forward kinematics): this layer may not import `ros_nodes`.

One MCAP is one episode. The steps are the commanded TCP targets (`ee_target`, one per control tick):
observation k is the newest image and joint state logged at or before target k, and action k takes target k
to target k+1 as `sim.control.CartesianTarget.apply` does (dx dy dz, then roll pitch yaw of
q_{k+1} q_k^-1), with the gripper command of tick k+1. Proprioception is rebuilt from the joint states by
forward kinematics on the arm's model, in `PROPRIO_NAMES` order (as the policy node does). The instruction
comes from the first of `instruction_topics` recorded, success from `success_topic` (reward = success).
Times are the recorder's log times (one clock for every topic).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vla_runtime.dataset import Episode, write_dataset_header, write_episode
from vla_runtime.io import check_output_dir, staged_dir
from vla_runtime.types import ActionSpec, CameraInfo

COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")


@dataclass(frozen=True)
class McapEpisodeConfig:
    """Which recorded topics become which part of an episode, and the meta an MCAP cannot carry."""

    image_topic: str = "camera/image_raw"
    camera_info_topic: str = "camera/camera_info"
    joint_states_topic: str = "joint_states"
    ee_target_topic: str = "ee_target"
    gripper_topic: str = "gripper_command"
    instruction_topics: tuple[str, ...] = ("instruction", "sim_robot/instruction")
    success_topic: str = "sim_robot/success"
    success: bool | None = None  # None: read success_topic (required); a bool: every episode's outcome
    camera: str = "static"  # the camera's name in the episode
    arm: str = "panda"  # joint names and kinematics for proprioception (sim.arms)
    task: str = "robot"  # meta["task"]
    variation: str = "real"
    quality: str = "robot"
    action_spec: ActionSpec = field(default_factory=ActionSpec)  # control_hz is replaced by the measured rate

    def __post_init__(self) -> None:
        from sim.arms import get_arm_spec

        for name in ("image_topic", "camera_info_topic", "joint_states_topic", "ee_target_topic", "gripper_topic",
                     "success_topic", "camera", "task", "variation", "quality"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip("/"):
                raise ValueError(f"{name} must be a non-empty name, got {value!r}")
        if not self.instruction_topics or not all(t.strip("/") for t in self.instruction_topics):
            raise ValueError(f"instruction_topics must be non-empty names, got {self.instruction_topics!r}")
        if self.success is not None and not isinstance(self.success, bool):
            raise TypeError(f"success must be None or a bool, got {self.success!r}")
        get_arm_spec(self.arm)  # ValueError naming the known arms
        if self.action_spec.dim != 7 or self.action_spec.gripper_index != 6:
            raise ValueError(f"action_spec must be dx dy dz droll dpitch dyaw gripper (7, gripper last), "
                             f"got {self.action_spec.names}")


@dataclass
class _Topic:
    times: list[int] = field(default_factory=list)  # log times, ns, in file order
    messages: list = field(default_factory=list)  # decoded (empty for the image topic: decoded on demand)


def _resolve(recorded: dict[str, str], name: str, path: Path, required: bool = True) -> str | None:
    """The recorded topic meant by `name`: exact, with a leading '/', or the one topic ending in '/name'."""
    bare = name.strip("/")
    for candidate in (name, "/" + bare):
        if candidate in recorded:
            return candidate
    ends = [t for t in recorded if t.endswith("/" + bare)]
    if len(ends) == 1:
        return ends[0]
    if len(ends) > 1:
        raise ValueError(f"{path}: topic {name!r} is ambiguous, recorded as {sorted(ends)}; give the full name")
    if required:
        raise ValueError(f"{path}: no topic {name!r} recorded (has {sorted(recorded)}); record it "
                         f"(config/recorder.yaml lists it) or name the topic that carries it")
    return None


def _read(path: Path, topics: list[str], lazy: str) -> dict[str, _Topic]:
    """Messages of `topics` (decoded, but `lazy` only timed) in log-time order."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = {t: _Topic() for t in topics}
    decoders: dict[int, Callable] = {}
    factory = DecoderFactory()
    try:
        with open(path, "rb") as f:
            reader = make_reader(f)
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                slot = out[channel.topic]
                slot.times.append(message.log_time)
                if channel.topic == lazy:
                    continue
                if channel.id not in decoders:
                    decoders[channel.id] = factory.decoder_for(channel.message_encoding, schema)
                slot.messages.append(decoders[channel.id](message.data))
    except (McapError, EOFError, OSError, ValueError, KeyError, AssertionError) as e:
        raise ValueError(f"{path}: unreadable MCAP (a crashed `.part` needs ros_nodes.mcap_io.recover first): "
                         f"{type(e).__name__}: {e}") from e
    return out


def _recorded_topics(path: Path) -> dict[str, str]:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
    except FileNotFoundError:
        raise FileNotFoundError(f"no MCAP file {path}") from None
    except (McapError, EOFError, OSError, ValueError, AssertionError) as e:
        raise ValueError(f"{path}: not a readable MCAP file: {type(e).__name__}: {e}") from e
    if summary is None:
        raise ValueError(f"{path}: MCAP without a summary (a crashed recording? run ros_nodes.mcap_io.recover)")
    schemas = summary.schemas
    return {c.topic: schemas[c.schema_id].name if c.schema_id in schemas else "" for c in summary.channels.values()}


def _images(path: Path, topic: str, wanted: list[int]) -> dict[int, np.ndarray]:
    """Decode only the image messages at positions `wanted` (file order of `topic`)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    need, out, decode = set(wanted), {}, None
    with open(path, "rb") as f:
        for i, (schema, channel, message) in enumerate(make_reader(f).iter_messages(topics=[topic],
                                                                                     log_time_order=True)):
            if i in need:
                decode = decode or DecoderFactory().decoder_for(channel.message_encoding, schema)
                try:
                    out[i] = _rgb(decode(message.data))
                except ValueError as e:
                    raise ValueError(f"{path}: topic {topic!r} message {i}: {e}") from e
    return out


def _rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8; row padding honoured) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ValueError(f"image encoding must be one of {COLOUR_ENCODINGS}, got {msg.encoding!r}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    channels = 4 if msg.encoding.endswith("a8") else 3
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if h <= 0 or w <= 0 or step < w * channels or data.size != step * h:
        raise ValueError(f"image {w}x{h} {msg.encoding} step {step} does not match its {data.size} bytes")
    pixels = data.reshape(h, step)[:, : w * channels].reshape(h, w, channels)[..., :3]
    return np.ascontiguousarray(pixels[..., ::-1] if msg.encoding.startswith("bgr") else pixels)


def _latest(times: list[int], at: int) -> int:
    """Index of the last time <= at, or -1."""
    return int(np.searchsorted(np.asarray(times, np.int64), at, side="right")) - 1


def _pose(msg) -> tuple[np.ndarray, np.ndarray]:
    p, q = msg.pose.position, msg.pose.orientation
    pos, quat = np.array([p.x, p.y, p.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)
    norm = np.linalg.norm(quat)
    if not (np.all(np.isfinite(pos)) and np.isfinite(norm) and norm > 0.5):
        raise ValueError(f"pose is not finite with a unit quaternion: {pos.tolist()} {quat.tolist()}")
    return pos, quat / norm


def target_actions(poses: list[tuple[np.ndarray, np.ndarray]], gripper: np.ndarray) -> np.ndarray:
    """(T, 7) actions taking pose k to pose k+1 the way `CartesianTarget.apply` applies them."""
    import pybullet as p

    out = np.zeros((len(poses) - 1, 7), np.float64)
    for k, ((p0, q0), (p1, q1)) in enumerate(itertools.pairwise(poses)):
        _, q0_inv = p.invertTransform([0, 0, 0], q0.tolist())
        _, dq = p.multiplyTransforms([0, 0, 0], q1.tolist(), [0, 0, 0], q0_inv)
        out[k, :3] = p1 - p0
        out[k, 3:6] = p.getEulerFromQuaternion(dq)
    out[:, 6] = gripper
    return out.astype(np.float32)


def mcap_to_episode(path: str | Path, cfg: McapEpisodeConfig) -> Episode:
    """One recorder MCAP -> one episode; errors name the file and the topic."""
    from sim.arms import IKSolver, get_arm_spec, proprio_joints
    from sim.control import tcp_yaw

    path = Path(path)
    try:
        import mcap_ros2  # noqa: F401 - plain Python, but shipped with the `ros` extra
    except ImportError:
        raise ValueError("from-mcap needs the mcap-ros2-support package: pip install 'mcap-ros2-support>=0.5'") \
            from None
    recorded = _recorded_topics(path)
    image = _resolve(recorded, cfg.image_topic, path)
    info_topic = _resolve(recorded, cfg.camera_info_topic, path)
    joints = _resolve(recorded, cfg.joint_states_topic, path)
    target = _resolve(recorded, cfg.ee_target_topic, path)
    gripper = _resolve(recorded, cfg.gripper_topic, path)
    instruction_topics = [t for t in (_resolve(recorded, n, path, required=False) for n in cfg.instruction_topics) if t]
    if not instruction_topics:
        raise ValueError(f"{path}: none of the instruction topics {list(cfg.instruction_topics)} recorded "
                         f"(has {sorted(recorded)})")
    success = None if cfg.success is not None else _resolve(recorded, cfg.success_topic, path)
    topics = [t for t in dict.fromkeys([image, info_topic, joints, target, gripper, *instruction_topics, success]) if t]
    msgs = _read(path, topics, lazy=image)
    for t in (image, info_topic, joints, target, gripper) + ((success,) if success else ()):
        if not msgs[t].times:
            raise ValueError(f"{path}: topic {t!r} is recorded but holds no message")
    texts = [m.data for t in instruction_topics for m in msgs[t].messages if m.data.strip()]
    if not texts:
        raise ValueError(f"{path}: the instruction topics {instruction_topics} hold no non-empty instruction")

    # steps: targets with an image and a joint state at or before them
    times = msgs[target].times
    first = max(msgs[image].times[0], msgs[joints].times[0])
    steps = [k for k, t in enumerate(times) if t >= first]
    if len(steps) < 2:
        raise ValueError(f"{path}: topic {target!r} has {len(steps)} commands after the first image and joint "
                         f"state; an episode needs at least 2")
    stamps = [times[k] for k in steps]
    period = float(np.median(np.diff(stamps)))
    if period <= 0:
        raise ValueError(f"{path}: topic {target!r} has no increasing log times")
    try:
        poses = [_pose(msgs[target].messages[k]) for k in steps]
    except (AttributeError, ValueError) as e:
        raise ValueError(f"{path}: topic {target!r}: {e}") from e
    late = [int(s + period / 2) for s in stamps[1:]]  # a tick's messages may be logged just after its target
    grip = []
    for s in late:
        i = _latest(msgs[gripper].times, s)
        if i < 0:
            raise ValueError(f"{path}: topic {gripper!r} has no command before step time {s} ns")
        grip.append(float(msgs[gripper].messages[i].data))
    actions = target_actions(poses, np.asarray(grip))

    if success:
        done = [bool(msgs[success].messages[i].data) if (i := _latest(msgs[success].times, s)) >= 0 else False
                for s in late]
        outcome = bool(msgs[success].messages[-1].data)
    else:
        done, outcome = [bool(cfg.success) and k == len(late) - 1 for k in range(len(late))], bool(cfg.success)

    spec = get_arm_spec(cfg.arm)
    ik = IKSolver(spec)
    try:
        arm_names, finger_names = ik.joint_names(spec.ik_joints), ik.joint_names(spec.gripper.joints)
        proprio = []
        fingers = np.full(len(finger_names), 0.04)
        for s in stamps:
            msg = msgs[joints].messages[_latest(msgs[joints].times, s)]
            q = _joint_positions(msg, arm_names, path, joints)
            if set(finger_names) <= set(msg.name):
                fingers = _joint_positions(msg, finger_names, path, joints)
            pos, quat = ik.fk(q)
            proprio.append(np.concatenate([pos, [tcp_yaw(quat), ik.gripper_width(fingers)], proprio_joints(q)]))
    finally:
        ik.close()

    wanted = [_latest(msgs[image].times, s) for s in stamps]
    decoded = _images(path, image, wanted)
    frames = np.stack([decoded[i] for i in wanted])
    cam = msgs[info_topic].messages[-1]
    camera = _camera_info(cam, frames.shape[1:3], path, info_topic)
    action_spec = replace(cfg.action_spec, control_hz=round(1e9 / period, 3))
    meta = {"task": cfg.task, "variation": cfg.variation, "quality": cfg.quality, "seed": 0,
            "instruction": texts[-1], "arm": cfg.arm, "success": outcome,
            "cameras": {cfg.camera: camera.to_dict()}, "action_spec": action_spec.to_dict(),
            "source": {"mcap": path.name, "camera_pose": "unknown (identity)", "topics": topics}}
    try:
        return Episode(images={cfg.camera: frames}, proprio=np.asarray(proprio, np.float32), actions=actions,
                       rewards=np.asarray(done, np.float32), successes=np.asarray(done, bool), meta=meta)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: invalid episode: {e}") from e


def _joint_positions(msg, names: list[str], path: Path, topic: str) -> np.ndarray:
    got, pos = list(msg.name), np.asarray(msg.position, np.float64)
    missing = [n for n in names if n not in got]
    if len(got) != len(pos) or missing:
        raise ValueError(f"{path}: topic {topic!r}: JointState with {len(got)} names and {len(pos)} positions "
                         f"lacks joints {missing} (has {got})")
    out = pos[[got.index(n) for n in names]]
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path}: topic {topic!r}: joint positions are not finite: {out.tolist()}")
    return out


def _camera_info(msg, shape: tuple[int, int], path: Path, topic: str) -> CameraInfo:
    """Intrinsics from sensor_msgs/CameraInfo; the pose in the base frame is not recorded (identity)."""
    k = np.asarray(msg.k, np.float64)
    if (int(msg.height), int(msg.width)) != tuple(shape) or k.shape != (9,):
        raise ValueError(f"{path}: topic {topic!r}: CameraInfo {msg.width}x{msg.height} does not match the "
                         f"{shape[1]}x{shape[0]} images")
    try:
        return CameraInfo(width=int(msg.width), height=int(msg.height), fx=float(k[0]), fy=float(k[4]),
                          cx=float(k[2]), cy=float(k[5]), pose_base_cam=np.eye(4))
    except ValueError as e:
        raise ValueError(f"{path}: topic {topic!r}: {e}") from e


def is_mcap_dataset(folder: Path) -> bool:
    """A previous `from-mcap` output: a dataset folder whose collection says it came from MCAP files."""
    from vla_runtime.dataset import collection_source

    return collection_source(folder) == "mcap"


def mcaps_to_dataset(paths: list[str | Path], out: str | Path, cfg: McapEpisodeConfig,
                     overwrite: bool = False) -> dict:
    """Each MCAP in `paths` -> one episode of a new dataset folder `out` (written aside, then renamed)."""
    if not paths:
        raise ValueError("give at least one MCAP file")
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"no MCAP file {p}")
    out = check_output_dir(out, is_mcap_dataset, "dataset converted from MCAP", inputs=paths, overwrite=overwrite)
    steps = 0
    with staged_dir(out) as tmp:
        write_dataset_header(tmp, {"source": "mcap", "files": [Path(p).name for p in paths],
                                   "config": _config_dict(cfg)})
        for k, p in enumerate(paths):
            ep = mcap_to_episode(p, cfg)
            write_episode(tmp, k, ep)
            steps += ep.length
    return {"out": str(out), "episodes": len(paths), "steps": steps}


def _config_dict(cfg: McapEpisodeConfig) -> dict:
    d = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "action_spec"}
    d["instruction_topics"] = list(cfg.instruction_topics)
    return d


__all__ = ["McapEpisodeConfig", "mcap_to_episode", "mcaps_to_dataset", "target_actions"]
