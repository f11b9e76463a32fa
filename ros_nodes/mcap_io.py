"""MCAP for ROS 2 messages: crash-tolerant recording, reading (a crashed `.part` file too) and recovery
(the `ros2` profile, CDR payloads, `ros2msg` schemas).

Why not rosbag2: it is not installable from the PyPI wheels this stack uses, while `mcap` is pure Python
and its files open in Foxglove and `ros2 bag` alike.

Crash safety: messages are gathered in one MCAP chunk in memory; `flush_if_due()` (called by every
`write()` and by the recorder node's timer every half period) closes the chunk once its oldest message is
half a flush period old, appends it with its message index in a single `os.write` and fsyncs. So a
message is on disk at most `flush_period_s` after it was written, and a crash loses at most that much.
The file is written as `path + ".part"` and renamed to `path` on a clean `close()`; a crashed `.part`
has no summary or footer, so the seeking `mcap_ros2.reader.read_ros2_messages(path)` rejects it:
read it with `iter_records()` or turn it into a normal file with `recover()`.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mcap.exceptions import EndOfFile
from mcap.reader import NonSeekingReader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer
from rclpy.serialization import serialize_message

PART_SUFFIX = ".part"
PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
                        "int32", "uint32", "int64", "uint64", "string", "wstring"})
SEPARATOR = "=" * 80
MAGIC = b"\x89MCAP0\r\n"
LIBRARY = "vla_steering ros_nodes.mcap_io"


def type_name(msg_or_class: Any) -> str:
    """`pkg/msg/Type` of a rosidl-generated message instance or class (module `pkg.msg._type`)."""
    cls = msg_or_class if isinstance(msg_or_class, type) else type(msg_or_class)
    parts = cls.__module__.split(".")
    if len(parts) < 2 or parts[1] != "msg" or not hasattr(cls, "get_fields_and_field_types"):
        raise TypeError(f"expected a ROS 2 message, got {cls.__module__}.{cls.__name__}")
    return f"{parts[0]}/msg/{cls.__name__}"


def message_class(name: str) -> type:
    """The message class for `pkg/msg/Type` (or `pkg/Type`); `rosidl_runtime_py` when installed."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ValueError(f"message type must look like 'pkg/msg/Type', got {name!r}")
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        pass
    else:
        return get_message("/".join(parts))
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as err:
        raise ValueError(f"unknown message type {name!r}: {err}") from err


def share_directory(package: str) -> Path:
    """`share/<package>` of an installed interface package: ament index, then AMENT_PREFIX_PATH, then
    this interpreter's prefix (where the PyPI ROS wheels put it; no AMENT_PREFIX_PATH is set there)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError):  # PackageNotFoundError is a KeyError; unset index: OSError
        pass
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in [*prefixes, sys.prefix, sys.base_prefix]:
        candidate = Path(prefix) / "share" / package
        if candidate.is_dir():
            return candidate
    raise LookupError(f"no share directory for ROS package {package!r} (looked in the ament index, "
                      f"AMENT_PREFIX_PATH and {sys.prefix}/share)")


def _msg_text(package: str, name: str) -> str:
    path = share_directory(package) / "msg" / f"{name}.msg"
    if not path.is_file():
        raise LookupError(f"message definition {path} not found")
    return path.read_text()


def _dependencies(package: str, text: str) -> list[tuple[str, str]]:
    """(package, Type) of every non-primitive field type in a .msg text, in order of appearance."""
    deps = []
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2:
            continue
        base = tokens[0].split("[", 1)[0].split("<=", 1)[0]
        if base in PRIMITIVES:
            continue
        parts = base.split("/")
        deps.append((package, parts[0]) if len(parts) == 1 else (parts[0], parts[-1]))
    return deps


def message_definition(name: str) -> str:
    """The full `ros2msg` schema of `pkg/msg/Type`: its .msg text, then each dependency (depth first, once)
    after a line of 80 '=' and `MSG: pkg/Type`, the layout rosbag2 and mcap_ros2 use."""
    package, _, short = name.replace("/msg/", "/").partition("/")
    text = _msg_text(package, short)
    parts, seen = [text], {(package, short)}
    stack = list(reversed(_dependencies(package, text)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        dep_text = _msg_text(*dep)
        parts.append(f"{SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{dep_text}")
        stack.extend(reversed(_dependencies(dep[0], dep_text)))
    return "\n".join(p.rstrip("\n") for p in parts) + "\n"


class _SyncedFile:
    """The stream handed to `mcap.writer.Writer`: writes stay in memory until `flush()`, which appends
    them with one `os.write` and fsyncs, so the file only ever grows by whole records."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._pending: list[bytes] = []
        self._size = 0
        self._pending_bytes = 0

    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size + self._pending_bytes

    def flush(self) -> None:
        if self._pending:
            view = memoryview(b"".join(self._pending))
            while view:
                view = view[os.write(self._fd, view):]
            self._size += self._pending_bytes
            self._pending, self._pending_bytes = [], 0
        os.fsync(self._fd)

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class McapRecorder:
    """Writes ROS 2 messages to `path` (via `path.part`, renamed on `close()`); see the module docstring.

    Not thread-safe: call it from one thread (the node's single-threaded executor does).
    """

    def __init__(self, path: str | os.PathLike, flush_period_s: float = 1.0, *,
                 compression: CompressionType = CompressionType.ZSTD, part_suffix: str = PART_SUFFIX) -> None:
        if isinstance(flush_period_s, bool) or not isinstance(flush_period_s, (int, float)) \
                or not 0.0 < flush_period_s < float("inf"):
            raise ValueError(f"flush_period_s must be a positive finite number of seconds, got {flush_period_s!r}")
        self.path = Path(path)
        if self.path.suffix != ".mcap":
            raise ValueError(f"recording path must end in .mcap, got {str(path)!r}")
        if not part_suffix:
            raise ValueError(f"part_suffix must be non-empty (the file is renamed on close), got {part_suffix!r}")
        self.part_path = self.path.with_name(self.path.name + part_suffix)
        for existing in (self.path, self.part_path):
            if existing.exists():
                raise FileExistsError(f"refusing to overwrite the recording {existing}")
        self.flush_period_s = float(flush_period_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _SyncedFile(self.part_path)
        _fsync_directory(self.path.parent)  # the .part's directory entry survives a crash too
        self._writer = Writer(self._file, compression=compression)
        self._writer.start(profile="ros2", library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}
        self._sequence: dict[str, int] = {}
        self._oldest_pending: float | None = None  # monotonic time of the first unflushed message
        self._closed = False
        self.message_count = 0
        self._file.flush()  # the magic and header: even an empty crashed recording is a valid prefix

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialize `msg` to CDR and record it on `topic` with log and publish time `stamp_ns`."""
        self.write_serialized(topic, type_name(msg), serialize_message(msg), stamp_ns)

    def write_serialized(self, topic: str, msg_type: str, data: bytes, stamp_ns: int,
                         schema_text: str | None = None) -> None:
        """Record an already CDR-serialized message (a `raw=True` subscription's bytes) of `msg_type`.

        `schema_text` overrides the definition read from the installed .msg files (used by `recover`).
        """
        if self._closed:
            raise RuntimeError(f"recording {self.path} is closed")
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
            raise ValueError(f"stamp_ns must be a non-negative int of nanoseconds, got {stamp_ns!r}")
        channel_id = self._channel(topic, msg_type, schema_text)
        sequence = self._sequence[topic] = self._sequence[topic] + 1
        self._writer.add_message(channel_id=channel_id, log_time=stamp_ns, publish_time=stamp_ns,
                                 sequence=sequence, data=bytes(data))
        self.message_count += 1
        if self._oldest_pending is None:
            self._oldest_pending = time.monotonic()
        self.flush_if_due()

    def _channel(self, topic: str, msg_type: str, schema_text: str | None) -> int:
        if topic in self._channels:
            channel_id, known = self._channels[topic]
            if known != msg_type:
                raise ValueError(f"topic {topic!r} is recorded as {known}, got a {msg_type} message")
            return channel_id
        if msg_type not in self._schemas:
            text = message_definition(msg_type) if schema_text is None else schema_text
            self._schemas[msg_type] = self._writer.register_schema(msg_type, SchemaEncoding.ROS2, text.encode())
        channel_id = self._writer.register_channel(topic, MessageEncoding.CDR, self._schemas[msg_type])
        self._channels[topic] = (channel_id, msg_type)
        self._sequence[topic] = 0
        return channel_id

    def flush_if_due(self) -> bool:
        """Flush when the oldest unflushed message is half a period old; call at least every half period
        so nothing waits longer than `flush_period_s`. Returns whether it flushed."""
        if self._oldest_pending is None or self._closed:
            return False
        if time.monotonic() - self._oldest_pending < self.flush_period_s / 2:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Close the current chunk, append it to the `.part` file and fsync."""
        if self._closed:
            return
        self._writer.flush()  # finishes the chunk and calls `_SyncedFile.flush` (write + fsync)
        self._oldest_pending = None

    def close(self) -> None:
        """Write the summary and footer, fsync and rename `.part` to the final path. Idempotent."""
        if self._closed:
            return
        self._writer.finish()
        self._file.close()
        self._closed = True
        os.replace(self.part_path, self.path)
        _fsync_directory(self.path.parent)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> McapRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Prefix:
    """Read-only view of the first `end` bytes of a binary file."""

    def __init__(self, stream: BinaryIO, end: int) -> None:
        self._stream, self._left = stream, end

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        return data


def _complete_length(stream: BinaryIO) -> int:
    """Length of the magic plus the whole records at the start of an MCAP file (a crash may cut the last)."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    if stream.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an MCAP file (bad magic)")
    end = len(MAGIC)
    while end + 9 <= size:
        stream.seek(end + 1)
        record_end = end + 9 + int.from_bytes(stream.read(8), "little")
        if record_end > size:
            break
        end = record_end
    stream.seek(0)
    return end


@dataclass(frozen=True)
class Record:
    """One recorded message: topic, `pkg/msg/Type`, log time, CDR bytes and the schema it was written with."""

    topic: str
    msg_type: str
    log_time_ns: int
    data: bytes
    schema_text: str


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Messages of a finished or crashed (`.part`) recording in file order, up to its last whole record."""
    with open(path, "rb") as stream:
        reader = NonSeekingReader(_Prefix(stream, _complete_length(stream)))  # type: ignore[arg-type]
        try:
            for schema, channel, message in reader.iter_messages(log_time_order=False):
                if schema is None:
                    raise ValueError(f"{path}: topic {channel.topic!r} has no schema; not a ros2 recording")
                yield Record(channel.topic, schema.name, message.log_time, message.data, schema.data.decode())
        except EndOfFile:  # no footer: the writer crashed after its last flush
            return


def recover(part_path: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Rewrite a crashed `X.mcap.part` as a complete, indexed `X.mcap` (or `path`); returns the new path."""
    part_path = Path(part_path)
    if path is None:
        if not part_path.name.endswith(PART_SUFFIX):
            raise ValueError(f"give the output path: {part_path} does not end in {PART_SUFFIX}")
        path = part_path.with_name(part_path.name[: -len(PART_SUFFIX)])
    # ".recovering", not ".part": the default output's part name is the input
    with McapRecorder(path, flush_period_s=3600.0, part_suffix=".recovering") as out:
        for record in iter_records(part_path):
            out.write_serialized(record.topic, record.msg_type, record.data, record.log_time_ns,
                                 schema_text=record.schema_text)
    return out.path
