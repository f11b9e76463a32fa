"""Seconds per policy training step (batch 64, the loss and AdamW update of `vla train policy`) for a few model
options, measured in one run so the ratios hold on a noisy machine: what a 60-minute budget buys.

    .venv/bin/python benchmarks/train_step_cost.py [--steps 10] [--threads 2]

Random inputs at the training shapes (the config's image size and chunk): a step's cost does not depend on the
values.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.model import VLAPolicy, language_features
from vla_runtime.policy.normalize import Normalizer

VARIANTS = {
    "v5 (anchor)": PolicyConfig(anchor=True),
    "v6 (roles)": PolicyConfig(role_grounding=True),
    "v6 (roles, strides 2,1,1)": PolicyConfig(role_grounding=True, vision_strides=(2, 1, 1)),
    "v6 (roles, strides 2,2,1)": PolicyConfig(role_grounding=True, vision_strides=(2, 2, 1)),
}


def step_seconds(config: PolicyConfig, steps: int, batch: int, rng: np.random.Generator) -> float:
    spec = config.action_spec
    normalizer = Normalizer.fit(rng.uniform(spec.low_array(), spec.high_array(), (256, spec.dim)).astype(np.float32),
                                rng.normal(size=(256, config.proprio_dim)).astype(np.float32))
    model = VLAPolicy(config, normalizer).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    lang = language_features(config, ["put the orange cylinder on top of the yellow cylinder"] * batch)
    h, w = config.image_size
    images, proprio = torch.rand(batch, 3, h, w), torch.randn(batch, config.proprio_dim)
    actions = torch.from_numpy(rng.uniform(spec.low_array(), spec.high_array(),
                                           (batch, config.horizon, spec.dim)).astype(np.float32))
    xy = torch.rand(batch, 4) * 0.2 + 0.4
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        loss = model.loss(images, lang, proprio, actions, generator=gen, object_xy=xy,
                          object_mask=torch.ones(batch, dtype=torch.bool), anchor=xy if config.anchor else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    base = None
    for name, config in VARIANTS.items():
        s = step_seconds(config, args.steps, args.batch, rng)
        base = base or s
        print(json.dumps({"variant": name, "s_per_step": round(s, 3), "ratio": round(s / base, 2),
                          "steps_in_60_min": int(3600 / s)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
