"""`ros2 launch vla_steering sim_bringup.launch.py [task:=pick_lift] [seed:=0] [steering:=robomonkey] ...`

The PyBullet arm as a ROS robot plus the steered policy closing the loop over DDS (and, with
`record:=true`, the MCAP recorder). The nodes, parameter files, overrides and remaps are stated once in
`sim_bringup.graph.yaml` beside this file; this file only hands that graph to `ros_nodes.launch_actions`, so the
graph that `ros2 launch` starts is the one `python -m ros_nodes.launcher` starts on machines without
`launch_ros` (and that the integration tests run). `ros2 launch -s` lists the arguments.
"""

from pathlib import Path

from ros_nodes.launch_actions import graph_launch_description

GRAPH_FILE = Path(__file__).with_name("sim_bringup.graph.yaml")


def generate_launch_description():
    return graph_launch_description(GRAPH_FILE)
