"""The per-episode result store: one JSON line per finished episode, appended as it finishes.

A run that is killed loses at most the episode being written (one `os.write` per record, then fsync), a
re-run skips the episodes already stored (`done()`), and stores from several machines merge by key.
Each record carries its key (variation, method, config_id, task, arm, seed), the outcome, the evaluation
config and its provenance (code revision, model fingerprints, worker), so a report can say what produced it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterable
from pathlib import Path

from vla_runtime.io import atomic_write_text
from vla_runtime.stats import wilson_interval

SCHEMA = 1
KEY_FIELDS = ("variation", "method", "config_id", "task", "arm", "seed")
_KEY_TYPES = {"variation": str, "method": str, "config_id": str, "task": str, "arm": str, "seed": int}
ROW_GROUP = ("variation", "method", "config_id", "task", "arm")  # one `vla eval`-style row per value


def episode_key(record: dict) -> tuple:
    """The record's identity, in `KEY_FIELDS` order: two records with the same key are the same episode."""
    return tuple(record["key"][f] for f in KEY_FIELDS)


def config_id(config: dict) -> str:
    """A short stable name of an evaluation config (its canonical JSON's sha256)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def code_revision() -> tuple[str, bool]:
    """(HEAD sha, dirty) of the git checkout holding this package; ("unknown", False) when it is not one (an
    installed wheel, no git). Untracked files do not count as dirty. Never raises."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        # A package installed inside some other checkout (a venv in a repository) is not that checkout's code.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return "unknown", False
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, ValueError, subprocess.SubprocessError):
        return "unknown", False


def fingerprint(folder: str | Path) -> str:
    """16 hex of sha256 over a model folder's defining files: `model.safetensors` + `config.json` of a
    checkpoint, `export.json` + every `*.onnx` of an ONNX export. Names are hashed with the bytes, so a
    renamed graph changes it too."""
    folder = Path(folder)
    if (folder / "export.json").is_file():
        files = [folder / "export.json", *sorted(folder.glob("*.onnx"))]
    else:
        files = [f for f in (folder / "model.safetensors", folder / "config.json") if f.is_file()]
    if not files:
        raise FileNotFoundError(f"{folder} holds no model.safetensors, config.json or export.json: not a checkpoint "
                                f"or ONNX export folder")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode("utf-8") + b"\0")
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def check_record(record: dict) -> None:
    """ValueError naming the field and echoing its value unless `record` is a schema-1 store record."""
    if not isinstance(record, dict):
        raise ValueError(f"a store record must be a JSON object, got {record!r:.80}")
    if record.get("schema") != SCHEMA:
        raise ValueError(f"record schema must be {SCHEMA}, got {record.get('schema')!r}")
    key = record.get("key")
    if not isinstance(key, dict):
        raise ValueError(f"record key must be an object with {', '.join(KEY_FIELDS)}, got {key!r:.80}")
    for field, kind in _KEY_TYPES.items():
        value = key.get(field)
        # bool is an int to Python; a seed of true is a bug upstream, not seed 1
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            raise ValueError(f"record key.{field} must be a non-empty {kind.__name__}, got {value!r:.80}")
    if not isinstance(record.get("success"), bool):
        raise ValueError(f"record success must be true or false, got {record.get('success')!r:.80}")
    if not isinstance(record.get("config", {}), dict):
        raise ValueError(f"record config must be an object, got {record['config']!r:.80}")


class ResultStore:
    """A JSON-lines file of episode records. Appends are one write each, under an exclusive `flock`, so
    processes may share a store; a line without its newline is the torn end of a killed write: `records()`
    skips it (with a warning) and the next `append` cuts it off."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    def append(self, record: dict) -> None:
        check_record(record)
        try:
            line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record {episode_key(record)} cannot be stored as JSON: {exc}") from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            # The lock makes "the tail is torn" mean "its writer died": a live appender holds the lock
            # until its whole line is in the file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            line = self._repair_tail(fd) + line
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes); the disk may be full")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def _repair_tail(self, fd: int) -> bytes:
        """Cut off a torn last line (or, when it is a whole record missing only its newline, as a hand-edited
        file may be, return the newline to write first), so a resumed run never buries a corrupt line."""
        size = os.fstat(fd).st_size
        if size == 0:
            return b""
        with self.path.open("rb") as f:
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
        if tail.endswith(b"\n"):
            return b""
        cut = tail.rfind(b"\n")
        if cut < 0 and size > len(tail):
            raise ValueError(f"{self.path}: its last line is over 1 MiB and not terminated; not a result store?")
        if _parses(tail[cut + 1:]):
            return b"\n"
        os.ftruncate(fd, size - len(tail) + cut + 1)
        return b""

    def records(self) -> list[dict]:
        """Every record, in file order; [] when the file does not exist."""
        try:
            with self.path.open("rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # no half-appended line from a live writer
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        out = []
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            last = number == len(lines)  # the text after the final newline: a line that was never finished
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                if last:
                    warnings.warn(f"{self.path}:{number}: skipping a torn last line (a killed write): {raw[:60]!r}",
                                  stacklevel=2)
                    continue
                raise ValueError(f"{self.path}:{number}: not a JSON record ({exc}): {raw[:80]!r}") from None
            try:
                check_record(record)
            except ValueError as exc:
                raise ValueError(f"{self.path}:{number}: {exc}") from None
            out.append(record)
        return out

    def done(self) -> set[tuple]:
        """The keys already stored: the episodes a resumed run skips."""
        return {episode_key(r) for r in self.records()}

    def __len__(self) -> int:
        return len(self.records())


def _parses(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def deduplicate(records: Iterable[dict]) -> tuple[list[dict], int, int]:
    """-> (records with the first of each key kept, duplicates dropped, conflicts among them: the same
    episode stored with a different outcome, which a deterministic simulator should never produce)."""
    first: dict[tuple, dict] = {}
    duplicates = conflicts = 0
    for r in records:
        key = episode_key(r)
        if key in first:
            duplicates += 1
            conflicts += first[key]["success"] != r["success"]
        else:
            first[key] = r
    return list(first.values()), duplicates, conflicts


def merge_stores(paths: list[str | Path], out: str | Path) -> dict:
    """Writes the de-duplicated union of the stores to `out` atomically.
    -> {"inputs": records read, "written", "duplicates", "conflicts"}."""
    out = Path(out)
    if out.expanduser().resolve() in {Path(p).expanduser().resolve() for p in paths}:
        raise ValueError(f"merged store {out} is one of the inputs; write it to a new file")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"result store {', '.join(missing)} not found")
    read = [r for p in paths for r in ResultStore(p).records()]
    merged, duplicates, conflicts = deduplicate(read)
    atomic_write_text(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in merged))
    return {"inputs": len(read), "written": len(merged), "duplicates": duplicates, "conflicts": conflicts}


def rows(records: list[dict]) -> list[dict]:
    """Records -> `vla eval`-style rows (the shape `vla_app.report` renders), one per (variation, method,
    config_id, task, arm) in order of first appearance, outcomes in seed order, the record's config merged in.
    A key stored twice is refused: de-duplicate first (`deduplicate`)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in records:
        group = tuple(r["key"][f] for f in ROW_GROUP)
        seeds = groups.setdefault(group, {})
        if r["key"]["seed"] in seeds:
            raise ValueError(f"episode {episode_key(r)} is stored twice; de-duplicate the records first")
        seeds[r["key"]["seed"]] = r
    out = []
    for group, by_seed in groups.items():
        seeds = sorted(by_seed)
        outcomes = [int(by_seed[s]["success"]) for s in seeds]
        k, n = sum(outcomes), len(outcomes)
        lo, hi = wilson_interval(k, n)
        first = by_seed[seeds[0]]
        out.append({**first.get("config", {}), **dict(zip(ROW_GROUP, group)), "episodes": n, "successes": k,
                    "success_rate": k / n, "ci95": [round(lo, 4), round(hi, 4)], "seeds": seeds,
                    "outcomes": outcomes})
    return out
