"""Scene content: table, graspable objects, containers, target pads, unseen distractors.

A scene is first *sampled* as plain data (`ObjectSpec`, ...) from a numpy
Generator and then *built* into a physics client, so the same seed always gives
the same world and the sampled description can be stored with the episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.3, 0.9),
    "yellow": (0.92, 0.85, 0.15),
    "purple": (0.55, 0.2, 0.75),
    "orange": (0.95, 0.5, 0.1),
}
SHAPES = ("cube", "cylinder")
OBJECT_HALF = 0.02  # every graspable object is 4 cm across and 4 cm tall
TABLE_RGB = (0.72, 0.6, 0.45)
SHIFTED_TABLE_RGB = (0.35, 0.38, 0.42)
# random_urdfs held out of training scenes (used only by the `distractors` split).
UNSEEN_URDFS = tuple(f"random_urdfs/{i:03d}/{i:03d}.urdf" for i in (0, 3, 5, 9, 12, 17, 21, 28, 33, 40))


@dataclass(frozen=True)
class ObjectSpec:
    name: str  # e.g. "red cube"; how instructions refer to it
    shape: str
    rgb: tuple[float, float, float]
    xy: tuple[float, float]
    yaw: float
    urdf: str | None = None  # set for unseen distractors from pybullet_data


@dataclass(frozen=True)
class ContainerSpec:
    kind: str  # "tray" | "bowl"
    xy: tuple[float, float]
    inner_half: float  # half side of the free floor area
    wall_height: float = 0.035


@dataclass(frozen=True)
class RegionSpec:
    name: str  # "left" | "right"
    xy: tuple[float, float]
    half: float = 0.05


def sample_xy(rng: np.random.Generator, box_x: tuple[float, float], box_y: tuple[float, float],
              taken: list[tuple[float, float, float]], radius: float, tries: int = 200) -> tuple[float, float]:
    """Rejection-sample a point at least `radius + r_other` away from every taken (x, y, r)."""
    for _ in range(tries):
        x, y = rng.uniform(*box_x), rng.uniform(*box_y)
        if all((x - tx) ** 2 + (y - ty) ** 2 >= (radius + tr) ** 2 for tx, ty, tr in taken):
            return float(x), float(y)
    raise RuntimeError(f"could not place an object of radius {radius} in x={box_x} y={box_y} after {tries} tries")


def build_table(client: int, rgb: tuple[float, float, float]) -> int:
    half = [0.9, 0.9, 0.025]  # large enough that the static camera sees only table behind the scene
    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=[*rgb, 1], physicsClientId=client)
    body = p.createMultiBody(0, col, vis, basePosition=[0.35, 0, -half[2]], physicsClientId=client)
    p.changeDynamics(body, -1, lateralFriction=0.6, physicsClientId=client)
    return body


def build_object(client: int, spec: ObjectSpec) -> int:
    quat = p.getQuaternionFromEuler([0, 0, spec.yaw])
    if spec.urdf is not None:
        path = f"{pybullet_data.getDataPath()}/{spec.urdf}"
        body = p.loadURDF(path, [spec.xy[0], spec.xy[1], 0.03], quat, globalScaling=0.8, physicsClientId=client)
        p.changeVisualShape(body, -1, rgbaColor=[*spec.rgb, 1], physicsClientId=client)
        return body
    h = OBJECT_HALF
    if spec.shape == "cube":
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[h, h, h], physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[h, h, h], rgbaColor=[*spec.rgb, 1], physicsClientId=client)
    elif spec.shape == "cylinder":
        col = p.createCollisionShape(p.GEOM_CYLINDER, radius=h, height=2 * h, physicsClientId=client)
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=h, length=2 * h, rgbaColor=[*spec.rgb, 1],
                                  physicsClientId=client)
    else:
        raise ValueError(f"unknown shape {spec.shape!r}; known: {SHAPES}")
    body = p.createMultiBody(0.08, col, vis, basePosition=[spec.xy[0], spec.xy[1], h], baseOrientation=quat,
                             physicsClientId=client)
    p.changeDynamics(body, -1, lateralFriction=1.0, spinningFriction=0.002, rollingFriction=0.0005,
                     physicsClientId=client)
    return body


def build_container(client: int, spec: ContainerSpec, rgb: tuple[float, float, float]) -> int:
    """A floor plate plus walls as one static compound body (tray: 4 walls, bowl: 8)."""
    t, h, r = 0.006, spec.wall_height, spec.inner_half
    n_walls = 4 if spec.kind == "tray" else 8
    half_exts, positions, orients = [[r + t, r + t, t / 2]], [[0, 0, t / 2]], [[0, 0, 0, 1]]
    side = r * np.tan(np.pi / n_walls) + t
    for k in range(n_walls):
        a = 2 * np.pi * k / n_walls
        half_exts.append([t / 2, side, h / 2])
        positions.append([(r + t / 2) * np.cos(a), (r + t / 2) * np.sin(a), h / 2])
        orients.append(p.getQuaternionFromEuler([0, 0, a]))
    col = p.createCollisionShapeArray([p.GEOM_BOX] * len(half_exts), halfExtents=half_exts,
                                      collisionFramePositions=positions, collisionFrameOrientations=orients,
                                      physicsClientId=client)
    vis = p.createVisualShapeArray([p.GEOM_BOX] * len(half_exts), halfExtents=half_exts,
                                   visualFramePositions=positions, visualFrameOrientations=orients,
                                   rgbaColors=[[*rgb, 1]] * len(half_exts), physicsClientId=client)
    return p.createMultiBody(0, col, vis, basePosition=[spec.xy[0], spec.xy[1], 0.0], physicsClientId=client)


def build_region(client: int, spec: RegionSpec, rgb: tuple[float, float, float]) -> int:
    """A flat coloured pad with no collision: visible, but it never blocks pushing."""
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[spec.half, spec.half, 0.0008], rgbaColor=[*rgb, 1],
                              physicsClientId=client)
    return p.createMultiBody(0, -1, vis, basePosition=[spec.xy[0], spec.xy[1], 0.0008], physicsClientId=client)
