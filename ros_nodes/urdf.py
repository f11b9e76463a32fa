"""A received `/robot_description` made loadable for IK (pure Python: ElementTree, no ROS)."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def _parse(text: str) -> ET.Element:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"robot description is not valid XML: {e}") from None
    if root.tag != "robot":
        raise ValueError(f"robot description's root element must be <robot>, got <{root.tag}>")
    return root


def kinematic_urdf(urdf_text: str) -> str:
    """The description without `<visual>` and `<collision>`: what IK needs, loadable from any folder.

    A published `/robot_description` names meshes by `package://` URIs this process cannot resolve; the
    kinematic chain, limits and inertias are all an IK model uses."""
    root = _parse(urdf_text)
    for link in root.iter("link"):
        for child in [c for c in link if c.tag in ("visual", "collision")]:
            link.remove(child)
    return ET.tostring(root, encoding="unicode")
