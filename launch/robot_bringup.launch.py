"""`ros2 launch vla_steering robot_bringup.launch.py [image_topic:=...] [trajectory_topic:=...] [urdf:=...]`

The steered policy alone, for a real arm: its inputs and outputs are remapped onto the robot's
camera, `joint_states` and joint_trajectory_controller topics. It starts unconfigured and disabled
(configure/activate it with `ros2 lifecycle set /vla_policy configure|activate`, then call
`/vla_policy/enable`). The nodes, parameter files, overrides and remaps are stated once in
`robot_bringup.graph.yaml` beside this file; this file only turns that graph into launch actions.
`ros2 launch -s` lists the arguments.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription  # not `from launch`: ruff takes that for launch/
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.graph import Graph, load_graph

PACKAGE = "vla_steering"
GRAPH_FILE = Path(__file__).with_name("robot_bringup.graph.yaml")


def nodes(context, graph: Graph) -> list[Node]:
    """The graph's nodes for the launch arguments given (resolved when the launch runs)."""
    values = {name: LaunchConfiguration(name).perform(context) for name in graph.arguments}
    return [Node(package=PACKAGE, executable=spec.executable, name=spec.name, namespace=spec.namespace or None,
                 parameters=[str(path) for path in spec.parameter_files] + ([spec.overrides] if spec.overrides else []),
                 remappings=list(spec.remappings.items()), output="screen")
            for spec in graph.resolve(values)]


def generate_launch_description() -> LaunchDescription:
    graph = load_graph(GRAPH_FILE)
    arguments = [DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description,
                                       choices=list(arg.choices) if arg.choices else None)
                 for arg in graph.arguments.values()]
    return LaunchDescription([*arguments, OpaqueFunction(function=nodes, args=[graph])])
