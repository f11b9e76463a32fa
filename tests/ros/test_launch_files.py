"""launch_testing: `sim_bringup.launch.yaml` itself, through `ros2 launch`'s machinery, closes the loop.

Runs only where `launch_testing` and `launch_ros` import (a workstation with apt ROS 2 Jazzy, the
workspace built with colcon and sourced, so `vla_steering`'s console scripts are installed); they are
not installable from PyPI, so here the module is skipped. Here the same YAML launch file is read by
`ros_nodes.launch_yaml` (tests/unit/test_graph.py) and run as real processes by
tests/ros/test_sim_bringup.py.

The test includes the YAML launch file (through launch_yaml's frontend parser) with a small N/M, waits
for the simulator's `joint_states` and the policy's `joint_trajectory` (the policy autostarts, is
enabled, and takes the sim's instruction), and after shutdown checks every process exited 0. It runs on
its own ROS domain with localhost discovery.
"""

from __future__ import annotations

import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installable from PyPI; runs on a workstation "
                                             "with apt ROS 2 Jazzy")
pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI; runs on a workstation with apt "
                                         "ROS 2 Jazzy")
pytest.importorskip("launch_yaml", reason="launch_yaml (the YAML frontend) is not installable from PyPI; runs on a "
                                          "workstation with apt ROS 2 Jazzy")

import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import AnyLaunchDescriptionSource
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "sim_bringup.launch.yaml"
DOMAIN = 53
ARGUMENTS = {"task": "pick_lift", "seed": "0", "n": "4", "m": "4"}
JOINT_STATES_TIMEOUT_S = 60.0
TRAJECTORY_TIMEOUT_S = 180.0  # model loading and the first steered decision


def installed() -> bool:
    """Whether the sourced workspace has `vla_steering` (the launch file runs its console scripts)."""
    try:
        get_package_share_directory("vla_steering")
    except PackageNotFoundError:
        return False
    return True


# Not a module-level skip: launch_testing's collection hook imports this module outside pytest's own
# skip handling, so the tests skip themselves instead and the launch starts nothing.
INSTALLED = installed()
NOT_INSTALLED = "vla_steering is not installed in the sourced workspace (colcon build; source install/setup.bash)"


@pytest.mark.launch_test
def generate_test_description():
    bringup = [
        SetEnvironmentVariable("ROS_DOMAIN_ID", str(DOMAIN)),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        IncludeLaunchDescription(AnyLaunchDescriptionSource(str(LAUNCH_FILE)), launch_arguments=ARGUMENTS.items()),
    ]
    return LaunchDescription([*(bringup if INSTALLED else []), launch_testing.actions.ReadyToTest()])


class TestSimBringup(unittest.TestCase):
    """While the launch runs: the sim publishes joint states and the policy commands the arm."""

    @classmethod
    def setUpClass(cls):
        if not INSTALLED:
            raise unittest.SkipTest(NOT_INSTALLED)
        cls.context = Context()
        rclpy.init(context=cls.context, domain_id=DOMAIN, signal_handler_options=SignalHandlerOptions.NO)
        cls.node = rclpy.create_node("sim_bringup_probe", context=cls.context)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.shutdown(context=cls.context)

    def wait_for(self, msg_type, topic: str, timeout: float) -> list:
        got = []
        sub = self.node.create_subscription(msg_type, topic, got.append, 10)
        try:
            deadline = time.monotonic() + timeout
            while not got and time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=0.1)
        finally:
            self.node.destroy_subscription(sub)
        return got

    def test_sim_publishes_joint_states(self):
        got = self.wait_for(JointState, "joint_states", JOINT_STATES_TIMEOUT_S)
        self.assertTrue(got, f"no joint_states within {JOINT_STATES_TIMEOUT_S} s")
        self.assertIn("panda_joint1", list(got[0].name))

    def test_policy_commands_the_arm(self):
        got = self.wait_for(JointTrajectory, "joint_trajectory", TRAJECTORY_TIMEOUT_S)
        self.assertTrue(got, f"no joint_trajectory from vla_policy within {TRAJECTORY_TIMEOUT_S} s")
        self.assertEqual(len(got[0].joint_names), 7)
        self.assertEqual(len(got[0].points), 1)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
