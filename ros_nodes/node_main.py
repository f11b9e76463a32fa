"""The one way our nodes run: init, build, spin on a SingleThreadedExecutor, shut down cleanly.

Ctrl-C / SIGTERM end the spin and the process exits 0 (what `ros2 launch` and the launcher expect); a
start-up configuration the node refuses exits with the reason instead of a traceback.

The signals only set a flag that the spin loop polls every `POLL_S` (rclpy's own handlers are not
installed: they shut the rclpy context down from the signal handler, under whatever is still running).
So the shutdown order is always ours: the spin stops, `node.destroy_node()` runs while the context is up
(the policy node joins its inference thread there), then the context goes down. A thread still inside
torch when the interpreter exits aborts the process (`terminate called without an active exception`,
SIGABRT): the sim graph's Ctrl-C did that in one of three tries before. A signal that lands during
start-up (the policy node's configure and warm-up) is acted on once start-up returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

POLL_S = 0.1  # how often the spin loop looks at the stop flag: the latency of Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_node(make_node: Callable, name: str, args: list[str] | None = None,
             startup_errors: tuple[type[BaseException], ...] = (), on_start: Callable | None = None) -> None:
    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in STOP_SIGNALS}
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if on_start is not None:
            on_start(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except startup_errors as e:
        raise SystemExit(f"{name}: {e}") from None
    except Exception:
        if rclpy.ok():
            raise  # a real failure
        # the context was shut down from outside under a running callback: a clean stop
    finally:
        try:
            if node is not None:
                node.destroy_node()  # while the context is up: the node stops its own threads first
        finally:
            rclpy.try_shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
