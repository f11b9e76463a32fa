"""How far is an anchor policy's first-frame anchor from the true target and goal? (any task)

    python benchmarks/diagnostics/anchor_error.py [--policy models/policy] [--task stack] [--episodes 12] [--seed 30000]

Per seeded episode: the distance (mm, table plane) from the anchor `encode` latches on the first
frame to the instructed object and to the goal (the scene's privileged positions, as in training:
`train.object_targets`). Development seeds by default. Last stdout line: JSON
`{"policy", "task", "episodes", "median_target_err_mm", "median_goal_err_mm"}`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sim.env import ArmEnv, EnvConfig
from vla_app.agents import AgentFactory
from vla_runtime.backends import load_policy
from vla_runtime.policy.steps import object_targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--task", default="stack")
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--seed", type=int, default=30_000)
    args = ap.parse_args()
    policy = load_policy(args.policy)
    if not policy.config.anchor:
        raise SystemExit(f"{args.policy} is not an anchor policy")
    env = ArmEnv(EnvConfig(task=args.task, variation="id", **AgentFactory(args.policy).env_options()))
    errors = []
    for seed in range(args.seed, args.seed + args.episodes):
        env.reset(seed=seed)
        truth = object_targets(env.instance.to_dict())  # (4,) target xy, goal xy
        anchor = policy.encode(env.last_observation).anchor
        err = (np.linalg.norm(anchor[:2] - truth[:2]) * 1000, np.linalg.norm(anchor[2:] - truth[2:]) * 1000)
        errors.append(err)
        print(f"seed {seed}: {env.last_observation.instruction!r}: target {err[0]:.0f} mm, goal {err[1]:.0f} mm",
              flush=True)
    med = np.median(np.array(errors), axis=0)
    print(json.dumps({"policy": args.policy, "task": args.task, "episodes": args.episodes,
                      "median_target_err_mm": round(float(med[0]), 1), "median_goal_err_mm": round(float(med[1]), 1)}))


if __name__ == "__main__":
    main()
