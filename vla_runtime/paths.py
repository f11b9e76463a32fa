"""Where the package's bundled files live, so relative model paths work from any directory.

Installed (`pip install .` or `colcon build`), the bundled models, configs and launch files sit in
`<prefix>/share/vla_steering`; in a source checkout they sit at the repository root. A relative path
such as the default `models/policy` is taken from the working directory when it exists there (a user's
own `models/` wins), and otherwise from the package share root.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "vla_steering"


def share_roots() -> list[Path]:
    """Candidate share roots, most specific first: the source checkout (when running from one), every
    AMENT_PREFIX_PATH entry (a sourced ROS 2 workspace: what the ament index searches) and this
    interpreter's prefix."""
    roots: list[Path] = []
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "package.xml").is_file() and (checkout / "vla_runtime").is_dir():
        roots.append(checkout)
    for prefix in [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]:
        roots.append(Path(prefix) / "share" / PACKAGE)
    seen: set[Path] = set()
    return [r for r in roots if r.is_dir() and not (r in seen or seen.add(r))]


def resolve_data_path(path: str | Path) -> Path:
    """An absolute path as given; a relative one from the working directory when it exists there, else
    from the first share root that has it, else as given (so the caller's "does not exist" error names
    the path the user typed)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for root in share_roots():
        if (root / p).exists():
            return root / p
    return p
