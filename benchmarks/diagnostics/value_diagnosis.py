"""Does the value function rank the policy's own samples? Per expert state: 16 policy samples, their Q and
their NRMSE to the expert chunk.

    python benchmarks/diagnostics/value_diagnosis.py [--policy models/policy] [--value models/value]
        [--data data/expert64] [--states 300] [--n 16]

Prints the mean NRMSE of the Q-argmax sample, of the average sample and of the Q-argmin sample; the
gripper and motion of the argmax pick against the average; the median spread of Q over the samples
and the mean per-state correlation of Q with -NRMSE. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from verifiers.features import cached_features
from verifiers.preferences import nrmse
from verifiers.steering import load_scorer
from vla_runtime.policy.model import VLAPolicy


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--value", default="models/value")
    ap.add_argument("--data", nargs="+", default=["data/expert64"])
    ap.add_argument("--feature-cache", default="runs/features")
    ap.add_argument("--states", type=int, default=300)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    policy = VLAPolicy.from_pretrained(args.policy)
    value = load_scorer("value", args.value, policy)
    table = cached_features(args.policy, args.data, Path(args.feature_cache), progress=False)
    rows = np.random.default_rng(args.seed).choice(len(table.cond), args.states, replace=False)
    gen = torch.Generator().manual_seed(args.seed)
    spec = policy.config.action_spec
    low, high = policy.normalizer.action_low, policy.normalizer.action_high
    g = spec.gripper_index
    st = []
    for r in rows:
        cond = torch.from_numpy(table.cond[r:r + 1]).expand(args.n, -1)
        noise = torch.randn((args.n, spec.chunk_length, spec.dim), generator=gen)
        s = np.clip(policy.normalizer.unnormalize_actions(policy.denoise(cond, noise)).numpy(),
                    spec.low_array(), spec.high_array())
        q = value(cond, torch.from_numpy(s)).numpy()
        e = nrmse(s, table.actions[r], low, high)
        i, j = int(q.argmax()), int(q.argmin())
        st.append([e[i], e.mean(), e[j], s[i, :, g].mean(), s[:, :, g].mean(), np.abs(s[i, :, :3]).sum(),
                   np.abs(s[:, :, :3]).sum((1, 2)).mean(), np.ptp(q), np.corrcoef(q, -e)[0, 1]])
    st = np.array(st)
    out = {"states": len(rows), "n": args.n,
           "nrmse": {"q_argmax": float(st[:, 0].mean()), "average_sample": float(st[:, 1].mean()),
                     "q_argmin": float(st[:, 2].mean())},
           "gripper_mean": {"q_argmax": float(st[:, 3].mean()), "all": float(st[:, 4].mean())},
           "motion_l1": {"q_argmax": float(st[:, 5].mean()), "all": float(st[:, 6].mean())},
           "q_spread_median": float(np.median(st[:, 7])), "corr_q_neg_nrmse": float(np.nanmean(st[:, 8]))}
    print(f"NRMSE: Q-argmax {out['nrmse']['q_argmax']:.4f}, average sample {out['nrmse']['average_sample']:.4f}, "
          f"Q-argmin {out['nrmse']['q_argmin']:.4f}")
    print(f"Q spread over {args.n} samples (median) {out['q_spread_median']:.2f}; "
          f"corr(Q, -NRMSE) {out['corr_q_neg_nrmse']:.3f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
