"""Does the policy move towards the object? Open loop on recorded expert frames: the mean of n samples'
first action against the expert's label, and the chunk's xyz error, at a few steps of a few episodes.

    .venv/bin/python benchmarks/diagnostics/open_loop_direction.py --policy runs/policy_v6.stage1 \\
        --data data/expert_v6 --episodes 0,2,6 --steps 0,5,10
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vla_runtime.dataset import EpisodeDataset
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.types import Observation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--episodes", default="0,2,6")
    ap.add_argument("--steps", default="0,5,10")
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(2)
    policy = VLAPolicy.from_pretrained(args.policy)
    ds = EpisodeDataset(args.data)
    h = policy.config.horizon
    for k in (int(x) for x in args.episodes.split(",")):
        ep, meta = ds.load_episode(k), ds.meta(k)
        for t in (int(x) for x in args.steps.split(",")):
            if t + h > len(ep.actions):
                continue
            obs = Observation(images={policy.config.camera: ep.images[policy.config.camera][t]},
                              instruction=meta["instruction"], proprio=ep.proprio[t])
            mean = policy.sample(policy.encode(obs), args.n, torch.Generator().manual_seed(0)).mean(0)  # (H, A)
            print(json.dumps({"episode": k, "task": meta["task"], "arm": meta.get("arm"), "t": t,
                              "first_xy_policy_cm": [round(float(v) * 100, 2) for v in mean[0, :2]],
                              "first_xy_expert_cm": [round(float(v) * 100, 2) for v in ep.actions[t, :2]],
                              "chunk_xyz_mae_mm": round(float(np.abs(mean[:, :3] - ep.actions[t:t + h, :3]).mean())
                                                        * 1000, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
