"""The wire format of `vla serve` and the `remote` backend: the openpi websocket protocol (msgpack-numpy frames;
the server sends its metadata on connect; `infer(obs) -> {"actions": (H, A)}`), plus extensions a plain
openpi client never sends and can ignore.

Extensions (request keys): `n` (draw n chunks from one encoding -> `actions` (n, H, A)), `noise` ((n, H, A)
float32, the client's own draw, so the same generator gives the same chunks remotely as in-process), `steps`
(DDIM steps), `anchor` ((4,) the episode's latched anchor), `encode_only` (return only the anchor this
observation gives: the first decision of an episode latches it). Errors come back as a text frame, as openpi
servers send them, and the connection stays open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL = "openpi-websocket"
SERVER = "vla_steering"
VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a frame larger than this is refused (the connection is closed, 1009)


@dataclass(frozen=True)
class RemoteMapping:
    """Where each part of an observation travels in an openpi request, and where the actions come back.
    Defaults follow openpi's examples; a server states its own in its metadata (`keys`), and the client
    refuses to run against a server whose keys differ, naming both."""

    images: dict[str, str] = field(default_factory=lambda: {"static": "observation/image",
                                                             "wrist": "observation/wrist_image"})
    state: str = "observation/state"
    prompt: str = "prompt"
    actions: str = "actions"

    def __post_init__(self) -> None:
        keys = [*self.images.values(), self.state, self.prompt, self.actions]
        if any(not isinstance(k, str) or not k for k in keys) or len(set(keys)) != len(keys):
            raise ValueError(f"remote keys must be distinct non-empty strings, got images={self.images} "
                             f"state={self.state!r} prompt={self.prompt!r} actions={self.actions!r}")

    def to_dict(self, cameras: tuple[str, ...] | None = None) -> dict:
        images = {c: k for c, k in self.images.items() if cameras is None or c in cameras}
        return {"images": images, "state": self.state, "prompt": self.prompt, "actions": self.actions}


@dataclass(frozen=True)
class ForeignActions:
    """How a foreign server's action chunk (horizon, dim) becomes ours: robot[:, i] = server[:, take[i]] *
    scale[i] + offset[i] over our first `chunk_length` steps (its normalisation undone, its convention
    mapped onto `ActionSpec`)."""

    horizon: int
    dim: int
    take: tuple[int, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.dim < 1:
            raise ValueError(f"actions horizon and dim must be >= 1, got {self.horizon} and {self.dim}")
        if not (len(self.take) == len(self.scale) == len(self.offset)):
            raise ValueError(f"actions take/scale/offset need one entry per action of ours, got {len(self.take)}, "
                             f"{len(self.scale)} and {len(self.offset)}")
        bad = [k for k in self.take if not 0 <= k < self.dim]
        if bad:
            raise ValueError(f"actions take indices {bad} are outside the server's 0..{self.dim - 1}")


@dataclass(frozen=True)
class ForeignPolicy:
    """A policy served by a foreign openpi server (pi0 / pi0.5 under openpi, another lab's model): what
    `vla_steering` servers state in their metadata, written down by the user. Read from a JSON file passed
    as the policy with `--backend remote` (`load_foreign`)."""

    url: str
    keys: RemoteMapping
    image_size: tuple[int, int]  # (H, W) the server reads
    state: tuple[str, ...]  # our proprio names (`vla_runtime.types.PROPRIO_NAMES`), in the server's order
    actions: ForeignActions
    action_spec: dict = field(default_factory=dict)  # our `ActionSpec` fields it overrides (bounds, rate, ...)
    expect_metadata: dict = field(default_factory=dict)  # values the server's metadata must state

    def __post_init__(self) -> None:
        from vla_runtime.types import PROPRIO_NAMES, ActionSpec

        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must be ws:// or wss://, got {self.url!r}")
        unknown = [n for n in self.state if n not in PROPRIO_NAMES]
        if unknown or not self.state:
            raise ValueError(f"state must name our proprio entries {list(PROPRIO_NAMES)}, got unknown {unknown}")
        spec = ActionSpec(**self.action_spec)
        if len(self.actions.take) != spec.dim:
            raise ValueError(f"actions.take maps {len(self.actions.take)} actions, our action spec has {spec.dim}")
        if self.actions.horizon < spec.chunk_length:
            raise ValueError(f"the server's horizon {self.actions.horizon} is shorter than our chunk length "
                             f"{spec.chunk_length}")


def load_foreign(path) -> ForeignPolicy:
    """A foreign server's description (JSON) -> `ForeignPolicy`; errors name the file."""
    import json
    from pathlib import Path

    try:
        d = json.loads(Path(path).read_text())
        keys = RemoteMapping(**d.pop("keys"))
        actions = ForeignActions(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("actions").items()})
        return ForeignPolicy(keys=keys, actions=actions, image_size=tuple(d.pop("image_size")),
                             state=tuple(d.pop("state")), **d)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"foreign policy description {path}: {type(e).__name__}: {e}") from None
