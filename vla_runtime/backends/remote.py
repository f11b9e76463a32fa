"""The `remote` backend: the `Policy` contract over the openpi websocket protocol, through the maintained
`openpi-client` package, against `vla serve` (or any server that states our extensions in its metadata).

The client draws the noise itself (as the torch backend draws it), so the same generator gives the same
chunks remotely and in-process. `encode` asks the server for the observation's anchor only (an anchor
policy latches its first one, `EpisodeEncoder`); `sample` sends the observation, that anchor, n and the
noise (the anchor round trip runs only for an episode's first decision). There is no conditioning token on
this side: scorers that read one are refused by the steering builder (`provides_token`). A lost connection
is re-opened on the next call, so a restarted server is picked up; the failing call raises ConnectionError
naming the server.
"""

from __future__ import annotations

import numpy as np
import torch

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.protocol import Context
from vla_runtime.remote_protocol import PROTOCOL, SERVER, VERSION, ForeignPolicy, RemoteMapping, load_foreign
from vla_runtime.types import PROPRIO_NAMES, ActionSpec, Observation

URL_PREFIXES = ("ws://", "wss://")


def is_url(path: object) -> bool:
    return isinstance(path, str) and path.startswith(URL_PREFIXES)


def is_remote(path: object) -> bool:
    """A `vla serve` URL, or a JSON file describing a foreign openpi server (`ForeignPolicy`)."""
    return is_url(path) or str(path).endswith(".json")


class RemotePolicy:
    provides_token = False  # the conditioning token stays on the server

    def __init__(self, url: str, mapping: RemoteMapping | None = None, open_timeout_s: float = 10.0) -> None:
        """url: a `vla serve` URL, or a JSON file describing a foreign openpi server (`ForeignPolicy`: its
        URL, request keys, image size, state layout and action mapping)."""
        self.foreign: ForeignPolicy | None = None
        if not is_url(url):
            if not is_remote(url):
                raise ValueError(f"a remote policy is a ws:// or wss:// URL or a foreign server's .json "
                                 f"description, got {url!r}")
            self.foreign = load_foreign(url)
            url, mapping = self.foreign.url, self.foreign.keys
        self.url, self.mapping, self.open_timeout_s = url, mapping or RemoteMapping(), open_timeout_s
        self._client = None
        metadata = self._connect()
        self.metadata = metadata
        if self.foreign is not None:
            self.config = PolicyConfig(image_size=self.foreign.image_size, camera=next(iter(self.mapping.images)),
                                       action_spec=ActionSpec(**self.foreign.action_spec))
            return
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
        if self.foreign is not None:  # what a foreign server states must match its description
            wrong = {k: (v, metadata.get(k) if isinstance(metadata, dict) else None)
                     for k, v in self.foreign.expect_metadata.items()
                     if not isinstance(metadata, dict) or metadata.get(k) != v}
            if wrong:
                raise ValueError(f"{self.url} metadata differs from its description (expected, got): {wrong}")
            return metadata
        if not isinstance(metadata, dict) or metadata.get("server") != SERVER or "policy_config" not in metadata:
            raise ValueError(f"{self.url} is not a {SERVER} server (metadata {str(metadata)[:200]}): describe a "
                             f"foreign openpi server in a .json file (url, keys, image_size, state, actions) and "
                             f"pass that as the policy")
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
        if self.foreign is not None:  # the server's own state layout, from our proprio by name
            request[keys.state] = np.asarray([obs.proprio[PROPRIO_NAMES.index(n)] for n in self.foreign.state],
                                             np.float32)
        else:
            request[keys.state] = np.asarray(obs.proprio, np.float32)
        request[keys.prompt] = obs.instruction
        if anchor is not None:
            request["anchor"] = np.asarray(anchor, np.float32)
        return request

    def encode(self, obs: Observation, anchor: np.ndarray | None = None) -> Context:
        if self.foreign is not None or anchor is not None or not self.config.anchor:
            # nothing to learn from the server: the episode's anchor is latched already, the policy has
            # none, or (foreign) it encodes inside each infer. The server encodes in `sample` either way.
            return Context(cond=torch.zeros(1, 0), observation=obs,
                           anchor=None if anchor is None else np.asarray(anchor, np.float32).copy())
        reply = self._call({**self._request(obs, anchor), "encode_only": True})
        used = reply.get("anchor")
        return Context(cond=torch.zeros(1, 0), observation=obs,
                       anchor=None if used is None else np.asarray(used, np.float32).copy())

    def sample(self, ctx: Context, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if self.foreign is not None:
            return self._sample_foreign(ctx, n, noise, steps)
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

    def _sample_foreign(self, ctx: Context, n: int, noise, steps) -> np.ndarray:
        """n plain openpi `infer` calls (a foreign server draws its own noise: not reproducible from our
        generator), each chunk mapped onto our action convention and clipped to our bounds."""
        if noise is not None or steps is not None:
            raise ValueError(f"{self.url} is a foreign openpi server: it draws its own noise and steps")
        a, spec = self.foreign.actions, self.config.action_spec
        chunks = []
        for _ in range(n):
            theirs = np.asarray(self._call(self._request(ctx.observation, None))[self.mapping.actions], np.float32)
            if theirs.shape != (a.horizon, a.dim) or not np.isfinite(theirs).all():
                raise ValueError(f"policy server {self.url} returned actions {theirs.shape}, its description says "
                                 f"finite ({a.horizon}, {a.dim})")
            ours = theirs[: spec.chunk_length][:, list(a.take)] * np.asarray(a.scale, np.float32) + \
                np.asarray(a.offset, np.float32)
            chunks.append(np.clip(ours, spec.low_array(), spec.high_array()))
        return np.stack(chunks).astype(np.float32)

    def reset(self) -> None:
        """The server keeps no episode state."""
