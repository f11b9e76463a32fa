"""A node for tests and benchmarks that talks to a running graph over real DDS.

It spins in a background thread, records what it subscribes to with arrival times, and waits on
conditions with deadlines (never fixed sleeps): matched endpoints, messages, lifecycle states, service
replies. Its own rclpy context keeps it independent of any other rclpy use in the process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}


class Probe:
    def __init__(self, name: str = "probe") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        # Not MultiThreadedExecutor: rclpy's busy-loops and delays callbacks (see ros_nodes/policy_node.py).
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._received: dict[str, list] = defaultdict(list)  # topic -> [(arrival s, msg)]
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the context was shut down under us
            self.executor.spin()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- topics --------------------------------------------------------------------------------------
    def subscribe(self, msg_type, topic: str, qos=10, callback: Callable | None = None):
        def record(msg) -> None:
            with self._lock:
                self._received[topic].append((time.monotonic(), msg))
            if callback is not None:
                callback(msg)

        return self.node.create_subscription(msg_type, topic, record, qos)

    def received(self, topic: str, since: float = 0.0) -> list:
        """Messages on `topic` that arrived after `since` (time.monotonic())."""
        with self._lock:
            return [m for t, m in self._received[topic] if t > since]

    def arrivals(self, topic: str, since: float = 0.0) -> list[float]:
        with self._lock:
            return [t for t, _ in self._received[topic] if t > since]

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    # --- waiting -------------------------------------------------------------------------------------
    @staticmethod
    def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.01,
                 repeat: Callable[[], object] | None = None, every: float = 0.5,
                 alive: Callable[[], bool] | None = None):
        """Return predicate()'s first truthy value; TimeoutError naming `what` after `timeout` seconds.
        repeat: called every `every` s meanwhile (republish a best-effort message until it lands); alive:
        False ends the wait at once with RuntimeError (the process under test died)."""
        deadline = time.monotonic() + timeout
        next_repeat = time.monotonic()
        while True:
            value = predicate()
            if value:
                return value
            now = time.monotonic()
            if alive is not None and not alive():
                raise RuntimeError(f"the process under test exited while waiting for {what}")
            if now > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            if repeat is not None and now >= next_repeat:
                repeat()
                next_repeat = now + every
            time.sleep(poll)

    def wait_message(self, topic: str, timeout: float, since: float = 0.0, where: Callable | None = None):
        def newest():
            msgs = [m for m in self.received(topic, since) if where is None or where(m)]
            return msgs[-1] if msgs else None

        return self.wait_for(newest, timeout, f"a message on {topic}")

    def wait_matched(self, endpoint, timeout: float = 20.0) -> None:
        """A publisher until a subscription matched it, or a subscription until a publisher did."""
        count = endpoint.get_subscription_count if hasattr(endpoint, "get_subscription_count") \
            else endpoint.get_publisher_count
        self.wait_for(lambda: count() > 0, timeout, f"a match on {endpoint.topic_name}")

    # --- services ------------------------------------------------------------------------------------
    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        client = self.node.create_client(srv_type, name)
        try:
            self.wait_for(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            self.wait_for(future.done, timeout, f"the reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def change_state(self, node: str, transition: str, timeout: float = 60.0) -> bool:
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition]
        return bool(self.call(ChangeState, f"{node}/change_state", request, timeout).success)

    def lifecycle_state(self, node: str) -> str:
        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

    def bring_up(self, node: str) -> None:
        """Configure and activate a lifecycle node from wherever it is, then open its `~/enable` gate."""
        from std_srvs.srv import SetBool

        if self.lifecycle_state(node) == "unconfigured" and not self.change_state(node, "configure"):
            raise AssertionError(f"{node} refused to configure")
        if self.lifecycle_state(node) == "inactive" and not self.change_state(node, "activate"):
            raise AssertionError(f"{node} refused to activate")
        if not self.call(SetBool, f"{node}/enable", SetBool.Request(data=True)).success:
            raise AssertionError(f"{node} refused ~/enable")

    def set_parameters(self, node: str, **values) -> list:
        """-> [SetParametersResult] in the order given."""
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self.call(SetParameters, f"{node}/set_parameters", request).results)
