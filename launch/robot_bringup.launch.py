"""`ros2 launch vla_steering robot_bringup.launch.py [image_topic:=...] [trajectory_topic:=...] [urdf:=...]`

The steered policy alone, for a real arm: its inputs and outputs are remapped onto the robot's
camera, `joint_states` and joint_trajectory_controller topics. It starts unconfigured and disabled
(configure/activate it with `ros2 lifecycle set /vla_policy configure|activate`, then call
`/vla_policy/enable`). The nodes, parameter files, overrides and remaps are stated once in
`robot_bringup.graph.yaml` beside this file; this file only hands that graph to `ros_nodes.launch_actions`.
`ros2 launch -s` lists the arguments.
"""

from pathlib import Path

from ros_nodes.launch_actions import graph_launch_description

GRAPH_FILE = Path(__file__).with_name("robot_bringup.graph.yaml")


def generate_launch_description():
    return graph_launch_description(GRAPH_FILE)
