"""Atomic file writes: a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
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
    """Move a fully written folder `tmp` (flat, e.g. from `tempfile.mkdtemp`) onto `out` with ordinary
    permissions: the old folder is renamed aside first and removed only after the new one is in place,
    so a crash never leaves `out` missing both."""
    for f in tmp.iterdir():
        f.chmod(0o644)
    tmp.chmod(0o755)
    old = None
    if out.exists():
        old = out.parent / f".old-{out.name}-{tmp.name[-8:]}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
