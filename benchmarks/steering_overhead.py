"""Steering overhead on this CPU: steered `act()` (verifier + value) against the unsteered one, in one run.

    python benchmarks/steering_overhead.py [--policy models/policy] [--verifier models/verifier]
        [--value models/value] [--threads 2] [--repeats 30]

One decision = `SteeredPolicy.act(obs)`: encode, sample n, propose m, score, select. Rows:
- unsteered n=1: the policy's own sample (what `vla eval --steer none` executes);
- unsteered mean of n: `--average n` (the bundled default execution; same encode + sample(n));
- steered `both` at n=m=16 and n=m=64 (GaussianVote candidates, verifier + value, z-scored sum).
Prints a table, the per-stage medians of the steered rows, and last one JSON line with the ratios
`steered_n16_over_unsteered` (target <= 1.5) and `steered_n64_over_unsteered`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from policy_latency import random_observation, timed  # benchmarks/ is on sys.path when run as a script

from verifiers.steering import SteeringConfig, build_steered
from vla_runtime.execution import average_chunks
from vla_runtime.policy.model import VLAPolicy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--verifier", default="models/verifier")
    ap.add_argument("--value", default="models/value")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policy = VLAPolicy.from_pretrained(args.policy)
    obs = random_observation(policy)
    gen = torch.Generator().manual_seed(0)
    unsteered = build_steered(policy, SteeringConfig(method="none"))
    rows = {}
    rows["unsteered n=1"], _ = timed(lambda: unsteered.act(obs, gen), args.repeats)
    gi = policy.config.action_spec.gripper_index
    for n in (16, 64):
        def averaged(n=n):
            ctx = unsteered.episode.encode(obs)
            return average_chunks(policy.sample(ctx, n, gen), gi)

        rows[f"unsteered mean of {n}"], _ = timed(averaged, args.repeats)
    stages = {}
    for n in (16, 64):
        steered = build_steered(policy, SteeringConfig(method="both", n=n, m=n, verifier=args.verifier,
                                                       value=args.value))
        rows[f"steered both n=m={n}"], results = timed(lambda s=steered: s.act(obs, gen), args.repeats)
        stages[str(n)] = {k: round(float(np.median([r.timings_ms[k] for r in results])), 3)
                          for k in results[0].timings_ms}
    base = rows["unsteered n=1"]["median"]
    result = {"policy": args.policy, "threads": args.threads, "act_ms": rows, "stages_ms": stages,
              "steered_n16_over_unsteered": round(rows["steered both n=m=16"]["median"] / base, 3),
              "steered_n64_over_unsteered": round(rows["steered both n=m=64"]["median"] / base, 3),
              "steered_n16_over_mean_of_16": round(rows["steered both n=m=16"]["median"]
                                                   / rows["unsteered mean of 16"]["median"], 3)}
    for name, r in rows.items():
        print(f"{name:<24} median {r['median']:7.2f} ms  p90 {r['p90']:7.2f} ms  x{r['median'] / base:.2f}")
    for n, st in stages.items():
        print(f"stages n=m={n}: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()) + " (ms, medians)")
    print(f"steered n=m=16 / unsteered = {result['steered_n16_over_unsteered']:.2f} (target <= 1.5); "
          f"/ mean of 16 = {result['steered_n16_over_mean_of_16']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
