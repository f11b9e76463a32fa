"""On-disk episode format for robot demonstrations (numpy + stdlib only).

Many collector processes write episodes into one folder while training later
needs cheap random access to single steps, so every episode is a zip of small
`.npy` members and every write is atomic.

Layout of a dataset folder ``DIR``::

    DIR/dataset.json                    {"format": "vla_steering.episodes", "format_version": 1,
                                         "collection": {...collector parameters...}}
    DIR/episodes/episode_000000.npz     one complete episode
    DIR/episodes/episode_000001.npz
    DIR/episodes/.tmp-...               partial write of a killed writer (ignored by readers)

Each ``episode_{index:06d}.npz`` is a zip archive (members deflated, i.e. lossless)
holding one ``.npy`` member per array; with T actions:

    meta.json                      the episode's meta dict plus "length": T
    proprio.npy                    (T+1, P) float32, observation before each action plus the final one
    actions.npy                    (T, A) float32
    rewards.npy                    (T,) float32
    successes.npy                  (T,) bool, success predicate after step t
    images/<camera>/000017.npy     (H, W, 3) uint8, frame t = 0..T, one member per frame
    depth/<camera>/000017.npy      (H, W) float32 metres, optional, one member per frame

One member per frame means reading one training step inflates only that frame.
``meta`` holds at least: task, variation, quality, seed (int), instruction (str),
arm, success (bool), cameras (name -> ``CameraInfo.to_dict()``) and action_spec
(``ActionSpec.to_dict()``).

Atomicity: an episode is written to ``episodes/.tmp-episode_{index:06d}-{pid}-{random}.npz``,
fsynced and ``os.replace``-d onto its final name, so a file with a final name is always
complete. ``dataset.json`` is created the same way and never silently overwritten: a
resumed collection with different ``collection`` parameters is refused. Leftover
``.tmp-*`` files are ignored by readers and removed by ``clean_partial`` (or by
``write_episode`` when it rewrites the same index).
"""

from __future__ import annotations

import copy
import json
import operator
import os
import re
import secrets
import time
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from vla_runtime.types import ActionSpec, CameraInfo

FORMAT_NAME = "vla_steering.episodes"
FORMAT_VERSION = 1
HEADER_NAME = "dataset.json"
EPISODES_DIR = "episodes"
TMP_PREFIX = ".tmp-"
REQUIRED_META_KEYS = ("task", "variation", "quality", "seed", "instruction", "arm", "success", "cameras", "action_spec")
ARRAY_MEMBERS = ("proprio.npy", "actions.npy", "rewards.npy", "successes.npy")

_EPISODE_RE = re.compile(r"^episode_(\d{6,})\.npz$")
_CAMERA_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_FRAME_RE = re.compile(r"^(images|depth)/([^/]+)/(\d{6})\.npy$")
_MAX_OPEN_ZIPS = 32
_ABSENT = object()

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- episode in memory


@dataclass(kw_only=True)
class Episode:
    """One demonstration: T actions and the T+1 observations around them."""

    images: dict[str, np.ndarray]  # camera -> (T+1, H, W, 3) uint8
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T+1, H, W) float32 metres
    proprio: np.ndarray  # (T+1, P) float32
    actions: np.ndarray  # (T, A) float32
    rewards: np.ndarray  # (T,) float32
    successes: np.ndarray  # (T,) bool
    meta: dict

    def __post_init__(self) -> None:
        self.actions = _float_array("actions", self.actions, ndim=2, finite=True)
        t = self.actions.shape[0]
        if t < 1:
            raise ValueError(f"actions must hold at least one step, got shape {self.actions.shape}")
        self.proprio = _float_array("proprio", self.proprio, ndim=2, finite=True)
        if self.proprio.shape[0] != t + 1:
            raise ValueError(f"proprio must have T+1={t + 1} rows (actions has T={t}), got shape {self.proprio.shape}")
        self.rewards = _float_array("rewards", self.rewards, ndim=1, finite=True)
        if self.rewards.shape != (t,):
            raise ValueError(f"rewards must have shape ({t},) to match actions, got {self.rewards.shape}")
        successes = np.asarray(self.successes)
        if successes.dtype != np.bool_ or successes.shape != (t,):
            raise ValueError(f"successes must be ({t},) bool, got {successes.dtype} {successes.shape}")
        self.successes = successes
        self._check_images(t)
        self._check_depth()
        self.meta = _check_meta(self.meta, t)
        self._check_against_meta()

    @property
    def length(self) -> int:
        """Number of actions T (there are T+1 observations)."""
        return int(self.actions.shape[0])

    def _check_images(self, t: int) -> None:
        if not isinstance(self.images, dict) or not self.images:
            raise ValueError(f"images must be a non-empty dict camera -> array, got {type(self.images).__name__}")
        for name, img in self.images.items():
            _check_camera_name(name, "images")
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 4 or img.shape[3] != 3:
                raise ValueError(f"images['{name}'] must be (T+1, H, W, 3) uint8, got {_describe(img)}")
            if img.shape[0] != t + 1:
                raise ValueError(f"images['{name}'] must have T+1={t + 1} frames, got shape {img.shape}")

    def _check_depth(self) -> None:
        if not isinstance(self.depth, dict):
            raise TypeError(f"depth must be a dict camera -> array, got {type(self.depth).__name__}")
        for name, d in self.depth.items():
            if name not in self.images:
                raise ValueError(f"depth['{name}'] has no matching camera in images {sorted(self.images)}")
            arr = _float_array(f"depth['{name}']", d, ndim=3, finite=False)
            if arr.shape != self.images[name].shape[:3]:
                raise ValueError(f"depth['{name}'] shape {arr.shape} != image frames {self.images[name].shape[:3]}")
            self.depth[name] = arr

    def _check_against_meta(self) -> None:
        cameras = self.meta["cameras"]
        for name, img in self.images.items():
            if name not in cameras:
                raise ValueError(f"meta['cameras'] lacks an entry for image camera '{name}' (has {sorted(cameras)})")
            info = CameraInfo.from_dict(cameras[name])
            if (info.height, info.width) != img.shape[1:3]:
                raise ValueError(
                    f"images['{name}'] frames are {img.shape[2]}x{img.shape[1]} "
                    f"but meta['cameras']['{name}'] says {info.width}x{info.height}"
                )
        spec = ActionSpec.from_dict(self.meta["action_spec"])
        if spec.dim != self.actions.shape[1]:
            raise ValueError(f"actions have {self.actions.shape[1]} dims but meta['action_spec'] names {spec.names}")


def _describe(x: Any) -> str:
    return f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def _check_camera_name(name: Any, where: str) -> None:
    """Camera names become zip member paths, so they must be plain tokens."""
    if not isinstance(name, str) or not _CAMERA_RE.match(name):
        raise ValueError(f"{where} camera name must match {_CAMERA_RE.pattern}, got {name!r}")


def _float_array(name: str, x: Any, *, ndim: int, finite: bool) -> np.ndarray:
    """Accept any floating array and store it as float32 (the on-disk dtype)."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating) or arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D float array, got {_describe(arr)}")
    arr = arr.astype(np.float32, copy=False)
    if finite and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"{name} must be finite, got {arr[tuple(bad)]} at index {bad} (shape {arr.shape})")
    return arr


def _check_meta(meta: Any, t: int) -> dict:
    """Return meta without the on-disk 'length' key; raise on missing or mistyped required keys."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"meta is missing required keys {missing} (has {sorted(meta)})")
    if isinstance(meta["seed"], bool) or not isinstance(meta["seed"], int):
        raise TypeError(f"meta['seed'] must be an int, got {meta['seed']!r}")
    if not isinstance(meta["instruction"], str) or not meta["instruction"].strip():
        raise ValueError(f"meta['instruction'] must be a non-empty string, got {meta['instruction']!r}")
    if not isinstance(meta["success"], bool):
        raise TypeError(f"meta['success'] must be a bool, got {meta['success']!r}")
    if not isinstance(meta["cameras"], dict):
        raise TypeError(f"meta['cameras'] must be a dict name -> CameraInfo.to_dict(), got {meta['cameras']!r}")
    if not isinstance(meta["action_spec"], dict):
        raise TypeError(f"meta['action_spec'] must be ActionSpec.to_dict(), got {meta['action_spec']!r}")
    if "length" in meta and meta["length"] != t:
        raise ValueError(f"meta['length'] is reserved for T={t}, got {meta['length']!r}")
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must be JSON-serialisable: {e}") from e
    return {k: v for k, v in meta.items() if k != "length"}


# --------------------------------------------------------------------------- writing


def episode_path(root: PathLike, index: int) -> Path:
    """Final path of episode `index` under dataset folder `root`."""
    if index < 0:
        raise ValueError(f"episode index must be >= 0, got {index}")
    return Path(root) / EPISODES_DIR / f"episode_{index:06d}.npz"


def write_episode(root: PathLike, index: int, episode: Episode, *, overwrite: bool = False) -> Path:
    """Atomically write `episode` as episode `index`; return its final path.

    Leftover temp files for the same index (a killed earlier attempt) are removed
    first. Refuses to replace a complete episode unless `overwrite`.
    """
    final = episode_path(root, index)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"episode {index} already exists at {final}; pass overwrite=True to replace it")
    for stale in final.parent.glob(f"{TMP_PREFIX}{final.stem}-*"):
        stale.unlink(missing_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.stem}-{os.getpid()}-{secrets.token_hex(4)}.npz"
    try:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                _write_episode_members(zf, episode)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    return final


def _write_episode_members(zf: zipfile.ZipFile, ep: Episode) -> None:
    meta = dict(ep.meta, length=ep.length)
    zf.writestr("meta.json", json.dumps(meta, indent=1, allow_nan=False))
    for name, arr in zip(ARRAY_MEMBERS, (ep.proprio, ep.actions, ep.rewards, ep.successes)):
        _write_npy(zf, name, arr)
    for kind, frames in (("images", ep.images), ("depth", ep.depth)):
        for cam, stack in frames.items():
            for t, frame in enumerate(stack):
                _write_npy(zf, f"{kind}/{cam}/{t:06d}.npy", frame)


def _write_npy(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr)
    with zf.open(name, "w", force_zip64=arr.nbytes > (1 << 30)) as member:
        np.lib.format.write_array(member, arr, allow_pickle=False)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some platforms/filesystems cannot fsync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_dataset_header(root: PathLike, collection: dict) -> Path:
    """Create `root/dataset.json`, or check that an existing one has the same `collection`.

    Raising on a different `collection` keeps a resumed run with other parameters
    from mixing its episodes into the folder.
    """
    root = Path(root)
    path = root / HEADER_NAME
    try:
        wanted = json.loads(json.dumps(collection, allow_nan=False))  # compare in JSON form (tuples -> lists)
    except (TypeError, ValueError) as e:
        raise ValueError(f"collection must be JSON-serialisable: {e}") from e
    if not isinstance(wanted, dict):
        raise TypeError(f"collection must be a dict, got {type(collection).__name__}")
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "collection": wanted}
        if _create_exclusive(path, json.dumps(header, indent=2, sort_keys=True) + "\n"):
            return path
    _check_collection(path, read_dataset_header(root)["collection"], wanted)
    return path


def _create_exclusive(path: Path, text: str) -> bool:
    """Atomically create `path` with `text`; False if another process created it first."""
    tmp = path.parent / f"{TMP_PREFIX}{path.stem}-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if `path` exists, unlike os.replace
    except FileExistsError:
        return False
    except OSError:  # filesystem without hard links
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _check_collection(path: Path, stored: dict, wanted: dict) -> None:
    if stored == wanted:
        return
    diffs = [
        f"{k}: existing={stored.get(k, '<absent>')!r} new={wanted.get(k, '<absent>')!r}"
        for k in sorted(set(stored) | set(wanted))
        if stored.get(k, _ABSENT) != wanted.get(k, _ABSENT)
    ]
    raise ValueError(
        f"{path} was written with different collection parameters; refusing to mix episodes. "
        f"Differing keys: {'; '.join(diffs)}"
    )


def read_dataset_header(root: PathLike) -> dict:
    """Load and validate `root/dataset.json`."""
    path = Path(root) / HEADER_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no dataset header at {path} (is {root} a dataset folder?)")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{path} has format {got!r}, expected {FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {header.get('format_version')!r}, this reader supports {FORMAT_VERSION}"
        )
    if not isinstance(header.get("collection"), dict):
        raise ValueError(f"{path} field 'collection' must be a dict, got {header.get('collection')!r}")
    return header


def collection_source(root: PathLike) -> str | None:
    """The `source` a converter wrote into a dataset's collection ("lerobot", "mcap", ...), None for any
    other folder: how a converter recognises its own previous output before replacing it."""
    try:
        return read_dataset_header(root)["collection"].get("source")
    except (OSError, ValueError):
        return None


def existing_episodes(root: PathLike) -> set[int]:
    """Indices of complete episode files (temp files of unfinished writes are ignored)."""
    folder = Path(root) / EPISODES_DIR
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for name in os.listdir(folder) if (m := _EPISODE_RE.match(name))}


def clean_partial(root: PathLike, *, older_than_s: float = 0.0) -> int:
    """Delete `.tmp-*` leftovers of killed writers; return how many were removed.

    With writers still running, pass `older_than_s` larger than one episode's write
    time so their in-progress files survive.
    """
    root = Path(root)
    cutoff = time.time() - older_than_s
    removed = 0
    for folder in (root, root / EPISODES_DIR):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(f"{TMP_PREFIX}*"):
            try:
                if older_than_s <= 0 or tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
    return removed


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _EpisodeEntry:
    """What the index knows about one episode without inflating any frame."""

    path: Path
    meta: dict  # includes "length"
    length: int
    image_shapes: dict[str, tuple[int, ...]]  # camera -> (H, W, 3)
    depth_cameras: tuple[str, ...]
    action_dim: int
    gripper_index: int


class EpisodeDataset:
    """Random access to the episodes of one or several dataset folders.

    The index is a snapshot taken at construction: episodes written later need a new instance.
    Zip handles are cached per process (the pid is stored), so the object survives `fork`
    and pickling into data-loader workers.
    """

    def __init__(self, roots: PathLike | list[PathLike] | tuple[PathLike, ...]) -> None:
        roots_list = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not roots_list:
            raise ValueError("EpisodeDataset needs at least one dataset folder")
        self.roots = [Path(r) for r in roots_list]
        resolved = [r.resolve() for r in self.roots]
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"dataset folders listed twice: {[str(r) for r in self.roots]}")
        self.headers = [read_dataset_header(r) for r in self.roots]
        self._entries: list[_EpisodeEntry] = []
        for root in self.roots:
            for index in sorted(existing_episodes(root)):
                self._entries.append(_index_episode(episode_path(root, index)))
        lengths = np.array([e.length for e in self._entries], dtype=np.int64)
        episode_ids = np.repeat(np.arange(len(self._entries), dtype=np.int64), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
        ts = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
        self.step_index: np.ndarray = np.stack([episode_ids, ts], axis=1)  # (num_steps, 2) (episode, t)
        self._zips: OrderedDict[Path, zipfile.ZipFile] = OrderedDict()
        self._zips_pid = os.getpid()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def num_steps(self) -> int:
        return int(self.step_index.shape[0])

    def episode_path(self, k: int) -> Path:
        return self._entry(k).path

    def meta(self, k: int) -> dict:
        """Episode k's meta dict (a copy, including 'length')."""
        return copy.deepcopy(self._entry(k).meta)

    def filter(
        self, task: Any = None, variation: Any = None, quality: Any = None, success: bool | None = None
    ) -> list[int]:
        """Episode indices whose meta matches every given field (a list/tuple/set means 'any of')."""
        wanted = {"task": task, "variation": variation, "quality": quality, "success": success}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        return [k for k, e in enumerate(self._entries) if all(_matches(e.meta.get(f), v) for f, v in wanted.items())]

    def load_episode(self, k: int) -> Episode:
        """Read every member of episode k (all frames are inflated)."""
        entry = self._entry(k)
        zf = self._zip(entry.path)
        n = entry.length + 1
        arrays = {name: _read_npy(zf, name, entry.path) for name in ARRAY_MEMBERS}
        images = {
            cam: np.stack([_read_npy(zf, f"images/{cam}/{t:06d}.npy", entry.path) for t in range(n)])
            for cam in entry.image_shapes
        }
        depth = {
            cam: np.stack([_read_npy(zf, f"depth/{cam}/{t:06d}.npy", entry.path) for t in range(n)])
            for cam in entry.depth_cameras
        }
        try:
            return Episode(
                images=images,
                depth=depth,
                proprio=arrays["proprio.npy"],
                actions=arrays["actions.npy"],
                rewards=arrays["rewards.npy"],
                successes=arrays["successes.npy"],
                meta=copy.deepcopy(entry.meta),
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"{entry.path}: invalid episode: {e}") from e

    def get_step(
        self, i: int, chunk_length: int | None = None, cameras: list[str] | None = None, with_depth: bool = False
    ) -> dict:
        """Training sample for global step i, reading only the members it needs.

        `actions` is the chunk actions[t:t+H]; rows past the episode end are padded with
        zero motion and the last gripper command (holding the grasp), and `action_mask`
        marks the real rows. H defaults to the episode's action_spec chunk_length.
        """
        n = self.num_steps
        i = operator.index(i)
        if not -n <= i < n:
            raise IndexError(f"step {i} out of range for {n} steps")
        k, t = (int(x) for x in self.step_index[i])
        entry = self._entries[k]
        h = int(entry.meta["action_spec"]["chunk_length"]) if chunk_length is None else int(chunk_length)
        if h < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        cams = list(entry.image_shapes) if cameras is None else list(cameras)
        for cam in cams:
            if cam not in entry.image_shapes:
                raise KeyError(f"camera '{cam}' not in episode {k} ({entry.path.name}); has {list(entry.image_shapes)}")
            if with_depth and cam not in entry.depth_cameras:
                raise KeyError(f"camera '{cam}' has no depth in episode {k} ({entry.path.name})")
        zf = self._zip(entry.path)
        actions = _checked_member(zf, "actions.npy", entry.path, (entry.length, entry.action_dim), finite=True)
        chunk = action_chunk(actions, t, h, entry.gripper_index)
        proprio = _checked_member(zf, "proprio.npy", entry.path, (entry.length + 1, None), finite=True)
        images = {cam: _checked_member(zf, f"images/{cam}/{t:06d}.npy", entry.path, entry.image_shapes[cam],
                                       dtype=np.uint8) for cam in cams}
        depth = {cam: _checked_member(zf, f"depth/{cam}/{t:06d}.npy", entry.path, entry.image_shapes[cam][:2])
                 for cam in cams} if with_depth else {}
        return {
            "images": images,
            "depth": depth,
            "proprio": proprio[t],
            "instruction": entry.meta["instruction"],
            "actions": chunk[0],
            "action_mask": chunk[1],
            "episode": k,
            "t": t,
        }

    def close(self) -> None:
        """Close the cached zip handles (they reopen on demand)."""
        if self._zips_pid == os.getpid():
            for zf in self._zips.values():
                zf.close()
        self._zips.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zips"] = OrderedDict()  # open files do not pickle; workers reopen
        return state

    def _entry(self, k: int) -> _EpisodeEntry:
        k = operator.index(k)
        if not 0 <= k < len(self._entries):
            raise IndexError(f"episode {k} out of range for {len(self._entries)} episodes")
        return self._entries[k]

    def _zip(self, path: Path) -> zipfile.ZipFile:
        """Cached open handle; a forked child must not share the parent's file offset, so it reopens."""
        if self._zips_pid != os.getpid():
            self._zips = OrderedDict()  # drop (not close) the parent's handles
            self._zips_pid = os.getpid()
        zf = self._zips.get(path)
        if zf is not None:
            self._zips.move_to_end(path)
            return zf
        zf = _open_zip(path)
        self._zips[path] = zf
        while len(self._zips) > _MAX_OPEN_ZIPS:
            self._zips.popitem(last=False)[1].close()
        return zf


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return value in wanted
    return value == wanted


def action_chunk(actions: np.ndarray, t: int, h: int, gripper_index: int) -> tuple[np.ndarray, np.ndarray]:
    """actions[t:t+h], padded past the end with zero motion and the last gripper command."""
    real = actions[t : t + h]
    chunk = np.zeros((h, actions.shape[1]), dtype=np.float32)
    chunk[: len(real)] = real
    chunk[len(real) :, gripper_index] = actions[-1, gripper_index]
    mask = np.zeros(h, dtype=bool)
    mask[: len(real)] = True
    return chunk, mask


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: corrupt or truncated episode file: {e}") from e


def _read_npy(zf: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    try:
        with zf.open(name) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except KeyError:
        raise ValueError(f"{path}: missing member {name}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt member {name}: {e}") from e


def _checked_member(zf: zipfile.ZipFile, name: str, path: Path, shape: tuple[int | None, ...],
                    dtype: type | None = None, finite: bool = False) -> np.ndarray:
    """A member checked as the whole-episode loader checks it (shape from the index, dtype, finite
    values), so a step read alone cannot hand training a NaN action or a wrong-size frame."""
    arr = _read_npy(zf, name, path)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        want = tuple("*" if w is None else w for w in shape)
        raise ValueError(f"{path}: member {name} has shape {arr.shape}, expected {want}")
    if dtype is not None and arr.dtype != dtype:
        raise ValueError(f"{path}: member {name} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{path}: member {name} holds non-finite values (NaN or inf)")
    return arr


def _npy_header(zf: zipfile.ZipFile, name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a member from its header alone (inflates a few hundred bytes)."""
    try:
        with zf.open(name) as member:
            return _read_header(member)
    except KeyError:
        raise ValueError(f"{path}: missing member {name}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt member {name}: {e}") from e


def _read_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(shape), dtype


def _index_episode(path: Path) -> _EpisodeEntry:
    """Validate an episode's layout from its central directory, meta.json and array headers."""
    zf = _open_zip(path)
    try:
        return _index_open_episode(zf, path)
    finally:
        zf.close()


def _index_open_episode(zf: zipfile.ZipFile, path: Path) -> _EpisodeEntry:
    try:
        meta = json.loads(zf.read("meta.json"))
    except KeyError:
        raise ValueError(f"{path}: missing member meta.json") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt member meta.json: {e}") from e
    length = meta.get("length") if isinstance(meta, dict) else None
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"{path}: meta.json needs an int 'length' >= 1, got {length!r}")
    try:
        _check_meta(meta, length)
        spec = ActionSpec.from_dict(meta["action_spec"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: invalid meta.json: {e}") from e
    expected = {
        "proprio.npy": (length + 1, None),
        "actions.npy": (length, spec.dim),
        "rewards.npy": (length,),
        "successes.npy": (length,),
    }
    for name, want in expected.items():
        shape, _ = _npy_header(zf, name, path)
        if len(shape) != len(want) or any(w is not None and s != w for s, w in zip(shape, want)):
            raise ValueError(
                f"{path}: {name} has shape {shape}, expected {tuple('P' if w is None else w for w in want)}"
            )
    frames = _frames_by_camera(zf, path)
    for (kind, cam), ts in frames.items():
        if ts != list(range(length + 1)):
            raise ValueError(f"{path}: {kind}/{cam} has {len(ts)} frames, expected T+1={length + 1}")
    image_shapes = {
        cam: _npy_header(zf, f"images/{cam}/000000.npy", path)[0] for kind, cam in frames if kind == "images"
    }
    if not image_shapes:
        raise ValueError(f"{path}: no image frames")
    return _EpisodeEntry(
        path=path,
        meta=meta,
        length=length,
        image_shapes=image_shapes,
        depth_cameras=tuple(cam for kind, cam in frames if kind == "depth"),
        action_dim=spec.dim,
        gripper_index=spec.gripper_index,
    )


def _frames_by_camera(zf: zipfile.ZipFile, path: Path) -> dict[tuple[str, str], list[int]]:
    """(kind, camera) -> sorted frame numbers, from the central directory (no inflation)."""
    frames: dict[tuple[str, str], list[int]] = {}
    for name in zf.namelist():
        m = _FRAME_RE.match(name)
        if m:
            frames.setdefault((m.group(1), m.group(2)), []).append(int(m.group(3)))
    for ts in frames.values():
        ts.sort()
    return frames


__all__ = [
    "ARRAY_MEMBERS",
    "EPISODES_DIR",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "REQUIRED_META_KEYS",
    "Episode",
    "EpisodeDataset",
    "clean_partial",
    "episode_path",
    "existing_episodes",
    "read_dataset_header",
    "write_dataset_header",
    "write_episode",
]
