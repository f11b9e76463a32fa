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
