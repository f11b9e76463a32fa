"""ROS 2 nodes (rclpy + message conversion only; no model logic). Filled in by the ROS 2 issue."""
