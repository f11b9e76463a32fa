"""`vla sim tasks | collect | replay`: the simulator's registries, expert data collection, GIF replay."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vla_app.cli import args as a


def configure(p: argparse.ArgumentParser) -> None:
    from sim.arms import ARMS
    from sim.experts import QUALITIES
    from sim.tasks import TASKS
    from sim.variations import VARIATIONS
    from vla_app.collect import CollectConfig

    sub = p.add_subparsers(dest="sim_command", required=True)
    q = sub.add_parser("tasks", help="list tasks, variations and arms", formatter_class=a.Formatter)
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=tasks)

    q = sub.add_parser("collect", help="collect scripted-expert episodes into a dataset folder (resumable)",
                       formatter_class=a.Formatter)
    q.add_argument("--task", default="all", help=a.registry_help(TASKS, "task", allow_all=True))
    q.add_argument("--variation", default=a.default_of(CollectConfig, "variation"), choices=list(VARIATIONS))
    q.add_argument("--quality", default=a.default_of(CollectConfig, "quality"), choices=list(QUALITIES))
    q.add_argument("--arm", default=",".join(a.default_of(CollectConfig, "arms")),
                   help=f"comma list of arms ({', '.join(ARMS)}); episode k uses arm (k // n_tasks) %% n_arms, so "
                        f"every task gets every arm evenly (keep kuka for the unseen `embodiment` split)")
    q.add_argument("--randomize", action="store_true",
                   help="training-time domain randomisation: lighting, table and object shades, camera pose, "
                        "0-2 random meshes (variation id only; docs/simulator.md lists the ranges)")
    q.add_argument("--episodes", type=a.positive, default=a.default_of(CollectConfig, "episodes"),
                   help="total episodes in the folder (round-robin tasks, then arms)")
    q.add_argument("--workers", type=a.positive, default=2)
    q.add_argument("--seed", type=a.nonnegative, default=a.default_of(CollectConfig, "seed"))
    q.add_argument("--out", required=True)
    q.add_argument("--image-size", type=a.size, default=a.default_of(CollectConfig, "image_size"), help="N or HxW")
    q.add_argument("--wrist", action="store_true", help="also record the wrist camera")
    q.add_argument("--depth", action="store_true", help="also record static-camera depth (metres)")
    q.add_argument("--max-steps", type=a.positive, default=a.default_of(CollectConfig, "max_steps"))
    q.add_argument("--json", action="store_true", help="only the JSON summary on stdout")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=collect)

    from vla_app.relabel import RelabelConfig

    q = sub.add_parser("relabel", formatter_class=a.Formatter,
                       help="roll the policy out on training seeds and store every decision's candidates with the "
                            "expert's chunk from that state (DAgger relabelling for `vla train verifier --relabelled`)")
    q.add_argument("--policy", type=a.checkpoint, required=True)
    q.add_argument("--verifier", type=a.checkpoint, default=a.default_of(RelabelConfig, "verifier"),
                   help="picks the executed candidate in steered episodes")
    q.add_argument("--task", default="all", help=a.registry_help(TASKS, "task", allow_all=True))
    q.add_argument("--episodes", type=a.positive, default=a.default_of(RelabelConfig, "episodes"),
                   help="total episodes in the folder (round-robin tasks; resumable)")
    q.add_argument("--seed", type=a.nonnegative, default=a.default_of(RelabelConfig, "seed"),
                   help="episode k uses seed + k; must avoid the evaluation and development seeds 10000..39999")
    q.add_argument("--workers", type=a.positive, default=a.default_of(RelabelConfig, "workers"))
    q.add_argument("--n", type=a.positive, default=a.default_of(RelabelConfig, "n"), help="policy samples")
    q.add_argument("--m", type=a.positive, default=a.default_of(RelabelConfig, "m"), help="Gaussian draws")
    q.add_argument("--steered-share", type=float, default=a.default_of(RelabelConfig, "steered_share"),
                   help="share of episodes executing the verifier's pick (the rest execute the samples' mean)")
    q.add_argument("--out", required=True)
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=relabel)

    q = sub.add_parser("replay", help="render a stored episode as a GIF", formatter_class=a.Formatter)
    q.add_argument("dir")
    q.add_argument("--episode", type=int, default=0, help="episode position in the dataset (0-based)")
    q.add_argument("--gif", required=True, help="the GIF file to write")
    q.add_argument("--fps", type=a.positive_float, default=10.0)
    q.set_defaults(func=replay)


def tasks(args: argparse.Namespace) -> int:
    from sim.arms import ARMS
    from sim.tasks import TASKS
    from sim.variations import VARIATIONS

    if args.json:
        print(json.dumps({"tasks": list(TASKS), "variations": list(VARIATIONS), "arms": list(ARMS)}))
        return 0
    print("tasks:")
    for t in TASKS:
        print(f"  {t}")
    print("variations:")
    for v in VARIATIONS.values():
        print(f"  {v.name:<12} {v.description}")
    print("arms:", ", ".join(ARMS))
    return 0


def collect(args: argparse.Namespace) -> int:
    from sim.arms import ARMS
    from sim.tasks import TASKS
    from vla_app.collect import CollectConfig, collect

    cfg = CollectConfig(out=Path(args.out), tasks=a.names(args.task, TASKS, "task", allow_all=True),
                        variation=args.variation, quality=args.quality, arms=a.names(args.arm, ARMS, "arm"),
                        randomize=args.randomize, episodes=args.episodes,
                        seed=args.seed, image_size=args.image_size, wrist_camera=args.wrist, depth=args.depth,
                        max_steps=args.max_steps)
    result = collect(cfg, workers=args.workers, progress=not args.no_progress)
    if not args.json:
        for task, rate in result["success_rate"].items():
            print(f"{task:<10} success {rate:.0%}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def replay(args: argparse.Namespace) -> int:
    from vla_app.replay import replay_to_gif
    from vla_runtime.io import check_output_file

    check_output_file(args.gif, "--gif")
    print(replay_to_gif(args.dir, args.episode, args.gif, fps=args.fps))
    return 0


def relabel(args: argparse.Namespace) -> int:
    from sim.tasks import TASKS
    from vla_app.relabel import RelabelConfig, relabel

    cfg = RelabelConfig(policy=args.policy, out=args.out, verifier=args.verifier, episodes=args.episodes,
                        seed=args.seed, workers=args.workers, n=args.n, m=args.m, steered_share=args.steered_share,
                        tasks=a.names(args.task, TASKS, "task", allow_all=True))
    print(json.dumps(relabel(cfg, progress=not args.no_progress)))
    return 0
