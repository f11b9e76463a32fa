"""How precisely can the policy's vision encoder localise the instructed object? A supervised probe.

    python benchmarks/diagnostics/vision_probe.py --data data/expert64 --test runs/chk64 \
        [--variants s16,s32] [--steps 1000]

Each variant trains the language-FiLM CNN (`VisionEncoder`) + a linear head to regress the target
object's table xy (privileged scene label) from the first two frames of every training episode,
with the policy's augmentation, and reports the mean xy error (mm) on a held-out dataset's first
frames against the predict-the-mean baseline. This is how the 32x32 keypoint maps were chosen.
Variants: `s16` (block strides 1,2,1: 16x16 maps at 64x64), `s32` (1,1,1: 32x32 maps at 64x64) and
`r128` (128x128 input, strides 2,1,1: 32x32 maps at about the cost of `s32`; needs data collected at
>= 128). Frames are resized to each variant's input size; the shift scales with it.
Last stdout line: JSON `{"baseline_mm": b, "variants": {name: {"steps": {step: mm}, "seconds": s}}}`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from vla_runtime.dataset import EpisodeDataset
from vla_runtime.policy.model import shared_language_encoder
from vla_runtime.policy.steps import resize_frames
from vla_runtime.policy.vision import VisionEncoder, augment

VARIANTS = {"s16": (64, (1, 2, 1)), "s32": (64, (1, 1, 1)), "r128": (128, (2, 1, 1))}  # input side, strides


def first_frames(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, H, W, 3) uint8 frames 0-1 of each episode, (N, 2) target xy, instructions."""
    ds = EpisodeDataset([path])
    ims, xy, ins = [], [], []
    for k in range(len(ds)):
        ep = ds.load_episode(k)
        for t in range(2):
            ims.append(ep.images["static"][t])
            xy.append(ep.meta["scene"]["objects"][0]["xy"])
            ins.append(ep.meta["instruction"])
    return np.stack(ims), np.asarray(xy, np.float32), ins


def probe(variant: str, train, test, steps: int, shift: int, seed: int) -> dict:
    torch.manual_seed(seed)
    side, strides = VARIANTS[variant]
    ims, xy, lang = train
    tims, txy, tlang = test
    ims, tims = resize_frames(ims, (side, side)), resize_frames(tims, (side, side))
    shift = round(shift * side / 64)
    mu, sd = xy.mean(0), xy.std(0)
    lang_proj = torch.nn.Sequential(torch.nn.Linear(lang.shape[1], 128), torch.nn.SiLU(), torch.nn.Linear(128, 128))
    vis = VisionEncoder((16, 32, 64), 8, 32, cond_dim=128, out_dim=128, strides=strides)
    head = torch.nn.Linear(128, 2)
    opt = torch.optim.AdamW([*lang_proj.parameters(), *vis.parameters(), *head.parameters()], lr=3e-4)
    x_all = torch.from_numpy(ims).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    y_all = torch.from_numpy((xy - mu) / sd)
    x_test = torch.from_numpy(tims).permute(0, 3, 1, 2).float() / 255
    gen = torch.Generator().manual_seed(seed)

    def predict(x: torch.Tensor, lang_emb: torch.Tensor) -> torch.Tensor:
        return head(vis(x * 2 - 1, lang_proj(lang_emb)))

    out, t0 = {}, time.perf_counter()
    for step in range(steps + 1):
        if step % 250 == 0:
            with torch.no_grad():
                pred = predict(x_test, tlang).numpy() * sd + mu
            out[step] = round(float(np.abs(pred - txy).mean() * 1000), 1)
            print(f"{variant} step {step}: held-out xy error {out[step]} mm", flush=True)
        if step == steps:
            break
        i = torch.randint(0, len(x_all), (64,), generator=gen)
        loss = F.mse_loss(predict(augment(x_all[i], shift, 0.15, gen), lang[i]), y_all[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"steps": out, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/expert64")
    ap.add_argument("--test", required=True, help="a held-out dataset (other seeds) from `vla sim collect`")
    ap.add_argument("--variants", default="s16,s32")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--shift", type=int, default=1, help="random-shift pixels at 64x64 (scaled per variant)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    enc = shared_language_encoder("")
    ims, xy, ins = first_frames(args.data)
    tims, txy, tins = first_frames(args.test)
    train, test = (ims, xy, enc.encode(ins)), (tims, txy, enc.encode(tins))
    baseline = round(float(np.abs(xy.mean(0) - txy).mean() * 1000), 1)
    print(f"predict-the-mean baseline: {baseline} mm")
    result = {"baseline_mm": baseline, "variants": {}}
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; known: {sorted(VARIANTS)}")
        result["variants"][v] = probe(v, train, test, args.steps, args.shift, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
