"""A stand-in for a foreign openpi server (its own keys, state layout, horizon and action normalisation;
metadata without our extensions), shared by the unit and simulator tests of the remote backend."""

from __future__ import annotations

import threading

import numpy as np
from openpi_client import msgpack_numpy
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

HORIZON, DIM = 10, 8  # the foreign chunk: 6 EE deltas in [-1, 1], one unused dim, the gripper in [-1, 1]
STATE = ("q0", "q1", "ee_z", "gripper_width")  # the order the foreign server reads
SCALE = [0.03, 0.03, 0.03, 0.2, 0.2, 0.3, 0.5]
OFFSET = [0, 0, 0, 0, 0, 0, 0.5]
TAKE = [0, 1, 2, 3, 4, 5, 7]


class ForeignServer:
    """Replies actions[t, k] = tanh(state[0] + 0.1 t - 0.05 k) and records the requests it got."""

    def __init__(self, metadata: dict, shape=(HORIZON, DIM)) -> None:
        self.requests: list[dict] = []
        packed = msgpack_numpy.packb(metadata)

        def handler(ws) -> None:
            ws.send(packed)
            while True:
                try:
                    request = msgpack_numpy.unpackb(ws.recv())
                except ConnectionClosed:
                    return
                self.requests.append(request)
                t, k = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
                ws.send(msgpack_numpy.packb({"actions": np.tanh(request["state"][0] + 0.1 * t - 0.05 * k)
                                            .astype(np.float32)}))

        self.ws = serve(handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.ws.socket.getsockname()[1]}"
        threading.Thread(target=self.ws.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.ws.shutdown()
