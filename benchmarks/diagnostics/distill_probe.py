"""Can a few-step student of the DiT head match the 10-step teacher? (the steering issue's item 5)

    python benchmarks/diagnostics/distill_probe.py [--policy models/policy] [--relabelled runs/relabel_v1]
        [--steps 3] [--train-steps 1500]

Teacher targets: the policy's 10-step DDIM chunks from 4 fixed noises at every relabelled decision's token
(states the policy itself reached). The student is a copy of the head trained so that its `--steps`-step
DDIM chunk from the same noise matches the teacher's (MSE in normalised action space, backpropagated
through the unrolled steps; every 10th episode held out). Prints the held-out RMSE of the plain few-step
sampler, then the student's every 250 steps. Writes nothing but the student's weights to /tmp.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from verifiers.relabelled import read_decisions
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.policy.model import VLAPolicy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--relabelled", nargs="+", default=["runs/relabel_v1"])
    ap.add_argument("--steps", type=int, default=3, help="the student's DDIM steps")
    ap.add_argument("--train-steps", type=int, default=1500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    k = args.steps
    p = VLAPolicy.from_pretrained(args.policy).eval()
    for q in p.parameters():
        q.requires_grad_(False)
    d = read_decisions(args.relabelled, weights_fingerprint(p), p.config.horizon, p.config.action_dim)
    cond = torch.from_numpy(d.cond)  # (S, d)
    val = np.isin(d.episode, np.unique(d.episode)[::10])
    tr_idx, va_idx = np.where(~val)[0], np.where(val)[0]
    h, a = p.config.horizon, p.config.action_dim
    g = torch.Generator().manual_seed(0)
    r_per = 4  # noises per state
    t0 = time.time()
    with torch.no_grad():
        noise = torch.randn(len(cond), r_per, h, a, generator=g)  # (S, R, H, A)
        target = torch.empty_like(noise)
        for i in range(0, len(cond), 256):
            c, nz = cond[i:i + 256], noise[i:i + 256]
            b = c.shape[0]
            target[i:i + 256] = p.denoise(c.repeat_interleave(r_per, 0), nz.reshape(b * r_per, h, a)).reshape(
                b, r_per, h, a)
    print(f"targets {time.time() - t0:.0f}s", flush=True)
    student = copy.deepcopy(p.head).train()
    for q in student.parameters():
        q.requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)

    def held_out_rmse(head) -> float:
        with torch.no_grad():
            c = cond[va_idx].repeat_interleave(r_per, 0)
            x = p.denoise(c, noise[va_idx].reshape(-1, h, a), head=head, steps=k)
            return float(((x - target[va_idx].reshape(-1, h, a)) ** 2).mean().sqrt())

    print("plain K-step rmse (normalised)", held_out_rmse(p.head), flush=True)
    batch = 64
    t0 = time.time()
    for step in range(1, args.train_steps + 1):
        i = torch.from_numpy(np.random.default_rng(step).choice(tr_idx, batch))
        r = torch.randint(0, r_per, (batch,), generator=g)
        x = p.denoise(cond[i], noise[i, r], head=student, steps=k)
        loss = ((x - target[i, r]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            student.eval()
            print(step, f"{time.time() - t0:.0f}s train {loss.item() ** 0.5:.4f} val {held_out_rmse(student):.4f}",
                  flush=True)
            student.train()
    torch.save(student.state_dict(), f"/tmp/student_k{k}.pt")


if __name__ == "__main__":
    main()
