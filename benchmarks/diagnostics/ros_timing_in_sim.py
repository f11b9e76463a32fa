"""Does the ROS graph's observation timing, alone, cost success? The simulator loop with each decision's
observation taken before the step boundary, as the node takes it, and nothing else of ROS.

    python benchmarks/diagnostics/ros_timing_in_sim.py --image-ms 75 --proprio-ms 45 --json OUT.json
    python benchmarks/ros_vs_sim.py OUT.json benchmarks/results/ros_soak_sim_loop.json

In the simulator loop a decision sees the world at the step boundary where its chunk takes over. Over ROS
(plan ahead) it sees an image stamped `--image-ms` before that boundary (the camera's latency plus the
decision's lead) and joints `--proprio-ms` before it, while the arm is still moving under the previous
command. Here each step's physics is split at those instants, the image rendered and the proprio read
there, and the decision made from them at the boundary (it takes no simulated time). `--index-back 1`
files the chunk as planned one step earlier (its first action, for the step already running, skipped, and
the difference spread over `--blend` steps), the node's alternative to executing its first action late.
The policy, steering (robomonkey n = m = 16) and seeds are those of the soak's simulator loop.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_loop_variant import common_args, run

from vla_app.agents import AgentFactory


@dataclass(frozen=True)
class ObservationTiming:
    image_ms: float = 0.0  # the image is rendered this long before the boundary where its chunk takes over
    proprio_ms: float = 0.0  # the joints are read this long before it
    index_back: int = 0  # the chunk's first action belongs to this many steps before the takeover
    blend: int = 2  # continuity steps (the node's blend_steps)

    def __post_init__(self) -> None:
        for name in ("image_ms", "proprio_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 100):
                raise ValueError(f"{name} must be in [0, 100) ms (within one 10 Hz step), got {value}")
        if self.index_back not in (0, 1) or self.blend < 0:
            raise ValueError(f"index_back must be 0 or 1 and blend >= 0, got {self.index_back}, {self.blend}")


def install(env, timing: ObservationTiming) -> dict:
    """Split each step's physics so the image and the proprio are also taken `image_ms` / `proprio_ms`
    before its end; -> the dict holding the latest such (images, depth, proprio)."""
    import pybullet as p

    from sim.env import PHYSICS_HZ

    substeps = round(PHYSICS_HZ / env.spec_actions.control_hz)
    at_image = substeps - round(timing.image_ms * PHYSICS_HZ / 1000)
    at_proprio = substeps - round(timing.proprio_ms * PHYSICS_HZ / 1000)
    early: dict = {}

    def apply(action: np.ndarray) -> None:
        target = env._target
        target.apply(action, env.spec_actions.gripper_index)
        q_cmd, _ = env.ik.solve(target.pos, target.quat, env.arm.joint_positions())
        env.arm.command(q_cmd, target.gripper)
        for i in range(substeps + 1):
            if i == at_image:
                obs = env.observe()
                early["images"], early["depth"] = obs.images, obs.depth
            if i == at_proprio:
                early["proprio"] = env.proprio()
            if i < substeps:
                p.stepSimulation(physicsClientId=env.client)

    env._apply = apply  # this episode's env only: reset() builds a new world, install() runs again
    return early


class _TimedAgent:
    needs_images = True

    def __init__(self, factory: AgentFactory, timing: ObservationTiming, seed: int) -> None:
        from vla_runtime.execution import ChunkExecutor, ExecutorConfig

        self.steered = factory.pipeline()
        self.timing = timing
        self.executor = ChunkExecutor(self.steered.policy.action_spec, ExecutorConfig(blend_steps=timing.blend))
        self.generator = torch.Generator().manual_seed(seed)
        self.early: dict = {}

    def reset(self, env) -> None:
        self.executor.reset()
        self.steered.reset()
        self.early = install(env, self.timing)

    def act(self, env) -> np.ndarray:
        ex = self.executor
        if ex.needs_plan:
            obs = env.last_observation
            if ex.step > 0:  # the first decision sees the settled reset, as over ROS
                obs = type(obs)(images=self.early["images"], instruction=obs.instruction,
                                proprio=self.early["proprio"], depth=self.early["depth"], cameras=obs.cameras,
                                stamp=obs.stamp)
            result = self.steered.act(obs, self.generator)
            ex.add_chunk(result.chunk, start=max(ex.step - self.timing.index_back, 0))
        return ex.next_action() if ex.covers_step() else ex.idle()

    def episode_stats(self) -> dict:
        jumps = self.executor.boundary_jumps
        return {"max_boundary_jump": max(jumps) if jumps else 0.0}


def make_agent(inner: AgentFactory, timing: ObservationTiming, seed: int) -> _TimedAgent:
    torch.set_num_threads(1)
    return _TimedAgent(inner, timing, seed)


def main() -> None:
    ap = common_args(__doc__)
    ap.add_argument("--image-ms", type=float, default=0.0)
    ap.add_argument("--proprio-ms", type=float, default=0.0)
    ap.add_argument("--index-back", type=int, default=0)
    ap.add_argument("--blend", type=int, default=2)
    args = ap.parse_args()
    run(args, ObservationTiming(args.image_ms, args.proprio_ms, args.index_back, args.blend), make_agent)


if __name__ == "__main__":
    main()
