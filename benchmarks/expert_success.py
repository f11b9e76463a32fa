"""Scripted-expert success per task and arm over seeded `id` episodes, with Wilson 95% intervals.

    python benchmarks/expert_success.py [--episodes 50] [--workers 2] [--arms panda,kuka] [--quality expert]
                                        [--randomize]

Prints a table and, as the last stdout line, one JSON object
`{"results": [{"task", "arm", "variation", "method", "episodes", "successes", "success_rate", "ci95"}]}`.
Images are not rendered (experts use privileged state), so this runs in minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

from sim.env import EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.stats import wilson_interval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--arms", default="panda,kuka")
    ap.add_argument("--variation", default="id")
    ap.add_argument("--quality", default="expert")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--randomize", action="store_true", help="training-time randomisation (id only)")
    args = ap.parse_args()
    jobs = []
    for arm in args.arms.split(","):
        for task in TASKS:
            cfg = EnvConfig(task=task, arm=arm, variation=args.variation, depth=False, render_images=False,
                            randomize=args.randomize)
            jobs += [EpisodeJob(index=len(jobs), seed=args.seed + k, env=cfg) for k in range(args.episodes)]
    t0 = time.perf_counter()
    wins: dict[tuple[str, str], list[bool]] = defaultdict(list)
    failed_seeds: dict[tuple[str, str], list[int]] = defaultdict(list)
    for s in run_episodes(jobs, ExpertFactory(args.quality), workers=args.workers):
        wins[(s.arm, s.task)].append(s.success)
        if not s.success:
            failed_seeds[(s.arm, s.task)].append(s.seed)
    rows = []
    print(f"{'arm':<6} {'task':<10} {'success':>8} {'95% CI':>16} {'episodes':>8}  failed seeds")
    for (arm, task), v in sorted(wins.items()):
        lo, hi = wilson_interval(sum(v), len(v))
        rows.append({"task": task, "arm": arm, "variation": args.variation, "method": f"scripted_{args.quality}",
                     "episodes": len(v), "successes": sum(v), "success_rate": sum(v) / len(v),
                     "ci95": [round(lo, 4), round(hi, 4)]})
        print(f"{arm:<6} {task:<10} {sum(v) / len(v):>8.0%} {f'[{lo:.0%}, {hi:.0%}]':>16} {len(v):>8}  "
              f"{sorted(failed_seeds[(arm, task)])[:10]}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(json.dumps({"results": rows}))


if __name__ == "__main__":
    main()
