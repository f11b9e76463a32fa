"""Where does the policy think the instructed object is, frame by frame? (its object head, open loop)

    python benchmarks/diagnostics/object_probe_by_step.py --policy models/policy --data runs/chk64 [--steps 8]

Reads each held-out expert episode's first `--steps` frames through the policy's encoders and
compares the object head's target xy with the scene record (table plane, mm). At t=0 the arm is
at its home pose, so only the image + instruction can tell where the target is; later, the arm
(proprio and pixels) is already heading there. A policy whose error falls from tens of
millimetres at t=0 to a few at t=4 learned to read the target off the arm's own motion (the
"copycat" shortcut), not to find the named object. Needs a policy with an object head.
Last stdout line: JSON `{"policy", "episodes", "median_mm": [per step], "mean_mm": [per step]}`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vla_runtime.policy.model import VLAPolicy, language_features
from vla_runtime.policy.steps import load_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--data", required=True, help="held-out episodes from `vla sim collect` (other seeds)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = VLAPolicy.from_pretrained(args.policy).eval()
    table = load_steps([args.data], model.config, object_label_steps=args.steps, progress=False)
    idx = np.flatnonzero(table.object_mask)  # the first `steps` frames of every episode with a scene record
    lang = language_features(model.config, table.instructions)
    with torch.no_grad():
        images = torch.from_numpy(table.images[idx]).permute(0, 3, 1, 2).float() / 255.0
        lang_b, proprio_b = lang[torch.from_numpy(table.instr[idx])], torch.from_numpy(table.proprio[idx])
        wrist = (None if table.wrist_images is None
                 else torch.from_numpy(table.wrist_images[idx]).permute(0, 3, 1, 2).float() / 255.0)
        vis, cond = model.features(images, lang_b, proprio_b, wrist=wrist)
        xy = model.object_xy(vis if model.config.aux_object_input == "vision" else cond).numpy()
    err_mm = np.linalg.norm(xy[:, :2] - table.object_xy[idx, :2], axis=1) * 1000  # (M,)
    episode = table.episode[idx]
    t = np.concatenate([np.arange(np.sum(episode == e)) for e in np.unique(episode)])  # frame index per row
    med, mean = [], []
    for k in range(args.steps):
        sel = t == k
        if not sel.any():
            break
        med.append(round(float(np.median(err_mm[sel])), 1))
        mean.append(round(float(err_mm[sel].mean()), 1))
        print(f"t={k}: target xy error median {med[-1]:6.1f} mm, mean {mean[-1]:6.1f} mm ({int(sel.sum())} episodes)")
    print(json.dumps({"policy": args.policy, "episodes": int(len(np.unique(episode))), "median_mm": med,
                      "mean_mm": mean}))


if __name__ == "__main__":
    main()
