"""The one way our nodes run: init, build, spin on a SingleThreadedExecutor, shut down cleanly.

Ctrl-C / SIGTERM end the spin and the process exits 0 (what `ros2 launch` and the launcher expect), even
when the signal lands while a callback is publishing; a start-up configuration the node refuses exits
with the reason instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def run_node(make_node: Callable, name: str, args: list[str] | None = None,
             startup_errors: tuple[type[BaseException], ...] = (), on_start: Callable | None = None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if on_start is not None:
            on_start(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except startup_errors as e:
        raise SystemExit(f"{name}: {e}") from None
    except Exception:
        if rclpy.ok():
            raise  # a real failure
        # SIGINT shut the context down under a running callback (e.g. mid-publish): a clean stop
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
