"""Core runtime: contracts, dataset format, policy, backends, execution and the `vla` CLI (never imports ROS)."""
