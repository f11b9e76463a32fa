"""Collection throughput with rendering: env steps/s for 1 and 2 worker processes, and their ratio.

    python benchmarks/env_throughput.py [--episodes 32] [--image-size 128]

Runs `vla_app.collect` (render + expert + atomic episode writes) twice on the same
seeded episodes in one process run, so the ratio is measured under the same
machine load. Last stdout line: `{"image_size", "episodes", "rows": [{"workers",
"steps", "seconds", "steps_per_s"}], "speedup_2_vs_1"}`. Acceptance: speedup >= 1.6.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vla_app.collect import CollectConfig, collect
from vla_runtime.dataset import EpisodeDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=500)
    args = ap.parse_args()
    rows = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = CollectConfig(out=Path(tmp), episodes=args.episodes, seed=args.seed,
                                image_size=(args.image_size, args.image_size))
            res = collect(cfg, workers=workers, progress=False)
            steps = EpisodeDataset(tmp).num_steps
        rows.append({"workers": workers, "steps": steps, "seconds": res["seconds"],
                     "steps_per_s": round(steps / res["seconds"], 2)})
        print(f"workers={workers}: {steps} steps in {res['seconds']:.1f} s -> {steps / res['seconds']:.1f} steps/s")
    speedup = rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    print(f"speedup 2 vs 1 workers: {speedup:.2f}x (target >= 1.6)")
    print(json.dumps({"image_size": args.image_size, "episodes": args.episodes, "rows": rows,
                      "speedup_2_vs_1": round(speedup, 3)}))


if __name__ == "__main__":
    main()
