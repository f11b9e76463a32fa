"""Training-time domain randomisation (`EnvConfig(randomize=True)`): appearance, camera and clutter.

Every range here is deliberately narrower than, or disjoint from, the evaluation splits in
`sim.variations`, so those splits stay held out: the table keeps its warm wood shade (never near
`SHIFTED_TABLE_RGB`), lighting moves mildly around the default (the `appearance` split draws from much
wider ranges), the camera moves at most 2 cm / 2 degrees (the `camera` split: 6 cm / 4 degrees), object
shades move a little in hue, saturation and value so a "red" cube stays red (the `appearance` split
desaturates and rescales them), and the random meshes come from a pool disjoint from `UNSEEN_URDFS`
(the `distractors` split). docs/simulator.md tabulates the ranges.

Everything is drawn from the episode's own Generator after the task is sampled, so a seed still fixes
the whole episode and a run without randomisation draws exactly what it always did.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import numpy as np

from sim.camera import CameraPose, Lighting
from sim.scene import TABLE_RGB, ObjectSpec, sample_xy
from sim.tasks import DISTRACTOR_X, DISTRACTOR_Y, TaskInstance, occupied

CAMERA_JITTER = 0.02  # metres per axis of eye and target (target height fixed)
FOV_JITTER_DEG = 2.0
LIGHT_DIRECTION_JITTER = 0.25  # added to the default direction's x and y (z stays 1)
LIGHT_COLOR = (0.9, 1.0)  # per channel
LIGHT_AMBIENT = (0.5, 0.7)  # default 0.6
LIGHT_DIFFUSE = (0.38, 0.52)  # default 0.45
TABLE_BRIGHTNESS = (0.88, 1.1)  # scales TABLE_RGB ...
TABLE_CHANNEL_JITTER = 0.03  # ... then moves each channel by up to this much
HUE_JITTER = 0.02  # of the hue circle (7 degrees); red (0.0) and orange (0.08) stay apart
SATURATION_SCALE = (0.85, 1.1)
VALUE_SCALE = (0.85, 1.1)
MESH_COUNT = (0, 2)  # random meshes per episode, inclusive
MESH_CLEARANCE = 0.06  # disc radius a mesh needs (the pool's half-diagonals are <= 0.058 at scale 0.8)
MESH_RGB = (0.2, 0.9)
# random_urdfs at most 5.8 cm half-diagonal and 8 cm tall at build_object's 0.8 scale, none in UNSEEN_URDFS.
TRAIN_URDFS = tuple(f"random_urdfs/{i:03d}/{i:03d}.urdf"
                    for i in (8, 13, 14, 16, 23, 26, 29, 32, 36, 37, 38, 41, 44, 45, 48, 50, 53, 54, 55, 56, 59))


@dataclass(frozen=True)
class Randomized:
    """One randomised reset: the task with shaded objects and added meshes, and the view to render it."""

    instance: TaskInstance
    camera: CameraPose
    lighting: Lighting
    table_rgb: tuple[float, float, float]


def randomize(instance: TaskInstance, camera: CameraPose, rng: np.random.Generator) -> Randomized:
    """Draw one randomisation of an `id` episode (its instance already sampled from the same `rng`)."""
    cam = CameraPose(eye=tuple(np.add(camera.eye, rng.uniform(-CAMERA_JITTER, CAMERA_JITTER, 3))),
                     target=tuple(np.add(camera.target, rng.uniform(-CAMERA_JITTER, CAMERA_JITTER, 3) * [1, 1, 0])),
                     up=camera.up, fov_deg=camera.fov_deg + float(rng.uniform(-FOV_JITTER_DEG, FOV_JITTER_DEG)),
                     near=camera.near, far=camera.far)
    default = Lighting()
    direction = np.add(default.direction, [*rng.uniform(-LIGHT_DIRECTION_JITTER, LIGHT_DIRECTION_JITTER, 2), 0.0])
    light = Lighting(direction=tuple(float(v) for v in direction),
                     color=tuple(float(v) for v in rng.uniform(*LIGHT_COLOR, 3)),
                     ambient=float(rng.uniform(*LIGHT_AMBIENT)), diffuse=float(rng.uniform(*LIGHT_DIFFUSE)),
                     specular=default.specular)
    table = np.clip(np.asarray(TABLE_RGB) * rng.uniform(*TABLE_BRIGHTNESS)
                    + rng.uniform(-TABLE_CHANNEL_JITTER, TABLE_CHANNEL_JITTER, 3), 0.0, 1.0)
    objects = [jitter_shade(o, rng) if o.urdf is None else o for o in instance.objects]
    taken = occupied(instance)
    for path in rng.choice(TRAIN_URDFS, size=int(rng.integers(MESH_COUNT[0], MESH_COUNT[1] + 1)), replace=False):
        try:
            xy = sample_xy(rng, DISTRACTOR_X, DISTRACTOR_Y, taken, MESH_CLEARANCE)
        except RuntimeError:  # a crowded layout has no room left: fewer meshes (still fixed by the seed)
            break
        taken.append((*xy, MESH_CLEARANCE))
        objects.append(ObjectSpec(name="random object", shape="mesh", xy=xy, urdf=str(path),
                                  rgb=tuple(float(c) for c in rng.uniform(*MESH_RGB, 3)),
                                  yaw=float(rng.uniform(-np.pi, np.pi))))
    appearance = {"lighting": light.__dict__, "table_rgb": [float(c) for c in table]}
    return Randomized(instance=replace(instance, objects=tuple(objects), appearance=appearance), camera=cam,
                      lighting=light, table_rgb=(float(table[0]), float(table[1]), float(table[2])))


def jitter_shade(o: ObjectSpec, rng: np.random.Generator) -> ObjectSpec:
    """A small hue / saturation / value move that keeps the object's colour name true."""
    h, s, v = colorsys.rgb_to_hsv(*o.rgb)
    h = (h + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    s = min(1.0, s * rng.uniform(*SATURATION_SCALE))
    v = min(1.0, v * rng.uniform(*VALUE_SCALE))
    return replace(o, rgb=tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v)))
