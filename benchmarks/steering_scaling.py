"""Action error vs the number of samples k on held-out demonstration states, RoboMonkey's power law, and
(optionally) closed-loop success vs n from `vla eval --json` files, in one PNG.

    python benchmarks/steering_scaling.py [--policy models/policy] [--verifier models/verifier]
        [--value models/value] [--data data/expert64 data/dart64 | --relabelled runs/relabel_v1]
        [--states 512] [--steps K] [--success N=PATH ...] [--png benchmarks/results/steering_scaling.png]

States: with `--data`, the verifier's validation episodes (`FeatureTable.split` with its seed and
fraction), which it never trained on; with `--relabelled`, decisions of `vla sim relabel` folders: states
the policy itself reached, each with the scripted expert's chunk from there (the states steering meets).
`--steps`: the samples' DDIM steps (default: the policy's own). Per state and k in 1..32: k policy
samples -> k GaussianVote candidates -> the pick of each selector; the error is NRMSE to the expert chunk (per-dimension
q01..q99 range). Rows: one sample (no steering), the Gaussian mean (`--average k`), verifier argmax
over the k draws (`--steer robomonkey`), verifier argmax over the draws and the k samples together,
value argmax (over the k samples), and the oracle (best candidate: the coverage bound). The fit is
`log(err) = log(a) + b log(k)` by least squares over k. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from verifiers.features import cached_features
from verifiers.preferences import nrmse
from verifiers.proposals import GaussianVote
from verifiers.steering import load_scorer
from verifiers.train_verifier import VerifierTrainConfig, demonstration_rows
from vla_runtime.policy.model import VLAPolicy

KS = (1, 2, 4, 8, 16, 32)


def power_law(ks: list[int], errs: list[float]) -> dict:
    b, log_a = np.polyfit(np.log(ks), np.log(errs), 1)
    return {"a": round(float(np.exp(log_a)), 5), "b": round(float(b), 4)}


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--verifier", default="models/verifier")
    ap.add_argument("--value", default="models/value")
    ap.add_argument("--data", nargs="+", default=["data/expert64", "data/dart64"])
    ap.add_argument("--relabelled", nargs="+", default=None, metavar="DIR",
                    help="`vla sim relabel` folders: the policy's own states instead of --data's demonstrations")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps of the samples (default: the policy's own)")
    ap.add_argument("--feature-cache", default="runs/features")
    ap.add_argument("--states", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--success", nargs="*", default=[], metavar="N=PATH",
                    help="closed-loop `vla eval --json` results at n=N, for the success panel")
    ap.add_argument("--variation", default="id", help="the split of the --success rows to plot")
    ap.add_argument("--png", default="benchmarks/results/steering_scaling.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policy = VLAPolicy.from_pretrained(args.policy)
    verifier, value = load_scorer("verifier", args.verifier, policy), load_scorer("value", args.value, policy)
    conds, experts = _states(args, policy)  # (S, d) tokens, (S, H, A) expert chunks
    rows = np.sort(np.random.default_rng(args.seed).choice(len(conds), min(args.states, len(conds)), replace=False))
    spec = policy.config.action_spec
    low, high = policy.normalizer.action_low, policy.normalizer.action_high
    proposal, keep = GaussianVote(spec), GaussianVote(spec, keep_samples=True)
    gen = torch.Generator().manual_seed(args.seed)
    names = ("one sample", "gaussian mean", "verifier", "verifier + samples", "value", "oracle")
    errs = {name: {k: [] for k in KS} for name in names}
    h, a = spec.chunk_length, spec.dim
    for r in rows:
        cond = torch.from_numpy(conds[r:r + 1])
        expert = experts[r]
        samples = policy.normalizer.unnormalize_actions(policy.denoise(
            cond.expand(max(KS), -1), torch.randn((max(KS), h, a), generator=gen), steps=args.steps)).numpy()
        samples = np.clip(samples, spec.low_array(), spec.high_array())
        for k in KS:
            s = samples[:k]  # nested draws: k=2 holds the k=1 sample
            cands = proposal.propose(s, k, gen)  # candidate 0 = the Gaussian mean
            e_c = nrmse(cands, expert, low, high)
            e_s = nrmse(s, expert, low, high)
            v_scores = verifier(cond.expand(len(cands), -1), torch.from_numpy(cands)).numpy()
            q_scores = value(cond.expand(k, -1), torch.from_numpy(s)).numpy()
            errs["one sample"][k].append(e_s[0])
            errs["gaussian mean"][k].append(e_c[0])
            errs["verifier"][k].append(e_c[int(np.argmax(v_scores))])
            union = keep.propose(s, k, gen)  # the draws and the samples (`--keep-samples`)
            u_scores = verifier(cond.expand(len(union), -1), torch.from_numpy(union)).numpy()
            errs["verifier + samples"][k].append(nrmse(union, expert, low, high)[int(np.argmax(u_scores))])
            errs["value"][k].append(e_s[int(np.argmax(q_scores))])
            errs["oracle"][k].append(min(e_c.min(), e_s.min()))
    mean = {name: {k: float(np.mean(v)) for k, v in per_k.items()} for name, per_k in errs.items()}
    result = {"states": int(len(rows)), "source": "relabelled" if args.relabelled else "demonstrations",
              "steps": args.steps or policy.config.inference_steps, "ks": list(KS),
              "nrmse": {n: [round(mean[n][k], 5) for k in KS] for n in names},
              "power_law": {n: power_law(list(KS), [mean[n][k] for k in KS]) for n in ("verifier", "oracle")}}
    success = {}
    for item in args.success:
        n, path = item.split("=", 1)
        rs = [r for r in json.loads(Path(path).read_text())["results"] if r["variation"] == args.variation]
        wins, eps = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
        success[int(n)] = {"rate": wins / eps, "episodes": eps, "method": rs[0]["method"]}
    if success:
        result["success"] = {str(k): v for k, v in sorted(success.items())}
        result["variation"] = args.variation
    print(f"{'k':>4} " + " ".join(f"{n:>18}" for n in names))
    for k in KS:
        print(f"{k:>4} " + " ".join(f"{mean[n][k]:>18.4f}" for n in names))
    for n, fit in result["power_law"].items():
        print(f"power law ({n}): err = {fit['a']:.4f} * k^{fit['b']:.3f}")
    _plot(result, Path(args.png))
    print(json.dumps(result))


def _states(args, policy) -> tuple[np.ndarray, np.ndarray]:
    """The states to rank candidates at: tokens (S, d) and the expert's chunks (S, H, A)."""
    if args.relabelled:
        from verifiers.relabelled import read_decisions
        from vla_runtime.checkpoint import weights_fingerprint

        d = read_decisions(args.relabelled, weights_fingerprint(policy), policy.config.horizon,
                           policy.config.action_dim)
        return d.cond, d.expert
    table = cached_features(args.policy, args.data, Path(args.feature_cache), progress=False)
    vt = VerifierTrainConfig()
    rows = demonstration_rows(table, table.split(vt.val_fraction, vt.seed)[1])
    return table.cond[rows], table.actions[rows]


def _plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.array(result["ks"])
    panels = 2 if "success" in result else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    for name, ys in result["nrmse"].items():
        ax.plot(ks, ys, "o-", label=name)
    for name, fit in result["power_law"].items():
        ax.plot(ks, fit["a"] * ks ** fit["b"], "k--", lw=0.8)
        ax.annotate(f"{name}: {fit['a']:.3f} k^{fit['b']:.2f}", (ks[-1], fit["a"] * ks[-1] ** fit["b"]),
                    fontsize=7, ha="right", va="bottom")
    ax.set(xscale="log", yscale="log", xlabel="samples k", ylabel="NRMSE to expert chunk",
           title=f"{'policy' if result.get('source') == 'relabelled' else 'held-out demonstration'} states "
                 f"(n={result['states']}, {result.get('steps', '?')} DDIM steps)")
    ax.legend(fontsize=7)
    if panels == 2:
        ax = axes[0, 1]
        ns = [int(n) for n in result["success"]]
        rates = [v["rate"] * 100 for v in result["success"].values()]
        ax.plot(ns, rates, "o-")
        ax.set(xscale="log", xlabel="policy samples n", ylabel="success %",
               title=f"closed loop ({next(iter(result['success'].values()))['method']}, {result['variation']})")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
