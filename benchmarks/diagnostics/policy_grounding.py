"""Does the policy reach for the instructed object, and how far off is its grasp? (`pick_lift`, closed loop)

    python benchmarks/diagnostics/policy_grounding.py [--policy models/policy] [--episodes 16] [--seed 30000]

Per seeded episode: after `--probe-step` steps, is the TCP nearest the target object (not a
distractor), and the TCP - object offset (mm, table plane) when the policy first closes the
gripper; whether that first close missed (no finger touches the target 3 steps later) and, if so,
whether the policy then recovered (reopened or rose by 2 cm) or stayed put. Success rates say *that*
a policy fails; this says *why* (grounding, precision, or no recovery from a miss). For an anchor
policy (`PolicyConfig.anchor`) also the latched anchor's target error; `--oracle-anchor` latches the
true target xy instead (an upper bound: how well the action head acts on a perfect anchor).
Uses development seeds (default 30000+), never the evaluation seeds. Last stdout line: JSON
`{"episodes", "target_nearest", "median_reach_mm", "median_grasp_offset_mm", "missed_grasps",
"stuck_after_miss", "successes", "median_anchor_err_mm"}`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sim.env import ArmEnv, EnvConfig
from sim.tasks import body_pos
from vla_app.agents import AgentFactory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=30_000)
    ap.add_argument("--probe-step", type=int, default=9)
    ap.add_argument("--oracle-anchor", action="store_true",
                    help="anchor policies: latch the true target xy (privileged) instead of the head's estimate")
    args = ap.parse_args()
    factory = AgentFactory(args.policy)
    env = ArmEnv(EnvConfig(task="pick_lift", variation="id", **factory.env_options()))
    nearest, reach, grasp, wins, missed, stuck, anchor_err = 0, [], [], 0, 0, 0, []
    for seed in range(args.seed, args.seed + args.episodes):
        agent = factory(seed)
        env.reset(seed=seed)
        agent.reset(env)
        graspable = [o for o, spec in zip(env.world.objects, env.instance.objects) if spec.urdf is None]
        target_xy = body_pos(env.client, graspable[0])[:2]
        if args.oracle_anchor:
            if not factory.pipeline().policy.config.anchor:
                raise SystemExit(f"--oracle-anchor: {args.policy} is not an anchor policy")
            # pick_lift: the goal is the object itself
            factory.pipeline().episode.anchor = np.array([*target_xy, *target_xy], np.float32)
        offset, near, info = None, False, {"success": False}
        close_t, miss, close_z, recovered = None, False, 0.0, False
        for t in range(env.config.max_steps):
            action = agent.act(env)
            tcp = env.arm.tcp_pose()[0]
            closing = action[env.spec_actions.gripper_index] < 0.5
            if offset is None and closing:
                offset = float(np.linalg.norm((tcp - body_pos(env.client, graspable[0]))[:2]) * 1000)
                close_t, close_z = t, float(tcp[2])
            if close_t is not None and t == close_t + 3:
                miss = not env.arm.in_contact_with(graspable[0])
            if miss and (not closing or tcp[2] > close_z + 0.02):
                recovered = True
            if t == args.probe_step:
                d = [np.linalg.norm(body_pos(env.client, o)[:2] - tcp[:2]) for o in graspable]
                near = bool(np.argmin(d) == 0)
                nearest += near
                reach.append(d[0] * 1000)
            if t == 0 and agent.episode.anchor is not None:
                anchor_err.append(float(np.linalg.norm(agent.episode.anchor[:2] - target_xy) * 1000))
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        wins += bool(info["success"])
        missed += miss
        stuck += miss and not recovered
        grasp.append(offset if offset is not None else float("nan"))
        print(f"seed {seed}: target nearest at step {args.probe_step}: {near}, grasp offset "
              f"{grasp[-1]:.0f} mm, missed {miss}{' (stuck)' if miss and not recovered else ''}, "
              f"success {info['success']}", flush=True)
    out = {"policy": args.policy, "episodes": args.episodes, "target_nearest": nearest,
           "median_reach_mm": round(float(np.median(reach)), 1),
           "median_grasp_offset_mm": round(float(np.nanmedian(grasp)), 1), "missed_grasps": int(missed),
           "stuck_after_miss": int(stuck), "successes": wins,
           "median_anchor_err_mm": round(float(np.median(anchor_err)), 1) if anchor_err else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
