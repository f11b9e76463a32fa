"""The `remote` backend: the `Policy` contract over the openpi websocket protocol, through the maintained
`openpi-client` package, against `vla serve` (or any server that states our extensions in its metadata).

The client draws the noise itself (as the torch backend draws it), so the same generator gives the same
chunks remotely and in-process. `encode` asks the server for the observation's anchor only (an anchor
policy latches its first one, `EpisodeEncoder`); `sample` sends the observation, that anchor, n and the
noise. There is no conditioning token on this side: scorers that read one are refused by the steering
builder (`provides_token`). A lost connection is re-opened on the next call, so a restarted server is
picked up; the failing call raises ConnectionError naming the server.
"""

from __future__ import annotations

import numpy as np
import torch

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.protocol import Context
from vla_runtime.remote_protocol import PROTOCOL, SERVER, VERSION, RemoteMapping
from vla_runtime.types import Observation

URL_PREFIXES = ("ws://", "wss://")


def is_url(path: object) -> bool:
    return isinstance(path, str) and path.startswith(URL_PREFIXES)


class RemotePolicy:
    provides_token = False  # the conditioning token stays on the server

    def __init__(self, url: str, mapping: RemoteMapping | None = None, open_timeout_s: float = 10.0) -> None:
        if not is_url(url):
            raise ValueError(f"a remote policy is a ws:// or wss:// URL, got {url!r}")
        self.url, self.mapping, self.open_timeout_s = url, mapping or RemoteMapping(), open_timeout_s
        self._client = None
        metadata = self._connect()
        self.metadata = metadata
        self.config = PolicyConfig.from_dict(metadata["policy_config"])
        self._check_keys(metadata)

    @property
    def action_spec(self):
        return self.config.action_spec

    def _connect(self) -> dict:
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        try:
            self._client = WebsocketClientPolicy(self.url)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach the policy server at {self.url}: {e}") from None
        metadata = self._client.get_server_metadata()
        if not isinstance(metadata, dict) or metadata.get("server") != SERVER or "policy_config" not in metadata:
            raise ValueError(f"{self.url} is not a {SERVER} server (metadata {str(metadata)[:200]}): the remote "
                             f"backend needs its extensions (n chunks per encoding, client noise)")
        if metadata.get("protocol") != PROTOCOL or metadata.get("version") != VERSION:
            raise ValueError(f"{self.url} speaks {metadata.get('protocol')} v{metadata.get('version')}, this client "
                             f"{PROTOCOL} v{VERSION}")
        return metadata

    def _check_keys(self, metadata: dict) -> None:
        ours, theirs = self.mapping.to_dict(self.config.cameras), metadata.get("keys")
        if ours != theirs:
            raise ValueError(f"observation/action mapping mismatch with {self.url}: this client sends {ours}, the "
                             f"server reads {theirs}; configure the same keys on both sides")

    def _call(self, request: dict) -> dict:
        for attempt in (0, 1):  # a server that restarted since the last call: reconnect once
            try:
                if self._client is None:
                    self._connect()
                return self._client.infer(request)
            except RuntimeError as e:  # the server's error text frame
                raise ValueError(f"policy server {self.url}: {e}") from None
            except Exception as e:  # a dropped connection (websockets' ConnectionClosed) or a refused one
                self._client = None
                if attempt == 1 or isinstance(e, ValueError):
                    raise ConnectionError(f"policy server {self.url} unavailable: {type(e).__name__}: {e}") from None
        raise AssertionError("unreachable")

    def _request(self, obs: Observation, anchor: np.ndarray | None) -> dict:
        keys = self.mapping
        request = {keys.images[c]: np.ascontiguousarray(obs.images[c]) for c in self.config.cameras
                   if c in obs.images}
        missing = [c for c in self.config.cameras if c not in obs.images]
        if missing:
            raise ValueError(f"policy needs camera(s) {missing}, observation has {sorted(obs.images)}")
        request[keys.state] = np.asarray(obs.proprio, np.float32)
        request[keys.prompt] = obs.instruction
        if anchor is not None:
            request["anchor"] = np.asarray(anchor, np.float32)
        return request

    def encode(self, obs: Observation, anchor: np.ndarray | None = None) -> Context:
        reply = self._call({**self._request(obs, anchor), "encode_only": True})
        used = reply.get("anchor")
        return Context(cond=torch.zeros(1, 0), observation=obs,
                       anchor=None if used is None else np.asarray(used, np.float32).copy())

    def sample(self, ctx: Context, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        shape = (n, self.config.horizon, self.config.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32)  # as the torch backend draws it
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        request = {**self._request(ctx.observation, ctx.anchor), "n": n, "noise": noise.numpy()}
        if steps is not None:
            request["steps"] = int(steps)
        chunks = np.asarray(self._call(request)[self.mapping.actions], np.float32)
        if chunks.shape != shape or not np.isfinite(chunks).all():
            raise ValueError(f"policy server {self.url} returned actions {chunks.shape}, expected finite {shape}")
        return chunks

    def reset(self) -> None:
        """The server keeps no episode state."""
