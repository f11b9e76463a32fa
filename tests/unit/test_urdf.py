"""ros_nodes.urdf: a received /robot_description stripped to what IK needs, loadable from any folder."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pybullet_data
import pytest

from ros_nodes.arm_commander import ArmCommander, CommanderConfig
from ros_nodes.urdf import kinematic_urdf

pytestmark = pytest.mark.unit

FK_TOL = 1e-9  # m (and quaternion units): the same kinematic chain gives the same pose up to float noise
ACCEL = 10.0  # rad/s^2 passed to joint_limits: URDF has none
PANDA_URDF = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"

TWO_LINKS = """<?xml version="1.0"?>
<robot name="toy">
  <link name="base">
    <inertial><mass value="1.0"/><inertia ixx="1" ixy="0" ixz="0" iyy="1" iyz="0" izz="1"/></inertial>
    <visual><geometry><mesh filename="package://toy/meshes/base.dae"/></geometry></visual>
    <collision><geometry><mesh filename="package://toy/meshes/base.stl"/></geometry></collision>
  </link>
  <link name="arm">
    <visual><geometry><box size="0.1 0.1 0.1"/></geometry></visual>
    <visual><geometry><sphere radius="0.05"/></geometry></visual>
  </link>
  <joint name="j1" type="revolute">
    <parent link="base"/><child link="arm"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="10" velocity="2"/>
  </joint>
</robot>
"""


@pytest.fixture(scope="module")
def bundled():
    c = ArmCommander(CommanderConfig())
    yield c
    c.close()


@pytest.fixture(scope="module")
def stripped_panda(tmp_path_factory) -> Path:
    """The Panda's URDF as a /robot_description would carry it, stripped and written outside pybullet_data
    (where its relative mesh paths resolve to nothing)."""
    path = tmp_path_factory.mktemp("description") / "robot_description.urdf"
    path.write_text(kinematic_urdf(PANDA_URDF.read_text()))
    return path


@pytest.fixture(scope="module")
def from_description(stripped_panda):
    c = ArmCommander(CommanderConfig(urdf=str(stripped_panda)))
    yield c
    c.close()


def test_visuals_and_collisions_are_stripped_and_the_rest_kept() -> None:
    root = ET.fromstring(kinematic_urdf(TWO_LINKS))
    assert root.tag == "robot" and root.get("name") == "toy"
    assert [link.get("name") for link in root.iter("link")] == ["base", "arm"]
    assert not list(root.iter("visual")) and not list(root.iter("collision"))
    assert "package://" not in kinematic_urdf(TWO_LINKS)
    assert root.find("link/inertial/mass").get("value") == "1.0"
    limit = root.find("joint/limit")
    assert (limit.get("lower"), limit.get("upper"), limit.get("velocity")) == ("-1", "1", "2")
    assert root.find("joint/parent").get("link") == "base" and root.find("joint/axis").get("xyz") == "0 0 1"


@pytest.mark.parametrize(("text", "needle"), [
    ("", "not valid XML"),
    ("robot_description: {urdf: 1}", "not valid XML"),
    ("<robot><link name='a'></robot>", "not valid XML"),
    ("<sdf version='1.6'><model name='panda'/></sdf>", "root element must be <robot>, got <sdf>"),
])
def test_non_xml_and_a_non_robot_root_are_refused_clearly(text: str, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        kinematic_urdf(text)
    assert needle in str(exc.value)


def test_the_stripped_panda_holds_no_visual_or_mesh(stripped_panda) -> None:
    text = stripped_panda.read_text()
    assert "<visual" not in text and "<collision" not in text and "mesh" not in text
    original = ET.fromstring(PANDA_URDF.read_text())
    stripped = ET.fromstring(text)
    assert [j.get("name") for j in stripped.iter("joint")] == [j.get("name") for j in original.iter("joint")]


def test_the_stripped_panda_loads_with_the_same_joints_and_limits(bundled, from_description) -> None:
    assert from_description.arm_joints == bundled.arm_joints
    assert from_description.finger_joints == bundled.finger_joints
    ours, theirs = from_description.joint_limits(ACCEL), bundled.joint_limits(ACCEL)
    assert ours.names == theirs.names
    for field in ("lower", "upper", "velocity", "acceleration"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)
    np.testing.assert_array_equal(from_description.finger_lower, bundled.finger_lower)
    np.testing.assert_array_equal(from_description.finger_upper, bundled.finger_upper)


def test_the_stripped_panda_gives_the_same_forward_kinematics(bundled, from_description) -> None:
    rng = np.random.default_rng(0)
    lower, upper = bundled.lower, bundled.upper
    for q in [np.asarray(bundled.spec.rest_pose, np.float64), *rng.uniform(lower, upper, (5, len(lower)))]:
        pos, quat = from_description.ik.fk(q)
        want_pos, want_quat = bundled.ik.fk(q)
        np.testing.assert_allclose(pos, want_pos, rtol=0, atol=FK_TOL)
        np.testing.assert_allclose(quat, want_quat, rtol=0, atol=FK_TOL)
