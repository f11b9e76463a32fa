"""Policy latency on this CPU with torch: `encode` once, `sample` for n = 1, 4, 16, 64.

    python benchmarks/policy_latency.py [--policy models/policy] [--threads 2] [--repeats 30]

`sample(n)` is one batched DDIM run from one conditioning token, so its cost
should grow far slower than n. Prints a table and, last, one JSON line
`{"policy", "threads", "encode_ms": {"median", "p90"}, "sample_ms": {"1": {...}, ...},
"ratio_n16_n1": r}`; target ratio <= 2.5. All figures come from one run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vla_runtime import bench
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.types import Observation


def timed(fn, repeats: int, warmup: int = 3) -> tuple[dict, list]:
    """`vla_app.bench.timed` in this script's output form: ({"median", "p90"} ms, rounded; the calls'
    return values)."""
    stats, outs = bench.timed(fn, repeats, warmup)
    return {"median": round(stats["median_ms"], 3), "p90": round(stats["p90_ms"], 3)}, outs


def random_observation(policy: VLAPolicy, seed: int = 0) -> Observation:
    """Random images at the sizes the policy reads, a fixed instruction (`vla_app.bench`)."""
    return bench.random_observation(policy.config, np.random.default_rng(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policy = VLAPolicy.from_pretrained(args.policy)
    obs = random_observation(policy)
    ctx = policy.encode(obs)  # also warms the instruction-embedding cache, as in a running episode
    result = {"policy": args.policy, "threads": args.threads, "encode_ms": timed(lambda: policy.encode(obs),
                                                                                   args.repeats)[0]}
    gen = torch.Generator()
    result["sample_ms"] = {str(n): timed(lambda n=n: policy.sample(ctx, n, gen.manual_seed(0)), args.repeats)[0]
                           for n in (1, 4, 16, 64)}
    result["ratio_n16_n1"] = round(result["sample_ms"]["16"]["median"] / result["sample_ms"]["1"]["median"], 3)
    print(f"encode: median {result['encode_ms']['median']:.2f} ms, p90 {result['encode_ms']['p90']:.2f} ms")
    for n, r in result["sample_ms"].items():
        print(f"sample n={n:>2}: median {r['median']:.2f} ms, p90 {r['p90']:.2f} ms")
    print(f"sample(n=16)/sample(n=1) = {result['ratio_n16_n1']:.2f} (target <= 2.5)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
