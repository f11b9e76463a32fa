"""Atomic file and folder writes, and the output checks that keep a command from deleting a user's data."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a fully written folder `tmp` (e.g. from `tempfile.mkdtemp`, a sibling of `out`) onto `out`:
    the old folder is renamed aside first and removed only after the new one is in place, so a crash
    never leaves `out` missing both. Callers decide beforehand whether `out` may be replaced
    (`check_output_dir`); a file at `out` is never replaced."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not an output folder; refusing to replace it")
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give the folder normal permissions
    old = None
    if out.exists():
        old = out.parent / f".old-{out.name}-{tmp.name[-8:]}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_tmp_sibling(out: Path) -> Path:
    """A fresh hidden folder beside `out` (same filesystem, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """`with staged_dir(out) as tmp:` write the folder's files into `tmp`; on success it replaces `out`
    (`replace_dir`), on any failure only `tmp`, which this call created, is removed. Callers check first
    that `out` may be replaced (`check_output_dir`)."""
    tmp = make_tmp_sibling(out)
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(out: str | Path, is_previous: Callable[[Path], bool], what: str,
                     inputs: Iterable[str | Path | None] = (), overwrite: bool = False) -> Path:
    """Refuse, before any work, an output folder whose replacement could lose data.

    `out` may be missing, an empty folder, or a previous output of the same kind (`is_previous`, which
    reads its manifest); anything else needs `overwrite`. Never allowed: a file, a folder that equals or
    contains an input (`--out` equal to `--policy`, `--out .` above `models/`), the working directory
    or one of its ancestors. -> `out` as given."""
    out = Path(out)
    resolved = out.expanduser().resolve()
    for given in inputs:
        if given is None or str(given) == "expert":
            continue
        source = Path(given).expanduser().resolve()
        if source == resolved or resolved in source.parents:
            raise ValueError(f"output {out} {'is' if source == resolved else 'contains'} the input {given}; "
                             f"choose another output folder")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"output {out} is the working directory or one of its parents; choose a new folder")
    if not out.exists():
        return out
    if not out.is_dir():
        raise FileExistsError(f"output {out} is a file, not a folder; remove it or choose another output")
    if overwrite or not any(out.iterdir()) or is_previous(out):
        return out
    raise FileExistsError(f"output {out} exists and is not a {what} (its manifest is missing or of another "
                          f"kind); pass --overwrite to replace it, or choose another folder")


def manifest_is(file: str, key: str, value: str) -> Callable[[Path], bool]:
    """`is_previous` for `check_output_dir`: folder/`file` is a JSON object whose `key` equals `value`."""

    def check(folder: Path) -> bool:
        try:
            data = json.loads((folder / file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(data, dict) and data.get(key) == value

    return check


def check_output_file(path: str | Path, what: str) -> Path:
    """Fail now, not after the work, when `path` cannot be written: it is a folder, or its parent is a file
    or not writable. A missing parent is fine when its nearest existing ancestor is a writable folder
    (the writer creates it)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    parent = path.expanduser().absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: cannot write into {parent}")
    return path
