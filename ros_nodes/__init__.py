"""ROS 2 nodes (rclpy + message conversion only; no model logic). `convert` is the message layer; the nodes
arrive with the ROS 2 issue."""
