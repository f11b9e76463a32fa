"""The simulator loop of the soak's pairs with one part of the ROS graph put into it: the shared half of
`ros_path_in_sim.py` and `ros_timing_in_sim.py` (a factory wrapper and the evaluation they both run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vla_app.agents import AgentFactory

TASKS = ("pick_lift", "place_in", "push_to", "stack")


@dataclass(frozen=True)
class VariantFactory:
    """An `AgentFactory` whose agents `make(inner, settings, seed)` builds; everything else (policy, steering,
    what the simulator renders, the result rows) is `inner`'s. Picklable when `make` is a module function."""

    inner: AgentFactory
    settings: object  # a frozen dataclass: the variant's knobs
    make: Callable

    def __getattr__(self, name: str):  # policy_dir, steering, executor, backend, method, row_fields, ...
        if name in ("inner", "settings", "make"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, seed: int):
        return self.make(self.inner, self.settings, seed)


def common_args(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--episodes", type=int, default=25, help="per task (the soak's simulator loop ran 25)")
    ap.add_argument("--seed", type=int, default=20000, help="the soak's first seed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, required=True, help="write a `vla eval --json` file here")
    return ap


def run(args: argparse.Namespace, settings: object, make: Callable, extra: tuple[str, ...] = ()) -> None:
    """robomonkey n = m = 16 over the soak's pairs with the variant -> the JSON and a printed summary;
    `extra`: per-episode stats (summed per task) worth printing."""
    from verifiers.steering import SteeringConfig
    from vla_app.evaluate import EvalConfig, evaluate, write_json

    factory = VariantFactory(AgentFactory(args.policy, SteeringConfig(method="robomonkey")), settings, make)
    cfg = EvalConfig(policy=args.policy, tasks=TASKS, episodes=args.episodes, workers=args.workers, seed=args.seed)
    rows = evaluate(cfg, factory=factory)
    for r in rows:
        r["variant"] = {type(settings).__name__: asdict(settings)}
        print(f"{r['task']}: {r['successes']}/{r['episodes']} {({k: r[k] for k in extra if k in r})}")
    write_json(args.json, rows)
    total = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    print(f"all: {total[0]}/{total[1]} = {total[0] / total[1]:.0%}; wrote {args.json}")
