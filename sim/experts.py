"""Scripted experts: privileged-state controllers with a quality knob.

`expert` solves the tasks; `noisy` adds action noise and, per episode, a chance
of grabbing the wrong object or letting go early, so collected data holds the
failures offline RL needs. `dart` (Laskey et al., DART) executes short bursts of
perturbed motion but records the expert's clean, corrective action as the label
(`ScriptedExpert.label`), so behaviour cloning sees off-nominal states and how to
recover from them: the states a learned policy drifts into. `recovery` is `dart` plus, per
episode with `miss_prob`, an induced missed grasp: the executed descent and close go 2-4 cm beside the
object, while the labels stay the expert's. Every expert notices a closed hand that holds nothing
(privileged state), reopens, rises, re-centres and grasps again; without such episodes behaviour cloning
never sees what to do after a miss, and a policy that misses stays stuck with a closed empty hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim.control import tcp_yaw
from sim.env import ArmEnv
from sim.scene import OBJECT_HALF
from sim.tasks import body_pos

QUALITIES = ("expert", "noisy", "dart", "recovery")
CARRY_Z = 0.15
ABOVE_Z = 0.11
# An induced miss closes the hand this far (metres) beside the object, across the fingers' closing line, give or
# take MISS_ALONG along it: nearer, a finger lands on the 4 cm object and the pinch throws it off the table.
MISS_RANGE = (0.03, 0.04)
MISS_ALONG = 0.01
EMPTY_WIDTH = OBJECT_HALF  # fingers closer than half an object's width hold nothing
GRASPED = ("lift", "hold", "carry", "lower")  # phases that expect the object between the fingers


@dataclass(frozen=True)
class ExpertConfig:
    quality: str = "expert"
    noise_std: float = 0.0  # metres per step on dx, dy, dz
    wrong_target_prob: float = 0.0
    early_release_prob: float = 0.0
    perturb_prob: float = 0.0  # DART: chance per moving step to start a perturbation burst
    perturb_std: float = 0.0  # DART: metres per step of a burst's constant xy offset (z: half)
    perturb_max_steps: int = 4  # DART: a burst lasts 1..this many steps, so offsets accumulate to cm
    miss_prob: float = 0.0  # recovery: chance per episode that the first grasp is executed beside the object
    steady_grasp: bool = False  # no bursts while descending to, lifting or lowering the object (see `act`)

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"unknown expert quality {self.quality!r}; known: {QUALITIES}")
        for name in ("noise_std", "wrong_target_prob", "early_release_prob", "perturb_prob", "perturb_std",
                     "miss_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= (0.05 if name in ("noise_std", "perturb_std") else 1.0):
                raise ValueError(f"{name} out of range: {v}")
        if self.perturb_max_steps < 1:
            raise ValueError(f"perturb_max_steps must be >= 1, got {self.perturb_max_steps}")

    @classmethod
    def named(cls, quality: str) -> ExpertConfig:
        if quality not in QUALITIES:
            raise ValueError(f"unknown expert quality {quality!r}; known: {QUALITIES}")
        if quality == "noisy":
            return cls("noisy", noise_std=0.006, wrong_target_prob=0.2, early_release_prob=0.25)
        if quality == "dart":
            return cls("dart", perturb_prob=0.15, perturb_std=0.015)
        if quality == "recovery":
            return cls("recovery", perturb_prob=0.15, perturb_std=0.015, miss_prob=0.5, steady_grasp=True)
        return cls(quality)


@dataclass
class _Phase:
    name: str
    pos: np.ndarray
    yaw: float | None
    gripper: float
    tol: float = 0.006
    hold_steps: int = 0  # >0: advance after this many steps instead of on arrival
    speed: float = 0.03


class ScriptedExpert:
    """Call `reset(env)` after `env.reset()`, then `act(env)` each step.

    `act` returns the action to execute; `label` is the action to record for it (they differ
    only while a DART perturbation or an induced miss runs). `missed` counts the grasps that left the
    hand closed and empty, `induced_miss` says whether this episode executed one on purpose.
    """

    needs_images = False

    def __init__(self, config: ExpertConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.label: np.ndarray | None = None
        self._offset: np.ndarray | None = None

    def reset(self, env: ArmEnv) -> None:
        inst = env.instance
        self._obj = env.world.objects[0]
        n_graspable = sum(1 for o in inst.objects if o.urdf is None)
        if n_graspable > 2 and self.rng.random() < self.config.wrong_target_prob:
            start = 2 if inst.base_index is not None else 1
            self._obj = env.world.objects[int(self.rng.integers(start, n_graspable))]
        # Early release: let go (push: stop) a few steps into the transport phase.
        self._release_phase = {"pick_lift": "lift", "push_to": "push"}.get(inst.task, "carry")
        self._release_step = None
        if self.rng.random() < self.config.early_release_prob:
            self._release_step = int(self.rng.integers(2, 6))
        self._phase_idx = 0
        self._phase_steps = 0
        self._grasp_yaw = None
        self._locked_xy: np.ndarray | None = None
        self._offset: np.ndarray | None = None
        self._burst_left = 0
        self._burst = np.zeros(3)
        self._retry_xy: np.ndarray | None = None  # set after an empty grasp: rise here, then approach again
        self.missed = 0
        # Induced miss: drawn only when miss_prob > 0, so the other qualities' rng streams stay as they were.
        self._miss: np.ndarray | None = None  # (across, along) offset of the executed grasp, in metres
        self._miss_stage = ""  # "" waiting for the descent, "descend", "close", "done"
        self._miss_steps = 0
        self._miss_goal = np.zeros(3)
        self._miss_yaw: float | None = None
        self.induced_miss = False
        if self.config.miss_prob > 0 and inst.task != "push_to" and self.rng.random() < self.config.miss_prob:
            side = 1.0 if self.rng.random() < 0.5 else -1.0
            self._miss = np.array([side * self.rng.uniform(*MISS_RANGE), self.rng.uniform(-MISS_ALONG, MISS_ALONG)])
        self.label = None

    def resume(self, env: ArmEnv) -> None:
        """Re-enter the phase plan from whatever state the world is in (a state a policy reached), so the
        expert can be asked what it would do from there. Phases are inferred from privileged state: is the
        object held, is the hand above it, has the task succeeded."""
        kept_offset = self._offset  # measured when this grasp settled (an earlier query): a swinging object lies
        self.reset(env)
        self._miss = None  # a query asks what the expert does from here: it never misses on purpose
        obj = body_pos(env.client, self._obj)
        tpos, tquat = env.target_pose
        tcp = env.arm.tcp_pose()[0]
        closed = env.gripper_command < 0.5
        names = [ph.name for ph in self._plan(env)]
        if env.instance.task == "push_to":
            self._phase_idx = names.index(self._resume_push(env, obj, tcp))
            return
        held = closed and env.arm.in_contact_with(self._obj)
        if held:  # keep the grasp: lift where the hand is, carry, lower, release
            self._grasp_yaw = tcp_yaw(tquat)
            self._locked_xy = tpos[:2].copy()
            self._offset = kept_offset if kept_offset is not None else self._grip_offset(env)
            phase = "lift"
            if env.instance.task != "pick_lift":
                goal = self._plan(env)[names.index("carry")].pos
                # judged on the commanded hand (it leads the measured one); a hand already lowering near the
                # goal keeps lowering (lower corrects xy on the way), one far from it rises first
                off = float(np.linalg.norm(tpos[:2] - goal[:2]))
                high = tpos[2] > CARRY_Z - 0.02
                phase = "lower" if off < 0.015 or (off < 0.03 and not high) else ("carry" if high else "lift")
            self._phase_idx = names.index(phase)
            return
        if env.instance.task != "pick_lift" and (env.succeeded() or self._at_goal(env, obj)):
            self._phase_idx = names.index("retreat")  # released over the goal: leave it be
            return
        aligned = np.linalg.norm(tcp[:2] - obj[:2]) < 0.012
        if aligned and tcp[2] < ABOVE_Z - 0.015:
            self._locked_xy = obj[:2].copy()
            if not closed:
                self._phase_idx = names.index("descend")
                return
            if env.arm.gripper_width() > 0.02 and tcp[2] < OBJECT_HALF + 0.015:  # closing, fingers still apart
                self._phase_idx = names.index("close")
                return
        if closed:  # a missed or lost grasp: reopen and rise before approaching again
            self._retry(env)
            return
        self._phase_idx = 0  # "above": open the hand and approach from the top

    def _retry(self, env: ArmEnv) -> None:
        """Start over after an empty grasp: reopen, rise straight up (sliding sideways low could knock the
        object), then approach and grasp the object where it lies now."""
        self._retry_xy = env.target_pose[0][:2].copy()
        self._locked_xy = self._offset = self._grasp_yaw = None
        self._phase_idx = 0
        self._phase_steps = 0

    def _empty_grasp(self, env: ArmEnv, phase: str) -> bool:
        """The hand is commanded closed but, from privileged state, holds nothing: in a phase that wants it
        open (a miss was executed for us), or in one that carries the object while the fingers touch nothing
        and have shut past it."""
        if env.instance.task == "push_to" or env.gripper_command >= 0.5:
            return False
        if phase in ("above", "descend"):
            return True
        return (phase in GRASPED and env.arm.gripper_width() < EMPTY_WIDTH
                and not env.arm.in_contact_with(self._obj))

    def episode_stats(self) -> dict:
        """The runner copies this into the episode summary: did a miss happen, and how many empty grasps."""
        return {"induced_miss": self.induced_miss, "empty_grasps": self.missed}

    def _at_goal(self, env: ArmEnv, obj: np.ndarray) -> bool:
        """place_in / stack: the object lies over its goal (released there, maybe still settling)."""
        inst = env.instance
        if inst.task == "place_in":
            return bool(np.max(np.abs(obj[:2] - np.asarray(inst.container.xy))) < inst.container.inner_half)
        base = body_pos(env.client, env.world.objects[inst.base_index])
        return bool(np.linalg.norm(obj[:2] - base[:2]) < 0.025 and obj[2] > base[2] + OBJECT_HALF)

    def _resume_push(self, env: ArmEnv, obj: np.ndarray, tcp: np.ndarray) -> str:
        if env.succeeded():
            return "retreat"
        goal = np.asarray(next(r for r in env.instance.regions if r.name == env.instance.goal_region).xy)
        d = goal - obj[:2]
        d /= np.linalg.norm(d) + 1e-9
        rel = tcp[:2] - obj[:2]
        along, across = float(rel @ d), float(abs(rel[0] * d[1] - rel[1] * d[0]))
        if -0.09 < along < -0.01 and across < 0.012:  # behind the object on the line to the goal
            self._locked_xy = obj[:2].copy()
            return "push" if tcp[2] < 0.04 else "down"
        return "pre"

    # --- phase plans ---------------------------------------------------------
    def _plan(self, env: ArmEnv) -> list[_Phase]:
        inst = env.instance
        o = body_pos(env.client, self._obj)
        xy = self._locked_xy if self._locked_xy is not None else o[:2]
        yaw = self._grasp_yaw_for(env)
        grasp_z = OBJECT_HALF - 0.002
        rise = [] if self._retry_xy is None else [_Phase("rise", np.array([*self._retry_xy, ABOVE_Z]), yaw, 1.0,
                                                         tol=0.01)]
        pick = rise + [
            _Phase("above", np.array([*o[:2], ABOVE_Z]), yaw, 1.0, tol=0.008),
            _Phase("descend", np.array([*xy, grasp_z]), yaw, 1.0, tol=0.004),
            _Phase("close", np.array([*xy, grasp_z]), yaw, 0.0, hold_steps=4),
            _Phase("lift", np.array([*xy, CARRY_Z]), yaw, 0.0, tol=0.01),
        ]
        if inst.task == "pick_lift":
            return pick + [_Phase("hold", np.array([*xy, CARRY_Z]), yaw, 0.0, hold_steps=10)]
        if inst.task in ("place_in", "stack"):
            if inst.task == "place_in":
                goal, place_z = np.asarray(inst.container.xy), 0.075
            else:
                goal = body_pos(env.client, env.world.objects[inst.base_index])[:2]
                place_z = 3 * OBJECT_HALF + 0.008
            if self._offset is not None:  # aim the held object, not the fingers, at the goal
                goal = goal + self._offset
            return pick + [
                _Phase("carry", np.array([*goal, CARRY_Z]), yaw, 0.0, tol=0.006, speed=0.02),
                _Phase("lower", np.array([*goal, place_z]), yaw, 0.0, tol=0.004),
                _Phase("release", np.array([*goal, place_z]), yaw, 1.0, hold_steps=3),
                _Phase("retreat", np.array([*goal, CARRY_Z]), yaw, 1.0, hold_steps=20),
            ]
        # push_to: slide along the line object -> goal pad with the closed fingers.
        goal = np.asarray(next(r for r in inst.regions if r.name == inst.goal_region).xy)
        d = goal - o[:2]
        d /= np.linalg.norm(d) + 1e-9
        push_yaw = self._nearest_equiv(env, float(np.arctan2(d[1], d[0])), np.pi)
        back = 0.065
        start = (self._locked_xy if self._locked_xy is not None else o[:2]) - d * back
        end = goal - d * (OBJECT_HALF + 0.012)
        return [
            _Phase("pre", np.array([*start, ABOVE_Z]), push_yaw, 0.0, tol=0.008),
            _Phase("down", np.array([*start, 0.022]), push_yaw, 0.0, tol=0.005),
            _Phase("push", np.array([*end, 0.022]), push_yaw, 0.0, tol=0.005, speed=0.015),
            _Phase("retreat", np.array([*end, ABOVE_Z]), push_yaw, 0.0, hold_steps=20),
        ]

    def _grip_offset(self, env: ArmEnv) -> np.ndarray:
        """TCP minus held-object position in the table plane (objects slip a little in the grasp)."""
        tcp = env.arm.tcp_pose()[0]
        return (tcp - body_pos(env.client, self._obj))[:2]

    def _grasp_yaw_for(self, env: ArmEnv) -> float:
        if self._grasp_yaw is None:
            q = p.getBasePositionAndOrientation(self._obj, physicsClientId=env.client)[1]
            obj_yaw = p.getEulerFromQuaternion(q)[2]
            self._grasp_yaw = self._nearest_equiv(env, obj_yaw, np.pi / 2)
        return self._grasp_yaw

    @staticmethod
    def _nearest_equiv(env: ArmEnv, yaw: float, period: float) -> float:
        cur = tcp_yaw(env.target_pose[1])
        return float(cur + _wrap(yaw - cur, period))

    # --- control ---------------------------------------------------------------
    def act(self, env: ArmEnv) -> np.ndarray:
        phases = self._plan(env)
        ph = phases[min(self._phase_idx, len(phases) - 1)]
        if self._empty_grasp(env, ph.name):
            self.missed += 1
            self._retry(env)
            phases = self._plan(env)
            ph = phases[0]
        tpos, tquat = env.target_pose
        err = ph.pos - tpos
        yaw_err = 0.0 if ph.yaw is None else _wrap(ph.yaw - tcp_yaw(tquat), 2 * np.pi)
        # Arrival is judged on the measured TCP too: the arm lags its target while moving.
        lag = np.linalg.norm(ph.pos - env.arm.tcp_pose()[0])
        arrived = np.linalg.norm(err) < ph.tol and lag < 1.5 * ph.tol and abs(yaw_err) < 0.05
        self._phase_steps += 1
        if (ph.hold_steps and self._phase_steps >= ph.hold_steps) or (not ph.hold_steps and arrived):
            if ph.name in ("above", "pre"):  # freeze the approach point for the descent
                self._locked_xy = body_pos(env.client, self._obj)[:2]
            if ph.name == "lift":  # the object has settled in the hand: remember where
                self._offset = self._grip_offset(env)
            self._phase_idx += 1
            self._phase_steps = 0
        releasing = self._release_step is not None and self._phase_steps >= self._release_step
        if ph.name == self._release_phase and releasing:
            action = self._finish(env, np.zeros(3), 0.0, 0.0 if ph.name == "push" else 1.0)
        else:
            step = np.clip(err, -ph.speed, ph.speed)
            action = self._finish(env, step, float(np.clip(yaw_err, -0.3, 0.3)), ph.gripper)
        self.label = action
        if self._miss_stage == "" and self._miss is not None and ph.name == "descend":
            self._miss_stage = "descend"  # frozen here: the expert's own plan changes once it sees the miss
            axis = self._finger_axis(env)
            across = np.array([-axis[1], axis[0]])
            self._miss_goal = np.array([*(ph.pos[:2] + self._miss[0] * across + self._miss[1] * axis), ph.pos[2]])
            self._miss_yaw = ph.yaw
        if self._miss_stage in ("descend", "close"):
            return self._induced_miss(env)
        steady = ph.hold_steps or (self.config.steady_grasp and ph.name in ("descend", "lift", "lower"))
        return action if steady else self._perturb(env, action)

    def _induced_miss(self, env: ArmEnv) -> np.ndarray:
        """The executed action of an induced miss: descend beside the object and close there on nothing.
        Only executed: `label` stays what the expert does from each state (reach the object; once the hand
        is closed, reopen and rise), so the data never teaches the miss."""
        self.induced_miss = True
        tpos, tquat = env.target_pose
        self._miss_steps += 1
        if self._miss_stage == "descend":
            lag = np.linalg.norm(self._miss_goal - env.arm.tcp_pose()[0])
            if (np.linalg.norm(self._miss_goal - tpos) < 0.004 and lag < 0.006) or self._miss_steps > 15:
                self._miss_stage, self._miss_steps = "close", 1
        if self._miss_stage == "close" and self._miss_steps >= 4:  # as long as the expert's own close
            self._miss_stage = "done"
        yaw_err = 0.0 if self._miss_yaw is None else _wrap(self._miss_yaw - tcp_yaw(tquat), 2 * np.pi)
        gripper = 1.0 if self._miss_stage == "descend" else 0.0
        step = np.clip(self._miss_goal - tpos, -0.03, 0.03)
        return self._finish(env, step, float(np.clip(yaw_err, -0.3, 0.3)), gripper)

    @staticmethod
    def _finger_axis(env: ArmEnv) -> np.ndarray:
        """Unit xy direction the fingers close along (it differs between arms at the same yaw)."""
        a, b = (np.asarray(p.getLinkState(env.arm.body, link, physicsClientId=env.client)[4][:2])
                for link in env.arm_spec.gripper.width_links)
        return (a - b) / (np.linalg.norm(a - b) + 1e-9)

    def _perturb(self, env: ArmEnv, action: np.ndarray) -> np.ndarray:
        """DART: a burst of a few steps pushed the same way, so the arm drifts centimetres off course."""
        cfg = self.config
        if cfg.perturb_prob <= 0:
            return action
        if self._burst_left == 0 and self.rng.random() < cfg.perturb_prob:
            self._burst = self.rng.normal(0.0, cfg.perturb_std, 3) * np.array([1.0, 1.0, 0.5])
            self._burst_left = int(self.rng.integers(1, cfg.perturb_max_steps + 1))
        if self._burst_left == 0:
            return action
        self._burst_left -= 1
        out = action.copy()
        out[:3] += self._burst
        return env.spec_actions.validate(out)

    def _finish(self, env: ArmEnv, dpos: np.ndarray, dyaw: float, gripper: float) -> np.ndarray:
        if self.config.noise_std > 0:
            dpos = dpos + self.rng.normal(0.0, self.config.noise_std, 3)
            dyaw = dyaw + float(self.rng.normal(0.0, 0.03))
        a = np.array([*dpos, 0.0, 0.0, dyaw, gripper], dtype=np.float32)
        return env.spec_actions.validate(a)


def expert_chunk(env: ArmEnv, expert: ScriptedExpert, horizon: int) -> np.ndarray:
    """-> (horizon, A): the actions the expert would take from the current state, found by running it
    closed-loop in a lookahead that is rolled back afterwards (the episode is not advanced)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    with env.lookahead():
        expert.resume(env)
        actions = []
        for _ in range(horizon):
            a = expert.act(env)
            actions.append(a)
            env.simulate(a)
    return np.stack(actions).astype(np.float32)


def _wrap(x: float, period: float) -> float:
    """x wrapped to [-period/2, period/2)."""
    return float((x + period / 2) % period - period / 2)


@dataclass(frozen=True)
class ExpertFactory:
    """Picklable agent factory for the runner: one expert per episode, seeded from the episode seed."""

    quality: str = "expert"

    def __post_init__(self) -> None:
        ExpertConfig.named(self.quality)  # validates

    def __call__(self, seed: int) -> ScriptedExpert:
        return ScriptedExpert(ExpertConfig.named(self.quality), np.random.default_rng([seed, 0xE7]))
