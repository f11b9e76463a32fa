"""Our episodes <-> the LeRobotDataset v3 layout, so data moves between this project and LeRobot tools.

Why images go in as PNG inside the parquet (feature dtype "image") and not as mp4 video: PNG is lossless,
so `export_lerobot` then `import_lerobot` gives back the same bytes (actions and images bit-identical), which
a verifier or value function trained on either side needs. Written with pyarrow alone (no pandas, no
`datasets`); `tests/unit/test_lerobot_io.py` reads every export with LeRobot's own `LeRobotDataset`.

Layout of an export ``OUT`` (the v3 layout; LeRobot reads it with ``LeRobotDataset(repo_id, root=OUT)``)::

    meta/info.json                              codebase_version v3.0, fps, features, totals; "exported_by"
    meta/tasks.parquet                          task (the index, our instruction) -> task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode, with "vla_steering/meta" (our meta, JSON)
    meta/stats.json                             min / max / mean / std / count per numeric and image feature
    data/chunk-000/file-000.parquet             one row per frame, many episodes per file

An episode of T actions becomes T+1 frames: frame t holds observation t (``observation.images.<cam>``,
``observation.state`` = proprio, ``observation.depth.<cam>`` when recorded) with ``action`` = actions[t],
``next.reward`` and ``next.success``. Frame T is the observation after the last action: ``is_terminal``
is true there and its action, reward and success are zero (LeRobot keeps no separate final observation).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_runtime.dataset import Episode, EpisodeDataset, write_dataset_header, write_episode
from vla_runtime.io import atomic_write_text, check_output_dir, manifest_is, staged_dir

CODEBASE_VERSION = "v3.0"
EXPORTED_BY = "vla_steering"
META_COLUMN = "vla_steering/meta"
IMAGE_PREFIX = "observation.images."
DEPTH_PREFIX = "observation.depth."
CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default
DATA_FILE_MB = 100  # a data file is closed past this many MB of frames, LeRobot's default
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SCALAR_FEATURES = {  # LeRobot's own per-frame columns plus ours
    "timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
    "task_index": "int64", "next.reward": "float32", "next.success": "bool", "is_terminal": "bool",
}


def _pa():
    """pyarrow, imported on use so `vla --help` stays light."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportConfig:
    """`vla dataset export-lerobot`: dataset folders -> one LeRobot v3 folder."""

    sources: tuple[str, ...]
    out: str
    robot_type: str = ""  # info.json robot_type; "" = the episodes' meta["arm"]
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("give at least one dataset folder to export, got none")
        for src in self.sources:
            if not (Path(src) / "dataset.json").is_file():
                raise FileNotFoundError(f"{src} is not a dataset folder (no dataset.json)")
        if not self.out:
            raise ValueError(f"out must name a folder, got {self.out!r}")


def is_lerobot_export(folder: Path) -> bool:
    """A previous `export-lerobot` output (its meta/info.json says so): the only folder an export replaces."""
    return manifest_is("meta/info.json", "exported_by", EXPORTED_BY)(folder)


def export_lerobot(cfg: ExportConfig) -> dict:
    """Write every episode of `cfg.sources` as one LeRobot v3 dataset at `cfg.out` (atomically) -> summary."""
    out = check_output_dir(cfg.out, is_lerobot_export, "LeRobot export", inputs=cfg.sources, overwrite=cfg.overwrite)
    data = EpisodeDataset(list(cfg.sources))
    if len(data) == 0:
        raise ValueError(f"no episodes in {', '.join(cfg.sources)}; nothing to export")
    with staged_dir(out) as tmp:
        summary = _write_export(tmp, data, cfg.robot_type)
    return {"out": str(out), **summary}


def _features(first: Episode) -> dict:
    spec = first.meta["action_spec"]
    features: dict[str, dict] = {}
    for cam, frames in first.images.items():
        features[IMAGE_PREFIX + cam] = {"dtype": "image", "shape": list(frames.shape[1:]),
                                        "names": ["height", "width", "channels"]}
    for cam, frames in first.depth.items():
        features[DEPTH_PREFIX + cam] = {"dtype": "float32", "shape": list(frames.shape[1:]),
                                        "names": ["height", "width"]}
    features["observation.state"] = {"dtype": "float32", "shape": [first.proprio.shape[1]], "names": None}
    features["action"] = {"dtype": "float32", "shape": [first.actions.shape[1]], "names": list(spec["names"])}
    for name, dtype in SCALAR_FEATURES.items():
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _layout(ep: Episode) -> tuple:
    """What must agree across episodes for one feature table."""
    return (tuple((c, a.shape[1:]) for c, a in ep.images.items()), tuple((c, a.shape[1:]) for c, a in ep.depth.items()),
            ep.proprio.shape[1], ep.actions.shape[1], float(ep.meta["action_spec"]["control_hz"]))


def _arrow_schema(features: dict):
    pa, _ = _pa()
    fields = []
    for name, ft in features.items():
        if ft["dtype"] == "image":
            fields.append(pa.field(name, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
        elif name.startswith(DEPTH_PREFIX):
            fields.append(pa.field(name, pa.list_(pa.list_(pa.float32()))))
        elif ft["shape"] == [1]:
            fields.append(pa.field(name, pa.from_numpy_dtype(np.dtype(ft["dtype"]))))
        else:
            fields.append(pa.field(name, pa.list_(pa.float32(), ft["shape"][0])))
    return pa.schema(fields)


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _episode_table(ep: Episode, features: dict, schema, episode_index: int, first_index: int, task_index: int,
                   fps: float):
    pa, _ = _pa()
    t = ep.length
    n = t + 1
    pad = np.zeros((1, ep.actions.shape[1]), np.float32)
    columns = {}
    for name in features:
        if name.startswith(IMAGE_PREFIX):
            frames = ep.images[name[len(IMAGE_PREFIX):]]
            columns[name] = [{"bytes": _png(f), "path": None} for f in frames]
        elif name.startswith(DEPTH_PREFIX):
            columns[name] = [f.tolist() for f in ep.depth[name[len(DEPTH_PREFIX):]]]
    columns["observation.state"] = list(ep.proprio)
    columns["action"] = list(np.concatenate([ep.actions, pad]))
    columns["timestamp"] = (np.arange(n) / fps).astype(np.float32)
    columns["frame_index"] = np.arange(n, dtype=np.int64)
    columns["episode_index"] = np.full(n, episode_index, np.int64)
    columns["index"] = np.arange(first_index, first_index + n, dtype=np.int64)
    columns["task_index"] = np.full(n, task_index, np.int64)
    columns["next.reward"] = np.concatenate([ep.rewards, [0.0]]).astype(np.float32)
    columns["next.success"] = np.concatenate([ep.successes, [False]])
    columns["is_terminal"] = np.arange(n) == t
    return pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)


class _RollingWriter:
    """Parquet files under `pattern`, a new one past `limit_mb` (chunk folders of CHUNKS_SIZE files)."""

    def __init__(self, root: Path, pattern: str, schema, limit_mb: float) -> None:
        self.root, self.pattern, self.schema, self.limit = root, pattern, schema, limit_mb * 2**20
        self.chunk = self.file = 0
        self.writer = None
        self.size = 0

    def write(self, table) -> tuple[int, int]:
        _, pq = _pa()
        if self.writer is not None and self.size + table.nbytes > self.limit:
            self.close()
            self.file += 1
            if self.file == CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        if self.writer is None:
            path = self.root / self.pattern.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer, self.size = pq.ParquetWriter(path, self.schema, compression="snappy"), 0
        self.writer.write_table(table)
        self.size += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _Stats:
    """Running min / max / sum / sum of squares of one feature (per element, or per channel for images)."""

    def __init__(self) -> None:
        self.min = self.max = self.sum = self.sq = None
        self.count = 0

    def add(self, x: np.ndarray) -> None:  # x: (N, ...) float64
        lo, hi, s, q = x.min(axis=0), x.max(axis=0), x.sum(axis=0), (x * x).sum(axis=0)
        if self.min is None:
            self.min, self.max, self.sum, self.sq = lo, hi, s, q
        else:
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
            self.sum, self.sq = self.sum + s, self.sq + q
        self.count += len(x)

    def to_dict(self) -> dict:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sq / self.count - mean * mean, 0.0))
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": mean.tolist(), "std": std.tolist(),
                "count": [self.count]}


def _add_stats(stats: dict[str, _Stats], ep: Episode) -> None:
    for cam, frames in ep.images.items():  # LeRobot's image stats: per channel, in [0, 1], shape (3, 1, 1)
        pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
        stats.setdefault(IMAGE_PREFIX + cam, _Stats()).add(pixels)
    stats.setdefault("observation.state", _Stats()).add(ep.proprio.astype(np.float64))
    stats.setdefault("action", _Stats()).add(ep.actions.astype(np.float64))


def _stats_json(stats: dict[str, _Stats]) -> dict:
    out = {}
    for name, s in stats.items():
        d = s.to_dict()
        if name.startswith(IMAGE_PREFIX):
            d = {k: (v if k == "count" else [[[x]] for x in v]) for k, v in d.items()}
        out[name] = d
    return out


def _write_export(root: Path, data: EpisodeDataset, robot_type: str) -> dict:
    pa, pq = _pa()
    first = data.load_episode(0)
    features = _features(first)
    layout = _layout(first)
    fps = float(first.meta["action_spec"]["control_hz"])
    schema = _arrow_schema(features)
    frames = _RollingWriter(root, DATA_PATH, schema, DATA_FILE_MB)
    tasks: dict[str, int] = {}
    rows, stats = [], {}
    total = 0
    try:
        for k in range(len(data)):
            ep = first if k == 0 else data.load_episode(k)
            if _layout(ep) != layout:
                raise ValueError(f"{data.episode_path(k)}: cameras, image sizes, proprio/action dims or control rate "
                                 f"{_layout(ep)} differ from the first episode's {layout}; export them separately")
            task = ep.meta["instruction"]
            task_index = tasks.setdefault(task, len(tasks))
            chunk, file = frames.write(_episode_table(ep, features, schema, k, total, task_index, fps))
            rows.append({"episode_index": k, "tasks": [task], "length": ep.length + 1, "data/chunk_index": chunk,
                         "data/file_index": file, "dataset_from_index": total,
                         "dataset_to_index": total + ep.length + 1, "meta/episodes/chunk_index": 0,
                         "meta/episodes/file_index": 0, META_COLUMN: json.dumps(ep.meta, sort_keys=True)})
            _add_stats(stats, ep)
            total += ep.length + 1
    finally:
        frames.close()
    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path)
    _write_tasks(root / "meta" / "tasks.parquet", tasks)
    atomic_write_text(root / "meta" / "stats.json", json.dumps(_stats_json(stats), indent=1))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type or first.meta["arm"],
        "total_episodes": len(data),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": 200,
        "fps": int(round(fps)) if math.isclose(fps, round(fps)) else fps,
        "splits": {"train": f"0:{len(data)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
        "exported_by": EXPORTED_BY,
    }
    atomic_write_text(root / "meta" / "info.json", json.dumps(info, indent=4))
    return {"episodes": len(data), "frames": total, "tasks": len(tasks)}


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """tasks.parquet as pandas writes a frame indexed by task (LeRobot reads it with `pd.read_parquet`)."""
    pa, pq = _pa()
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                      "task": pa.array(list(tasks), pa.string())})
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportConfig:
    """`vla dataset import-lerobot`: a LeRobot v3 folder written by `export-lerobot` -> our dataset folder."""

    source: str
    out: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not (Path(self.source) / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"{self.source} is not a LeRobot dataset (no meta/info.json)")
        if not self.out:
            raise ValueError(f"out must name a folder, got {self.out!r}")


def is_lerobot_import(folder: Path) -> bool:
    """A previous `import-lerobot` output: a dataset folder whose collection says it came from LeRobot."""
    from vla_runtime.dataset import collection_source

    return collection_source(folder) == "lerobot"


def import_lerobot(cfg: ImportConfig) -> dict:
    """Write every episode of the LeRobot folder `cfg.source` into a new dataset folder (atomically)."""
    out = check_output_dir(cfg.out, is_lerobot_import, "LeRobot import", inputs=[cfg.source],
                           overwrite=cfg.overwrite)
    count = 0
    with staged_dir(out) as tmp:
        write_dataset_header(tmp, {"source": "lerobot", "from": str(Path(cfg.source).resolve())})
        for k, ep in enumerate(read_lerobot(cfg.source)):
            write_episode(tmp, k, ep)
            count += 1
    return {"out": str(out), "episodes": count}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_parquet(path: Path):
    _, pq = _pa()
    import pyarrow as pa

    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {path}") from None
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: corrupt or unreadable parquet file: {e}") from e


def read_lerobot(root: str | Path) -> Iterator[Episode]:
    """Episodes of a LeRobot v3 folder written by `export_lerobot`, in episode order; errors name the file."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    info = _read_json(info_path)
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise ValueError(f"{info_path}: codebase_version {info.get('codebase_version')!r}; "
                         f"this reader supports {CODEBASE_VERSION}")
    features = info.get("features")
    if not isinstance(features, dict) or "action" not in features or "observation.state" not in features:
        raise ValueError(f"{info_path}: features must include 'action' and 'observation.state'")
    videos = [k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") == "video"]
    if videos:
        raise ValueError(f"{info_path}: features {videos} are stored as video (lossy); only image features "
                         f"(PNG in the parquet) import bit-identically, so video is not supported")
    episode_files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not episode_files:
        raise FileNotFoundError(f"no episode table under {root / 'meta' / 'episodes'}")
    rows = []
    for path in episode_files:
        table = _read_parquet(path)
        if META_COLUMN not in table.column_names:
            raise ValueError(f"{path}: no '{META_COLUMN}' column: this dataset was not written by "
                             f"`vla dataset export-lerobot`, and the v3 layout alone lacks the camera intrinsics "
                             f"and action spec an episode needs")
        rows += [(r, path) for r in table.to_pylist()]
    rows.sort(key=lambda rp: rp[0]["episode_index"])
    indices = [r["episode_index"] for r, _ in rows]
    if indices != list(range(info.get("total_episodes", -1))):
        raise ValueError(f"{info_path}: total_episodes {info.get('total_episodes')!r} but the episode tables under "
                         f"{root / 'meta' / 'episodes'} list episodes {indices}")
    files: dict[tuple[int, int], tuple[Path, dict]] = {}
    for row, path in rows:
        key = (row["data/chunk_index"], row["data/file_index"])
        if key not in files:
            data_path = root / info.get("data_path", DATA_PATH).format(chunk_index=key[0], file_index=key[1])
            files.clear()  # episodes are in file order: keep one data file in memory
            files[key] = (data_path, _frames_by_episode(_read_parquet(data_path), data_path))
        data_path, by_episode = files[key]
        yield _episode(row, path, data_path, by_episode, features)


def _frames_by_episode(table, path: Path) -> dict:
    for name in ("episode_index", "frame_index", "index"):
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r}")
    episodes = table.column("episode_index").to_numpy()
    out = {}
    for k in np.unique(episodes):
        out[int(k)] = table.filter(episodes == k)
    return out


def _column(table, name: str, path: Path):
    if name not in table.column_names:
        raise ValueError(f"{path}: missing column {name!r}")
    return table.column(name)


def _episode(row: dict, episodes_path: Path, data_path: Path, by_episode: dict, features: dict) -> Episode:
    from PIL import Image

    k = row["episode_index"]
    where = f"{data_path} (episode {k})"
    table = by_episode.get(k)
    if table is None:
        raise ValueError(f"{data_path}: no frames of episode {k}, which {episodes_path} places there")
    n = table.num_rows
    if n != row["length"] or n != row["dataset_to_index"] - row["dataset_from_index"]:
        raise ValueError(f"{where}: {n} frames, but {episodes_path} says length {row['length']} "
                         f"(index {row['dataset_from_index']}..{row['dataset_to_index']})")
    order = np.argsort(_column(table, "frame_index", data_path).to_numpy())
    if not np.array_equal(_column(table, "frame_index", data_path).to_numpy()[order], np.arange(n)):
        raise ValueError(f"{where}: frame_index is not 0..{n - 1}")
    table = table.take(order)
    terminal = _column(table, "is_terminal", data_path).to_numpy(zero_copy_only=False)
    if n < 2 or not terminal[-1] or terminal[:-1].any():
        raise ValueError(f"{where}: is_terminal must be true on the last of >= 2 frames only, got {terminal.tolist()}")
    images, depth = {}, {}
    for name in features:
        if name.startswith(IMAGE_PREFIX):
            frames = []
            for t, cell in enumerate(_column(table, name, data_path).to_pylist()):
                try:
                    img = Image.open(io.BytesIO(cell["bytes"]))
                    img.load()
                except (OSError, TypeError, ValueError) as e:
                    raise ValueError(f"{where}: frame {t} of {name} is not a readable image: {e}") from e
                if img.mode != "RGB":
                    raise ValueError(f"{where}: frame {t} of {name} is {img.mode}, expected RGB")
                frames.append(np.asarray(img))
            images[name[len(IMAGE_PREFIX):]] = _stack(frames, where, name)
        elif name.startswith(DEPTH_PREFIX):
            rows = _column(table, name, data_path).to_pylist()
            depth[name[len(DEPTH_PREFIX):]] = _stack([np.asarray(r, np.float32) for r in rows], where, name)
    actions = _stack(_column(table, "action", data_path).to_pylist(), where, "action", np.float32)
    meta = json.loads(row[META_COLUMN])
    try:
        return Episode(images=images, depth=depth,
                       proprio=_stack(_column(table, "observation.state", data_path).to_pylist(), where,
                                      "observation.state", np.float32),
                       actions=actions[:-1],
                       rewards=_column(table, "next.reward", data_path).to_numpy()[:-1].astype(np.float32),
                       successes=_column(table, "next.success", data_path).to_numpy(zero_copy_only=False)[:-1]
                       .astype(bool), meta=meta)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{where}: invalid episode: {e}") from e


def _stack(items: list, where: str, name: str, dtype=None) -> np.ndarray:
    try:
        return np.stack([np.asarray(x, dtype=dtype) for x in items])
    except ValueError as e:
        raise ValueError(f"{where}: {name} frames differ in shape: {e}") from e


__all__ = ["ExportConfig", "ImportConfig", "export_lerobot", "import_lerobot", "read_lerobot"]
