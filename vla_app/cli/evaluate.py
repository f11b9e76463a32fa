"""`vla eval` and `vla demo`: closed-loop success in the simulator, of a policy (steered or not) or the expert."""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path

from vla_app.cli import args as a


def configure_eval(p: argparse.ArgumentParser) -> None:
    from sim.arms import ARMS
    from sim.tasks import TASKS
    from sim.variations import VARIATIONS
    from verifiers.steering import METHODS, SteeringConfig
    from vla_app.evaluate import EXECUTORS, EvalConfig
    from vla_runtime.execution import ExecutorConfig

    p.add_argument("--policy", "--url", type=a.checkpoint, required=True,
                   help="checkpoint folder, `expert`, or (--backend remote) a `vla serve` URL ws://HOST:PORT")
    p.add_argument("--task", default="all", help=a.registry_help(TASKS, "task", allow_all=True))
    p.add_argument("--variation", default=a.default_of(EvalConfig, "variation"),
                   help=a.registry_help(list(VARIATIONS), "variation"))
    p.add_argument("--episodes", type=a.positive, default=a.default_of(EvalConfig, "episodes"), help="per task")
    p.add_argument("--workers", type=a.positive, default=a.default_of(EvalConfig, "workers"))
    p.add_argument("--seed", type=a.nonnegative, default=a.default_of(EvalConfig, "seed"),
                   help="episode k of every task uses seed + k (paired comparisons)")
    p.add_argument("--arm", default=a.default_of(EvalConfig, "arm"), choices=list(ARMS))
    p.add_argument("--replan", type=a.positive, default=a.default_of(ExecutorConfig, "replan_every"),
                   help="replan every k steps")
    p.add_argument("--decision-ms", type=a.nonnegative_float, default=0.0, metavar="MS",
                   help="simulated decision latency: each chunk takes over ceil(MS / control period) steps after its "
                        "observation, the old chunk running meanwhile (0: synchronous)")
    p.add_argument("--plan-ahead", action="store_true",
                   help="start each decision --decision-ms before the replan point, so the new chunk takes over on "
                        "time instead of stretching the old one")
    p.add_argument("--blend", type=a.nonnegative, default=0, metavar="K",
                   help="continuity: spread the motion a new chunk's skipped actions planned, less what the old "
                        "chunk's did meanwhile, over its first K steps (0: skip them)")
    p.add_argument("--ensemble", action="store_true", help="CogACT adaptive action ensemble")
    p.add_argument("--alpha", type=float, default=a.default_of(ExecutorConfig, "ensemble_alpha"),
                   help="ensemble temperature")
    p.add_argument("--average", type=a.positive, default=1, metavar="N",
                   help="draw N chunks per plan (one batched run) and execute their mean, gripper by majority")
    p.add_argument("--steer", default="none", choices=[m for m in METHODS if m != "mean"],
                   help="test-time steering: robomonkey (GaussianVote + verifier), vgps (value re-ranks the "
                        "policy's samples), both (z-scored sum); the mean of N samples is --average N")
    p.add_argument("--n", type=a.positive, default=a.default_of(SteeringConfig, "n"),
                   help="steering: policy samples per decision")
    p.add_argument("--m", type=a.positive, default=a.default_of(SteeringConfig, "m"),
                   help="steering: candidates scored (vgps: <= n)")
    p.add_argument("--verifier", type=a.checkpoint, default=a.default_of(SteeringConfig, "verifier"),
                   help="action verifier checkpoint")
    p.add_argument("--value", type=a.checkpoint, default=a.default_of(SteeringConfig, "value"),
                   help="value function checkpoint")
    p.add_argument("--selection", default=a.default_of(SteeringConfig, "selection"), choices=["argmax", "softmax"])
    p.add_argument("--temperature", type=float, default=a.default_of(SteeringConfig, "temperature"),
                   help="softmax selection temperature")
    p.add_argument("--weights", type=a.weights, default=(), metavar="S=W,...",
                   help="`both`: per-scorer weights of the z-score sum (1 each when not given), "
                        "e.g. verifier=1,value=0.25")
    p.add_argument("--keep-samples", action="store_true",
                   help="robomonkey/both: score the n policy samples too, beside the m Gaussian draws")
    p.add_argument("--safety", action="store_true", help="add the depth-based safety scorer (renders depth)")
    p.add_argument("--margin", type=float, default=a.default_of(SteeringConfig, "margin"),
                   help="argmax keeps the samples' mean (candidate 0) unless the best candidate's score beats "
                        "it by more than this")
    p.add_argument("--rephrasings", type=a.nonnegative, default=a.default_of(SteeringConfig, "rephrasings"),
                   metavar="K", help="split the n samples over the instruction and K rephrasings of it from the "
                                     "training templates (more diverse candidates)")
    p.add_argument("--steps", type=a.positive, default=None, metavar="K",
                   help="DDIM steps of the policy's samples (default: the policy's own inference_steps): fewer "
                        "make them cheaper and worse")
    p.add_argument("--oracle", action="store_true",
                   help="score --steer's candidates by NRMSE to the scripted expert's chunk from the privileged "
                        "state instead of the learned scorers: what a perfect expert-predicting verifier would pick "
                        "(robomonkey: Gaussian draws, + the samples with --keep-samples; vgps: the samples)")
    a.backend_arg(p)
    p.add_argument("--json", help="write {'results': [...], 'complete': bool} here, after each variation")
    p.add_argument("--store", metavar="FILE.jsonl",
                   help="append every finished episode with its provenance (JSON lines); a re-run with the same "
                        "arguments skips the episodes already there (resume). `vla report` / `vla regress` read it")
    p.add_argument("--executor", default=a.default_of(EvalConfig, "executor"), choices=list(EXECUTORS),
                   help="local: worker processes; ray: Ray tasks for the simulators, one batched inference actor "
                        "for every decision")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="ray: join this cluster (default: start a local one with --workers CPUs)")
    p.add_argument("--max-batch", type=a.positive, default=a.default_of(EvalConfig, "max_batch"),
                   help="ray: decisions the inference actor batches at most")
    p.add_argument("--max-wait-ms", type=a.nonnegative_float, default=a.default_of(EvalConfig, "max_wait_ms"),
                   help="ray: how long a decision waits for others to fill its batch")
    p.add_argument("--gifs", type=int, default=a.default_of(EvalConfig, "gifs"),
                   help="GIFs of the first N episodes per task")
    p.add_argument("--gif-dir", default="runs/eval_gifs")
    p.add_argument("--record", help="save evaluated episodes (dataset format) under DIR/<variation>")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=evaluate)


def _agent_factory(args: argparse.Namespace, executor):
    """`--steer` / `--average` -> the agents' factory; the expert needs none."""
    from verifiers.steering import SteeringConfig
    from vla_app.agents import AgentFactory, unsteered

    if args.policy == "expert":
        return None
    if args.steer == "none":
        if args.rephrasings:
            raise ValueError("--rephrasings splits a steering method's samples: give --steer")
        if args.oracle:
            raise ValueError("--oracle picks among a steering method's candidates: give --steer robomonkey or vgps")
        return AgentFactory(args.policy, unsteered(args.average, args.steps), executor, backend=args.backend,
                            decision_ms=args.decision_ms)
    if args.average != 1:
        raise ValueError("--average executes the mean of N samples, an unsteered policy; steering draws --n")
    steering = SteeringConfig(method=args.steer, n=args.n, m=args.m, verifier=args.verifier, value=args.value,
                              selection=args.selection, temperature=args.temperature, safety=args.safety,
                              weights=args.weights, keep_samples=args.keep_samples, rephrasings=args.rephrasings,
                              margin=args.margin, steps=args.steps)
    return AgentFactory(args.policy, steering, executor, backend=args.backend, oracle=args.oracle,
                        decision_ms=args.decision_ms)


def _lead_steps(args: argparse.Namespace) -> int:
    """--plan-ahead: lead by the steps a decision spans at the policy's control rate."""
    if not args.plan_ahead:
        return 0
    from vla_app.agents import read_policy_config

    hz = read_policy_config(args.policy).action_spec.control_hz
    return math.ceil(args.decision_ms * hz / 1000.0 - 1e-9)


def evaluate(args: argparse.Namespace) -> int:
    """Every argument and output path is checked before the first episode, and the JSON is rewritten after
    each variation, so a late failure loses at most the variation it happened in."""
    from sim.arms import ARMS
    from sim.tasks import TASKS
    from sim.variations import VARIATIONS
    from vla_app.evaluate import EvalConfig, evaluate, write_json
    from vla_app.report import task_table
    from vla_runtime.execution import ExecutorConfig
    from vla_runtime.io import check_output_file

    tasks = a.names(args.task, TASKS, "task", allow_all=True)
    variations = a.names(args.variation, VARIATIONS, "variation")
    a.names(args.arm, ARMS, "arm")
    if args.json:
        check_output_file(args.json, "--json")
    if args.store and Path(args.store).is_dir():
        raise IsADirectoryError(f"--store {args.store} is a folder; give a .jsonl file (appended to, never replaced)")
    for folder, flag in ((args.record, "--record"), (args.gif_dir if args.gifs else None, "--gif-dir")):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise FileExistsError(f"{flag} {folder} is a file; give a folder")
    if args.policy == "expert" and (args.decision_ms or args.plan_ahead or args.blend):
        raise ValueError("--decision-ms, --plan-ahead and --blend shape a policy's chunk execution, not the expert's")
    executor = ExecutorConfig(replan_every=args.replan, ensemble=args.ensemble, ensemble_alpha=args.alpha,
                              lead_steps=_lead_steps(args), blend_steps=args.blend)
    factory = _agent_factory(args, executor)
    configs = [EvalConfig(policy=args.policy, tasks=tasks, variation=variation, episodes=args.episodes,
                          workers=args.workers, seed=args.seed, arm=args.arm, gifs=args.gifs, gif_dir=args.gif_dir,
                          record=args.record if args.record is None else f"{args.record}/{variation}",
                          samples=args.average, backend=args.backend, store=args.store, executor=args.executor,
                          ray_address=args.ray_address, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
               for variation in variations]
    rows: list[dict] = []
    for i, cfg in enumerate(configs):
        part = evaluate(cfg, executor=executor, progress=not args.no_progress, factory=factory)
        print(task_table(part), flush=True)
        rows += part
        if args.json:
            write_json(args.json, rows, complete=i == len(configs) - 1)
    return 0


def configure_demo(p: argparse.ArgumentParser) -> None:
    from verifiers.steering import SteeringConfig
    from vla_app.demo import run_demo

    default = {k: v.default for k, v in inspect.signature(run_demo).parameters.items()}
    p.add_argument("--out", default="runs/demo")
    a.overwrite_arg(p, "demo folder")
    p.add_argument("--policy", type=a.checkpoint, default=default["policy"], help="checkpoint folder, or `expert`")
    p.add_argument("--episodes-per-task", type=a.positive, default=default["episodes_per_task"])
    p.add_argument("--workers", type=a.positive, default=default["workers"])
    p.add_argument("--seed", type=a.nonnegative, default=default["seed"])
    p.add_argument("--average", type=a.positive, default=default["samples"], metavar="N",
                   help="unsteered side: execute the mean of N sampled chunks per plan (1 = one sample)")
    p.add_argument("--steer", default="robomonkey", choices=["robomonkey", "none"],
                   help="steered side, on the same seeds (none: the unsteered policy only; the expert is never "
                        "steered)")
    p.add_argument("--verifier", type=a.checkpoint, default=a.default_of(SteeringConfig, "verifier"))
    p.add_argument("--n", type=a.positive, default=a.default_of(SteeringConfig, "n"), help="policy samples")
    p.add_argument("--m", type=a.positive, default=a.default_of(SteeringConfig, "m"), help="Gaussian draws")
    p.add_argument("--keep-samples", action="store_true", help="score the n policy samples too")
    a.backend_arg(p)
    p.set_defaults(func=demo)


def demo(args: argparse.Namespace) -> int:
    from verifiers.steering import SteeringConfig
    from vla_app.demo import run_demo

    steering = None
    if args.steer != "none" and args.policy != "expert":
        steering = SteeringConfig(method=args.steer, n=args.n, m=args.m, verifier=args.verifier,
                                  keep_samples=args.keep_samples)
    report = run_demo(Path(args.out), policy=args.policy, episodes_per_task=args.episodes_per_task,
                      workers=args.workers, seed=args.seed, samples=args.average, backend=args.backend,
                      overwrite=args.overwrite, steering=steering)
    print((Path(args.out) / "report.md").read_text())
    print(f"GIFs: {', '.join(report['gifs'])}")
    return 0
