"""Does the ROS node's commanding path, alone, cost success? The simulator loop with its commands made as
`policy_node` makes them, and nothing else of ROS (no DDS, no wall clock, no latency).

    python benchmarks/diagnostics/ros_path_in_sim.py --json OUT.json [--no-safety]
    python benchmarks/ros_vs_sim.py OUT.json benchmarks/results/ros_soak_sim_loop.json

Each step, instead of the simulator's own IK on its TCP target, the node's `ArmCommander` (a separate IK
model, seeded with the measured joints) turns the action into joint targets, and the node's `SafetyStage`
(the sim graph's limits: `--max-joint-step`, `--max-joint-acceleration`, no blend-in ramp) limits them; after
an intervention the TCP target is re-anchored to the limited command, as the node does. The policy, steering
(robomonkey n = m = 16), executor and seeds are those of the soak's simulator loop, so a paired difference
against `ros_soak_sim_loop.json` is what the commanding path costs. `--no-safety` keeps the commander and
drops the stage (IK model and seeding only). Writes a `vla eval --json` file.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_loop_variant import common_args, run

from ros_nodes.safety_stage import INTERVENTIONS
from vla_app.agents import AgentFactory


@dataclass(frozen=True)
class NodePath:
    """The node's command path's settings (`config/policy_node.yaml` and the sim graph's arguments)."""

    safety: bool = True
    max_joint_step: float = 0.15  # rad per control period
    max_joint_acceleration: float = 30.0  # rad/s^2
    velocity_scale: float = 1.0
    jump_factor: float = 4.0

    def __post_init__(self) -> None:
        for name in ("max_joint_step", "max_joint_acceleration", "velocity_scale", "jump_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")


def install(env, path: NodePath) -> dict:
    """Replace `env`'s per-step IK with the node's commander (+ safety stage) from the measured pose, for
    this episode; -> the interventions counter the episode fills."""
    from ros_nodes.arm_commander import ArmCommander, CommanderConfig
    from ros_nodes.safety_stage import SafetyConfig, SafetyStage
    from sim.env import PHYSICS_HZ

    commander = ArmCommander(CommanderConfig(arm=env.config.arm))
    stage = SafetyStage(commander.joint_limits(path.max_joint_acceleration), SafetyConfig(
        period_s=1.0 / env.spec_actions.control_hz, velocity_scale=path.velocity_scale,
        max_joint_step=path.max_joint_step, ramp_s=0.0, jump_factor=path.jump_factor))
    q0 = env.arm.joint_positions()
    commander.sync(q0)
    stage.reset(q0)
    counts: dict[str, int] = {"commands": 0}
    substeps = round(PHYSICS_HZ / env.spec_actions.control_hz)
    gripper_index = env.spec_actions.gripper_index

    def apply(action: np.ndarray) -> None:
        q_arm = env.arm.joint_positions()
        q_cmd, _, _ = commander.step(action, q_arm, gripper_index)
        if path.safety:
            q_cmd = stage.command(q_cmd)
            for event in stage.last_events:
                counts[event] = counts.get(event, 0) + 1
            if stage.last_events:  # no wind-up, as in the node
                commander.anchor(q_cmd)
        target = commander.target
        env._target.reset(target.pos, target.quat, target.gripper)  # what env.gripper_command reports
        env.arm.command(q_cmd, target.gripper)
        counts["commands"] += 1
        env.advance(substeps)

    env._apply = apply  # this episode's env only: reset() builds a new world, install() runs again
    return counts


class _NodePathAgent:
    def __init__(self, agent, path: NodePath) -> None:
        self.agent, self.path, self.counts = agent, path, {}
        self.needs_images = agent.needs_images

    def reset(self, env) -> None:
        self.agent.reset(env)
        self.counts = install(env, self.path)

    def act(self, env) -> np.ndarray:
        return self.agent.act(env)

    def episode_stats(self) -> dict:
        return {**self.agent.episode_stats(), **{k: v for k, v in self.counts.items() if k != "commands"}}


def make_agent(inner: AgentFactory, path: NodePath, seed: int) -> _NodePathAgent:
    return _NodePathAgent(inner(seed), path)


def main() -> None:
    ap = common_args(__doc__)
    ap.add_argument("--no-safety", action="store_true", help="the commander only: no safety stage")
    ap.add_argument("--max-joint-step", type=float, default=NodePath.max_joint_step)
    ap.add_argument("--max-joint-acceleration", type=float, default=NodePath.max_joint_acceleration)
    args = ap.parse_args()
    path = NodePath(safety=not args.no_safety, max_joint_step=args.max_joint_step,
                    max_joint_acceleration=args.max_joint_acceleration)
    run(args, path, make_agent, extra=INTERVENTIONS)


if __name__ == "__main__":
    main()
