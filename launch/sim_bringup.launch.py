"""`ros2 launch vla_steering sim_bringup.launch.py [task:=pick_lift] [seed:=0] [steering:=robomonkey] ...`

The PyBullet arm as a ROS robot plus the steered policy closing the loop over DDS (and, with
`record:=true`, the MCAP recorder). The nodes, parameter files, overrides and remaps are stated once in
`sim_bringup.graph.yaml` beside this file; this file only turns that graph into launch actions, so the
graph that `ros2 launch` starts is the one `python -m ros_nodes.launcher` starts on machines without
`launch_ros` (and that the integration tests run). `ros2 launch -s` lists the arguments.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription  # not `from launch`: ruff takes that for launch/
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.graph import Graph, load_graph

PACKAGE = "vla_steering"
GRAPH_FILE = Path(__file__).with_name("sim_bringup.graph.yaml")


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
