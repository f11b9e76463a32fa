"""`vla serve`: any policy of ours behind the openpi websocket protocol (`vla_runtime/remote_protocol.py`).

A plain openpi client (`openpi_client.WebsocketClientPolicy`) gets one chunk per `infer`; our `remote`
backend uses the extensions to draw n chunks from one encoding with its own noise, so steering runs on the
client against a policy served elsewhere. One model serves every connection (a lock around it); a bad
request is answered with an error text frame and the connection stays open; an oversized frame closes only
its connection (1009); the server keeps serving either way.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch

from vla_runtime.policy.protocol import Context
from vla_runtime.remote_protocol import MAX_FRAME_BYTES, PROTOCOL, SERVER, VERSION, RemoteMapping
from vla_runtime.types import Observation

log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the server refuses (its text goes back to the client)."""


class PolicyServer:
    """The policy's side of the protocol, independent of the socket: `metadata()` and `handle(request)`."""

    def __init__(self, policy, mapping: RemoteMapping | None = None, seed: int = 0) -> None:
        self.policy, self.mapping = policy, mapping or RemoteMapping()
        cfg = policy.config
        missing = [c for c in cfg.cameras if c not in self.mapping.images]
        if missing:
            raise ValueError(f"the mapping names no request key for camera(s) {missing} the policy reads")
        self._lock = threading.Lock()
        self._generator = torch.Generator().manual_seed(seed)  # plain openpi requests bring no noise

    def metadata(self) -> dict:
        cfg = self.policy.config
        spec = cfg.action_spec
        return {"protocol": PROTOCOL, "server": SERVER, "version": VERSION,
                "keys": self.mapping.to_dict(cfg.cameras), "policy_config": cfg.to_dict(),
                "action_horizon": cfg.horizon, "action_dim": cfg.action_dim, "control_hz": spec.control_hz,
                "image_sizes": {c: list(s) for c, s in cfg.camera_sizes.items()}, "proprio_dim": cfg.proprio_dim,
                "extensions": ["n", "noise", "steps", "anchor", "encode_only"], "max_frame_bytes": MAX_FRAME_BYTES,
                "policy_fingerprint": _fingerprint(self.policy)}

    def observation(self, request: dict) -> Observation:
        cfg, keys = self.policy.config, self.mapping
        images = {}
        for camera in cfg.cameras:
            image = request.get(keys.images[camera])
            size = tuple(cfg.camera_sizes[camera])
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise RequestError(f"{keys.images[camera]!r} must be a uint8 (H, W, 3) image, got {_describe(image)}")
            if image.shape[:2] != size:
                raise RequestError(f"{keys.images[camera]!r} must be {size[0]}x{size[1]} (the policy's "
                                   f"{camera} camera), got {image.shape[0]}x{image.shape[1]}")
            images[camera] = image.copy()  # unpacked frames are read-only views of the message
        state = request.get(keys.state)
        if not isinstance(state, np.ndarray) or state.shape != (cfg.proprio_dim,) or not np.isfinite(state).all():
            raise RequestError(f"{keys.state!r} must be a finite ({cfg.proprio_dim},) array, got {_describe(state)}")
        prompt = request.get(keys.prompt)
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(f"{keys.prompt!r} must be a non-empty instruction string, got {_describe(prompt)}")
        return Observation(images=images, instruction=prompt, proprio=state.astype(np.float32))

    def handle(self, request: object) -> dict:
        """One request -> its reply; RequestError for anything malformed."""
        if not isinstance(request, dict):
            raise RequestError(f"a request must be a map, got {type(request).__name__}")
        obs = self.observation(request)
        cfg = self.policy.config
        anchor = request.get("anchor")
        if anchor is not None and (not isinstance(anchor, np.ndarray) or anchor.shape != (4,)
                                   or not np.isfinite(anchor).all()):
            raise RequestError(f"'anchor' must be a finite (4,) array, got {_describe(anchor)}")
        anchor = None if anchor is None else anchor.astype(np.float32)  # a writable copy of the frame's bytes
        n = request.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1024):
            raise RequestError(f"'n' must be an integer in 1..1024, got {n!r}")
        noise = request.get("noise")
        shape = (n or 1, cfg.horizon, cfg.action_dim)
        if noise is not None and (not isinstance(noise, np.ndarray) or noise.shape != shape
                                  or not np.isfinite(noise).all()):
            raise RequestError(f"'noise' must be a finite {shape} array, got {_describe(noise)}")
        steps = request.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise RequestError(f"'steps' must be a positive integer, got {steps!r}")
        t0 = time.perf_counter()
        with self._lock:
            try:
                ctx: Context = self.policy.encode(obs, anchor=anchor)
                if request.get("encode_only"):
                    reply = {}
                else:
                    noise_t = None if noise is None else torch.from_numpy(noise.astype(np.float32))
                    generator = self._generator if noise is None else None
                    chunks = self.policy.sample(ctx, shape[0], generator, noise=noise_t, steps=steps)
                    reply = {self.mapping.actions: chunks if n is not None else chunks[0]}
            except ValueError as e:  # the policy's own checks (steps it has no sampler for, ...)
                raise RequestError(str(e)) from None
        if ctx.anchor is not None:
            reply["anchor"] = np.asarray(ctx.anchor, np.float32)
        reply["server_timing"] = {"infer_ms": (time.perf_counter() - t0) * 1e3}
        return reply


def _fingerprint(policy) -> str:
    """The served weights' fingerprint, so a client's results name the model they came from."""
    from vla_runtime.checkpoint import weights_fingerprint

    return weights_fingerprint(policy) if isinstance(policy, torch.nn.Module) else getattr(policy, "fingerprint", "")


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"array {x.dtype} {x.shape}"
    return "nothing" if x is None else f"{type(x).__name__} {str(x)[:40]!r}"


def listen(server: PolicyServer, host: str = "127.0.0.1", port: int = 8000):
    """A bound websockets server for `server` (port 0: a free one, `.socket.getsockname()`); call its
    `serve_forever()` (and `shutdown()` from another thread to stop it)."""
    from openpi_client import msgpack_numpy
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve as ws_serve

    packer = msgpack_numpy.Packer()
    metadata = packer.pack(server.metadata())

    def connection(ws) -> None:
        ws.send(metadata)
        while True:
            try:
                frame = ws.recv()
            except ConnectionClosed:
                return
            try:
                request = msgpack_numpy.unpackb(frame) if isinstance(frame, bytes) else None
                if request is None:
                    raise RequestError("requests are binary msgpack frames, got text")
                reply = packer.pack(server.handle(request))
            except RequestError as e:
                ws.send(f"bad request: {e}")
                continue
            except Exception as e:  # a malformed frame msgpack cannot read, or a policy failure
                log.exception("request failed")
                ws.send(f"request failed: {type(e).__name__}: {e}")
                continue
            try:
                ws.send(reply)
            except ConnectionClosed:
                return

    return ws_serve(connection, host, port, max_size=MAX_FRAME_BYTES, compression=None)


def serve(server: PolicyServer, host: str = "127.0.0.1", port: int = 8000, ready=None) -> None:
    """Serve until interrupted. ready: called with the bound (host, port) once the socket listens."""
    with listen(server, host, port) as ws_server:
        bound = ws_server.socket.getsockname()[:2]
        log.info("serving %s on ws://%s:%d", SERVER, *bound)
        if ready is not None:
            ready(bound)
        ws_server.serve_forever()


class ServerThread:
    """`vla serve` in a thread of this process on a free localhost port (or `port`), for `vla bench`'s remote
    rows and tests: `with ServerThread(policy) as server: RemotePolicy(server.url)`."""

    def __init__(self, policy, port: int = 0) -> None:
        self.ws = listen(PolicyServer(policy), "127.0.0.1", port)
        self.port = self.ws.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.ws.serve_forever, name="vla_serve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.ws.shutdown()
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
