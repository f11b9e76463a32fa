"""How well each learned scorer ranks the candidates steering meets, on relabelled decisions it never trained on.

    python benchmarks/scorer_ranking.py --relabelled runs/relabel_holdout \
        --scorer verifier=models/verifier --scorer value=models/value [--policy models/policy]

Per decision (the policy's own state, `vla sim relabel`): the recorded candidates (Gaussian draws + the
policy's samples), their NRMSE to the expert's chunk from that state, and each scorer's scores. Prints,
per scorer: the mean per-state correlation of score with -NRMSE (the value's action sensitivity, which
the steering issue asks to be >= 0.5), the NRMSE of its pick against the samples' mean (recorded
candidate 0) and the oracle's pick, and how often the pick is closer to the expert than the mean (and
the reverse) by more than 0.005. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from verifiers.preferences import nrmse
from verifiers.relabelled import read_decisions
from verifiers.steering import load_scorer
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.protocol import Context
from vla_runtime.types import Observation

MIN_GAP = 0.005


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--relabelled", nargs="+", required=True)
    ap.add_argument("--scorer", action="append", required=True, metavar="KIND=DIR",
                    help="verifier=DIR or value=DIR (repeatable; a verifier folder may be a perception verifier)")
    ap.add_argument("--max-states", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    policy = VLAPolicy.from_pretrained(args.policy)
    spec = policy.config.action_spec
    d = read_decisions(args.relabelled, weights_fingerprint(policy), spec.chunk_length, spec.dim, observations=True)
    rows = np.arange(len(d.cond))[: args.max_states]
    low, high = policy.normalizer.action_low, policy.normalizer.action_high
    errors = np.stack([nrmse(d.candidates[i], d.expert[i], low, high) for i in rows])  # (S, K)
    out = {"states": len(rows), "candidates": int(d.candidates.shape[1]),
           "mean_nrmse": float(errors[:, 0].mean()), "oracle_nrmse": float(errors.min(1).mean()), "scorers": {}}
    for spec_text in args.scorer:
        kind, _, folder = spec_text.partition("=")
        scorer = load_scorer(kind, folder, policy)
        corr, picked = [], []
        for j, i in enumerate(rows):
            obs = Observation(images={policy.config.camera: d.images[i]}, instruction=d.instructions[i],
                              proprio=d.proprio[i])
            s = scorer.score(Context(cond=torch.from_numpy(d.cond[i:i + 1]), observation=obs), d.candidates[i])
            e = errors[j]
            if np.ptp(s) > 0 and np.ptp(e) > 0:
                corr.append(np.corrcoef(s, -e)[0, 1])
            picked.append(e[int(np.argmax(s))])
        picked = np.asarray(picked)
        out["scorers"][spec_text] = {
            "corr_score_neg_nrmse": float(np.mean(corr)), "pick_nrmse": float(picked.mean()),
            "pick_beats_mean": float((picked < errors[:, 0] - MIN_GAP).mean()),
            "mean_beats_pick": float((errors[:, 0] < picked - MIN_GAP).mean())}
    print(f"{out['states']} states x {out['candidates']} candidates: NRMSE of the samples' mean "
          f"{out['mean_nrmse']:.4f}, oracle pick {out['oracle_nrmse']:.4f}")
    for name, r in out["scorers"].items():
        print(f"{name}: corr(score, -NRMSE) {r['corr_score_neg_nrmse']:.3f}, pick NRMSE {r['pick_nrmse']:.4f}, "
              f"pick closer than the mean {r['pick_beats_mean']:.0%}, mean closer {r['mean_beats_pick']:.0%}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
