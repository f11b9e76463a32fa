"""Decision latency of two policies measured in one run, interleaved (this machine is noisy): a candidate
must stay within 20% of the bundled policy (issue 17).

    .venv/bin/python benchmarks/policy_latency.py --policies models/policy,runs/policy_v6 [--backend torch,onnx]

Times `encode` alone and a whole mean-of-16 decision (`SteeredPolicy.act`, method `mean`: encode + 16 samples
in one denoising run + the mean), on one `stack` observation from the simulator at each policy's image size;
prints one JSON row per (backend, policy) and the candidate's ratio to the first policy.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from sim.env import ArmEnv, EnvConfig
from verifiers.steering import SteeringConfig, steered_pipeline
from vla_app.agents import read_policy_config


def _observation(policy_dir: str):
    cfg = read_policy_config(policy_dir)
    env = ArmEnv(EnvConfig(task="stack", image_size=tuple(cfg.image_size)))
    try:
        env.reset(seed=30000)
        return env.last_observation
    finally:
        env.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", required=True, help="comma list; the first is the reference")
    ap.add_argument("--backend", default="torch,onnx")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policies = args.policies.split(",")
    rows = []
    for backend in args.backend.split(","):
        pipes = {p: steered_pipeline(p, SteeringConfig(method="mean", n=16), backend, threads=args.threads)
                 for p in policies}
        obs = {p: _observation(p) for p in policies}
        times: dict[str, dict[str, list[float]]] = {p: {"encode": [], "act_mean16": []} for p in policies}
        for r in range(args.repeats + 3):  # 3 warm-up rounds, then the policies take turns each round
            for p in policies:
                t0 = time.perf_counter()
                pipes[p].policy.encode(obs[p])
                t1 = time.perf_counter()
                pipes[p].reset()
                pipes[p].act(obs[p], torch.Generator().manual_seed(r))
                t2 = time.perf_counter()
                if r >= 3:
                    times[p]["encode"].append((t1 - t0) * 1e3)
                    times[p]["act_mean16"].append((t2 - t1) * 1e3)
        ref = {k: float(np.median(v)) for k, v in times[policies[0]].items()}
        for p in policies:
            med = {k: float(np.median(v)) for k, v in times[p].items()}
            rows.append({"backend": backend, "policy": p, **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                         **{f"{k}_ratio": round(med[k] / ref[k], 3) for k in med}})
            print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
