"""Task families: how a scene is sampled, what the instruction says, when it is solved.

Success predicates read only simulator state (poses and contacts), never the
policy's intent, so they hold for any policy and any arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pybullet as p

from sim.language import templates
from sim.scene import (
    COLORS,
    OBJECT_HALF,
    SHAPES,
    UNSEEN_URDFS,
    ContainerSpec,
    ObjectSpec,
    RegionSpec,
    sample_xy,
)
from sim.variations import Variation

TASKS: tuple[str, ...] = ("pick_lift", "place_in", "push_to", "stack")
OBJ_RADIUS = 0.035  # clearance radius used when placing objects
LIFT_HEIGHT = 0.08  # pick_lift succeeds once the object's centre is this high while held
DISTRACTOR_X, DISTRACTOR_Y = (0.3, 0.72), (-0.34, 0.34)  # where unseen distractors may land


@dataclass(frozen=True)
class TaskInstance:
    """Everything sampled for one episode (pure data, stored with the episode)."""

    task: str
    instruction: str
    objects: tuple[ObjectSpec, ...]  # objects[0] is the one to manipulate
    base_index: int | None = None  # stack: index of the object to stack on
    container: ContainerSpec | None = None
    regions: tuple[RegionSpec, ...] = ()
    goal_region: str | None = None
    meta: dict = field(default_factory=dict)
    appearance: dict | None = None  # training-time randomisation (lighting, table shade); None otherwise

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "instruction": self.instruction,
            "objects": [o.__dict__ for o in self.objects],
            "base_index": self.base_index,
            "container": None if self.container is None else self.container.__dict__,
            "regions": [r.__dict__ for r in self.regions],
            "goal_region": self.goal_region,
            # only when randomised, so unrandomised episodes keep the scene record they always had
            **({} if self.appearance is None else {"appearance": self.appearance}),
        }


def get_task_names() -> tuple[str, ...]:
    return TASKS


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {list(TASKS)}")
    return name


def _pick_names(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    """k distinct (colour, shape) pairs."""
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    idx = rng.choice(len(pairs), size=k, replace=False)
    return [pairs[i] for i in idx]


def _obj(name: tuple[str, str], xy, rng: np.random.Generator) -> ObjectSpec:
    color, shape = name
    return ObjectSpec(name=f"{color} {shape}", shape=shape, rgb=COLORS[color], xy=xy,
                      yaw=float(rng.uniform(-np.pi / 4, np.pi / 4)))


def sample_task(task: str, rng: np.random.Generator, var: Variation) -> TaskInstance:
    """Sample a scene + instruction for `task` under variation `var`."""
    check_task(task)
    box_x, box_y = var.placement_x, var.placement_y
    taken: list[tuple[float, float, float]] = []
    n_distract = int(rng.integers(1, 4))
    names = _pick_names(rng, 2 + n_distract)
    container = None
    regions: tuple[RegionSpec, ...] = ()
    goal_region = None
    base_index = None
    fmt: dict[str, str] = {}

    if task == "place_in":
        kind = "tray" if rng.random() < 0.5 else "bowl"
        inner = 0.06 if kind == "tray" else 0.055
        cxy = sample_xy(rng, box_x, box_y, taken, inner + 0.02)
        container = ContainerSpec(kind=kind, xy=cxy, inner_half=inner)
        taken.append((*cxy, inner + 0.03))
        fmt["container"] = kind
    if task == "push_to":
        # Push sideways: the object starts in a central band, pads sit left and right of it.
        x = float(rng.uniform(box_x[0] + 0.02, box_x[1] - 0.04))
        y = float(rng.uniform(-0.05, 0.05))
        offset = float(rng.uniform(0.13, 0.16))
        regions = (RegionSpec("left", (x, y + offset)), RegionSpec("right", (x, y - offset)))
        goal_region = "left" if rng.random() < 0.5 else "right"
        target = _obj(names[0], (x, y), rng)
        taken += [(x, y, OBJ_RADIUS), *[(r.xy[0], r.xy[1], 0.08) for r in regions], *_push_corridor(x, y, offset)]
        fmt["region"] = goal_region
    else:
        target = _obj(names[0], sample_xy(rng, box_x, box_y, taken, OBJ_RADIUS), rng)
        taken.append((*target.xy, OBJ_RADIUS))
    objects = [target]
    if task == "stack":
        base = _obj(names[1], sample_xy(rng, box_x, box_y, taken, OBJ_RADIUS + 0.01), rng)
        taken.append((*base.xy, OBJ_RADIUS + 0.01))
        objects.append(base)
        base_index = 1
        fmt["base"] = base.name
    for nm in names[2:]:
        objects.append(_obj(nm, sample_xy(rng, box_x, box_y, taken, OBJ_RADIUS), rng))
        taken.append((*objects[-1].xy, OBJ_RADIUS))
    if var.unseen_distractors:
        # The task layout may already fill the placement box (container, push corridor): the
        # unseen objects may use the whole reachable table around it.
        for path in rng.choice(UNSEEN_URDFS, size=2, replace=False):
            xy = sample_xy(rng, DISTRACTOR_X, DISTRACTOR_Y, taken, 0.045, tries=2000)
            taken.append((*xy, 0.045))
            rgb = tuple(float(c) for c in rng.uniform(0.2, 0.9, size=3))
            objects.append(ObjectSpec(name="unseen object", shape="mesh", rgb=rgb, xy=xy,
                                      yaw=float(rng.uniform(-np.pi, np.pi)), urdf=str(path)))
    if var.appearance_shift:
        objects = [_shift_shade(o, rng) for o in objects]
    fmt["obj"] = target.name
    pool = templates(task, held_out=var.held_out_language)
    template = pool[int(rng.integers(len(pool)))]
    return TaskInstance(task=task, instruction=template.format(**fmt), objects=tuple(objects),
                        base_index=base_index, container=container, regions=regions, goal_region=goal_region)


def occupied(inst: TaskInstance) -> list[tuple[float, float, float]]:
    """(x, y, clearance radius) discs a later addition to the scene must keep out of: every object, the
    container, the pads and (push_to) the pushing corridor, as `sample_task` reserves them."""
    taken = [(*o.xy, OBJ_RADIUS + (0.01 if k == inst.base_index else 0.0)) for k, o in enumerate(inst.objects)]
    if inst.container is not None:
        taken.append((*inst.container.xy, inst.container.inner_half + 0.03))
    taken += [(*r.xy, 0.08) for r in inst.regions]
    if inst.task == "push_to":
        taken += _push_corridor(*inst.objects[0].xy, abs(inst.regions[0].xy[1] - inst.regions[1].xy[1]) / 2)
    return taken


def _push_corridor(x: float, y: float, offset: float) -> list[tuple[float, float, float]]:
    """Discs keeping the push_to corridor free: the object at (x, y) is pushed up to `offset` either way in y,
    from a pre-push pose 7 cm beyond."""
    return [(x, y + s, 0.04) for s in np.linspace(-offset - 0.07, offset + 0.07, 9)]


def _shift_shade(o: ObjectSpec, rng: np.random.Generator) -> ObjectSpec:
    """Same colour name, visibly different shade (darker/lighter, desaturated)."""
    rgb = np.asarray(o.rgb)
    rgb = 0.7 * rgb + 0.3 * rgb.mean()
    rgb = np.clip(rgb * rng.uniform(0.65, 1.25), 0, 1)
    return replace(o, rgb=tuple(float(c) for c in rgb))


# --- success predicates ------------------------------------------------------

@dataclass
class WorldHandles:
    """Body ids of a built scene, for predicates and experts."""

    client: int
    objects: list[int]
    table: int
    container: int | None = None


def body_pos(client: int, body: int) -> np.ndarray:
    return np.asarray(p.getBasePositionAndOrientation(body, physicsClientId=client)[0])


def is_success(inst: TaskInstance, world: WorldHandles, held: callable) -> bool:
    """`held(body)` tells whether the gripper fingers touch `body`."""
    c = world.client
    obj = world.objects[0]
    pos = body_pos(c, obj)
    if inst.task == "pick_lift":
        return bool(pos[2] > OBJECT_HALF + LIFT_HEIGHT - 0.02 and held(obj))
    if inst.task == "place_in":
        cont = inst.container
        d = pos[:2] - np.asarray(cont.xy)
        inside = (np.max(np.abs(d)) if cont.kind == "tray" else np.linalg.norm(d)) < cont.inner_half - 0.005
        return bool(inside and pos[2] < cont.wall_height + 0.03 and not held(obj) and _resting(c, obj))
    if inst.task == "push_to":
        region = next(r for r in inst.regions if r.name == inst.goal_region)
        d = np.abs(pos[:2] - np.asarray(region.xy))
        return bool(np.all(d < region.half) and pos[2] < OBJECT_HALF + 0.01)
    if inst.task == "stack":
        base = world.objects[inst.base_index]
        bpos = body_pos(c, base)
        aligned = np.linalg.norm(pos[:2] - bpos[:2]) < 0.025
        on_top = 2 * OBJECT_HALF - 0.006 < pos[2] - bpos[2] < 2 * OBJECT_HALF + 0.01
        touching = bool(p.getContactPoints(obj, base, physicsClientId=c))
        return bool(aligned and on_top and touching and not held(obj) and bpos[2] < OBJECT_HALF + 0.01
                    and _resting(c, obj))
    raise ValueError(f"unknown task {inst.task!r}")


def _resting(client: int, body: int, tol: float = 0.05) -> bool:
    lin, _ = p.getBaseVelocity(body, physicsClientId=client)
    return float(np.linalg.norm(lin)) < tol
