"""A graph file -> a `launch` description: the body both `launch/*.launch.py` files share.

`launch` and `launch_ros` are imported when called (they exist on a workstation with apt ROS 2, not
here), so this module imports anywhere and the unit tests run it against stand-in launch modules.
"""

from __future__ import annotations

from pathlib import Path

from ros_nodes.graph import Graph, load_graph

PACKAGE = "vla_steering"


def graph_launch_description(graph_file: str | Path):
    """One DeclareLaunchArgument per graph argument, and the graph's nodes resolved when the launch runs."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description import LaunchDescription

    graph = load_graph(graph_file)
    arguments = [DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description,
                                       choices=list(arg.choices) if arg.choices else None)
                 for arg in graph.arguments.values()]
    return LaunchDescription([*arguments, OpaqueFunction(function=launch_nodes, args=[graph])])


def launch_nodes(context, graph: Graph) -> list:
    """The graph's `launch_ros` nodes for the launch arguments given."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {name: LaunchConfiguration(name).perform(context) for name in graph.arguments}
    return [Node(package=PACKAGE, executable=spec.executable, name=spec.name, namespace=spec.namespace or None,
                 parameters=[str(path) for path in spec.parameter_files] + ([spec.overrides] if spec.overrides else []),
                 remappings=list(spec.remappings.items()), output="screen")
            for spec in graph.resolve(values)]
