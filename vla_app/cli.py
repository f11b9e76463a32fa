"""The `vla` command. Subcommands import their heavy modules lazily so `vla --help` is instant."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    """'128' or '96x128' (HxW) -> (H, W)."""
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}")
    return parts[0], parts[1]


def _int_tuple(text: str) -> tuple[int, ...]:
    """'2,1,1' -> (2, 1, 1); PolicyConfig checks the values."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _weights(text: str) -> tuple[tuple[str, float], ...]:
    """'verifier=1,value=0.25' -> (("verifier", 1.0), ("value", 0.25)); the Selector checks the values."""
    try:
        pairs = [item.split("=", 1) for item in text.split(",")]
        return tuple((name.strip(), float(w)) for name, w in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected scorer=weight pairs (verifier=1,value=0.5), got {text!r}") from None


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _checkpoint(text: str) -> str:
    """A model folder: relative paths resolve from the working directory, else from the installed package's
    share folder (so the default `models/policy` works from any directory); `expert` stays itself."""
    from vla_runtime.paths import resolve_data_path

    return text if text == "expert" else str(resolve_data_path(text))


def _nonnegative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def cmd_sim_tasks(args: argparse.Namespace) -> int:
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


def cmd_sim_collect(args: argparse.Namespace) -> int:
    from sim.tasks import TASKS
    from vla_app.collect import CollectConfig, collect

    tasks = TASKS if args.task == "all" else tuple(args.task.split(","))
    cfg = CollectConfig(out=Path(args.out), tasks=tasks, variation=args.variation, quality=args.quality,
                        arm=args.arm, episodes=args.episodes, seed=args.seed, image_size=args.image_size,
                        wrist_camera=args.wrist, depth=args.depth, max_steps=args.max_steps)
    result = collect(cfg, workers=args.workers, progress=not args.no_progress)
    if not args.json:
        for task, rate in result["success_rate"].items():
            print(f"{task:<10} success {rate:.0%}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def cmd_sim_replay(args: argparse.Namespace) -> int:
    from vla_app.replay import replay_to_gif
    from vla_runtime.io import check_output_file

    check_output_file(args.gif, "--gif")
    out = replay_to_gif(args.dir, args.episode, args.gif, fps=args.fps)
    print(out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vla_app.demo import run_demo

    report = run_demo(Path(args.out), policy=args.policy, episodes_per_task=args.episodes_per_task,
                      workers=args.workers, seed=args.seed, samples=args.average, backend=args.backend,
                      overwrite=args.overwrite)
    print((Path(args.out) / "report.md").read_text())
    print(f"GIFs: {', '.join(report['gifs'])}")
    return 0


def cmd_train_policy(args: argparse.Namespace) -> int:
    from vla_runtime.policy.config import PolicyConfig
    from vla_runtime.policy.train import TrainConfig, train_policy

    command = "vla train policy " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["train", "policy"] else ""
    given = {"aux_object_input": args.aux_object_input, "aux_object_steps": args.aux_object_steps,
             "proprio_inputs": tuple(args.proprio_inputs.split(",")) if args.proprio_inputs else None,
             "vision_strides": args.vision_strides, "wrist_camera": args.wrist_camera,
             "wrist_image_size": args.wrist_image_size, "wrist_vision_strides": args.wrist_vision_strides,
             "random_shift": args.random_shift, "anchor_noise": args.anchor_noise}
    given = {k: v for k, v in given.items() if v is not None}  # the rest: PolicyConfig defaults
    # What --init may add to the parent's config (everything else comes from the parent checkpoint).
    overrides = {k: v for k, v in (("anchor", True if args.anchor else None), ("anchor_noise", args.anchor_noise))
                 if v is not None}
    if args.init is None:
        given.update(overrides)
    pcfg = PolicyConfig(image_size=args.image_size, aux_weight=args.aux_weight,
                        aux_object_weight=args.aux_object_weight, **given)
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       grounding_steps=args.grounding_steps,
                       ema_decay=args.ema, threads=args.threads, val_every=args.val_every, ckpt_every=args.ckpt_every)

    def card(trainer, last: dict) -> str:
        from vla_runtime.policy.card import policy_card

        return policy_card(trainer, last, command=command, data=args.data)

    result = train_policy(args.data, args.out, pcfg, tcfg, resume=args.resume, progress=not args.no_progress,
                          model_card_fn=card, init=args.init, init_overrides=overrides if args.init else None,
                          overwrite=args.overwrite)
    print(json.dumps(result))
    return 0


def _command_line(*words: str) -> str:
    """The `vla ...` command as typed, for model cards ("" when called from Python)."""
    n = len(words)
    return "vla " + " ".join(sys.argv[1:]) if tuple(sys.argv[1:1 + n]) == words else ""


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from verifiers.train_verifier import VerifierTrainConfig, train_verifier

    cfg = VerifierTrainConfig(steps=args.steps, batch_states=args.batch_states, lr=args.lr, alpha=args.alpha,
                              max_states=args.max_states, perturbations=args.perturbations,
                              policy_samples=args.policy_samples, gaussian=args.gaussian, hidden=args.hidden,
                              layers=args.layers, val_every=args.val_every, ckpt_every=args.ckpt_every,
                              seed=args.seed, threads=args.threads)
    result = train_verifier(args.policy, args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress,
                            command=_command_line("train", "verifier"), feature_cache=args.feature_cache,
                            overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in result.items() if k != "train_config"}))
    return 0


def cmd_train_value(args: argparse.Namespace) -> int:
    from verifiers.train_value import ValueTrainConfig, train_value

    cfg = ValueTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, gamma=args.gamma, k=args.k,
                           expectile=args.expectile, cql_alpha=args.cql_alpha, reward=args.reward, head=args.head,
                           bins=args.bins,
                           hidden=args.hidden, layers=args.layers, val_every=args.val_every,
                           ckpt_every=args.ckpt_every, seed=args.seed, threads=args.threads)
    result = train_value(args.policy, args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress,
                         command=_command_line("train", "value"), feature_cache=args.feature_cache,
                         overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in result.items() if k != "train_config"}))
    return 0


def _agent_factory(args: argparse.Namespace, executor):
    """`--steer` / `--average` -> the agents' factory; the expert needs none."""
    from verifiers.steering import SteeringConfig
    from vla_app.agents import AgentFactory, unsteered

    if args.policy == "expert":
        return None
    if args.steer == "none":
        return AgentFactory(args.policy, unsteered(args.average), executor, backend=args.backend)
    if args.average != 1:
        raise ValueError("--average executes the mean of N samples, an unsteered policy; steering draws --n")
    steering = SteeringConfig(method=args.steer, n=args.n, m=args.m, verifier=args.verifier, value=args.value,
                              selection=args.selection, temperature=args.temperature, safety=args.safety,
                              weights=args.weights, keep_samples=args.keep_samples)
    return AgentFactory(args.policy, steering, executor, backend=args.backend)


def _names(text: str, known, what: str, allow_all: bool = False) -> tuple[str, ...]:
    """'a,b' (or 'all') -> names, each checked against the registry `known` before any work starts."""
    if allow_all and text == "all":
        return tuple(known)
    names = tuple(x.strip() for x in text.split(","))
    unknown = [x for x in names if x not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; "
                         f"known: {', '.join(known)}{' or all' if allow_all else ''}")
    return names


def cmd_eval(args: argparse.Namespace) -> int:
    """Every argument and output path is checked before the first episode, and the JSON is rewritten after
    each variation, so a late failure loses at most the variation it happened in."""
    from sim.arms import ARMS
    from sim.tasks import TASKS
    from sim.variations import VARIATIONS
    from vla_app.evaluate import EvalConfig, evaluate, format_table, write_json
    from vla_runtime.execution import ExecutorConfig
    from vla_runtime.io import check_output_file

    tasks = _names(args.task, TASKS, "task", allow_all=True)
    variations = _names(args.variation, VARIATIONS, "variation")
    _names(args.arm, ARMS, "arm")
    if args.json:
        check_output_file(args.json, "--json")
    for folder, flag in ((args.record, "--record"), (args.gif_dir if args.gifs else None, "--gif-dir")):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise FileExistsError(f"{flag} {folder} is a file; give a folder")
    executor = ExecutorConfig(replan_every=args.replan, ensemble=args.ensemble, ensemble_alpha=args.alpha)
    factory = _agent_factory(args, executor)
    configs = [EvalConfig(policy=args.policy, tasks=tasks, variation=variation, episodes=args.episodes,
                          workers=args.workers, seed=args.seed, arm=args.arm, gifs=args.gifs, gif_dir=args.gif_dir,
                          record=args.record if args.record is None else f"{args.record}/{variation}",
                          samples=args.average, backend=args.backend)
               for variation in variations]
    rows: list[dict] = []
    for i, cfg in enumerate(configs):
        part = evaluate(cfg, executor=executor, progress=not args.no_progress, factory=factory)
        print(format_table(part), flush=True)
        rows += part
        if args.json:
            write_json(args.json, rows, complete=i == len(configs) - 1)
    return 0


def _backend_arg(p: argparse.ArgumentParser) -> None:
    from vla_runtime.backends import BACKENDS

    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch (eager), onnx (onnxruntime; exports on first use into runs/onnx), tensorrt")


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from verifiers.steering import load_scorer
    from vla_runtime.export import export_onnx, is_export, read_manifest
    from vla_runtime.io import check_output_dir
    from vla_runtime.policy.model import VLAPolicy

    check_output_dir(args.out, is_export, "ONNX export", inputs=[args.policy, args.verifier, args.value],
                     overwrite=args.overwrite)
    scorers = {}
    if args.verifier or args.value:
        policy = VLAPolicy.from_pretrained(args.policy)
        scorers = {name: (load_scorer(name, folder, policy), folder)
                   for name, folder in (("verifier", args.verifier), ("value", args.value)) if folder}
    out = export_onnx(args.policy, args.out, scorers, overwrite=args.overwrite)
    manifest = read_manifest(out)
    print(json.dumps({"out": str(out), "opset": manifest["opset"], "graphs": sorted(manifest["graphs"])}))
    return 0


def cmd_export_trt(args: argparse.Namespace) -> int:
    from vla_runtime.backends.tensorrt import build_engines, trt_available

    ok, why = trt_available()
    if not ok:
        raise ValueError(f"cannot build TensorRT engines here: {why}")
    engines = build_engines(args.onnx, args.cache, fp16=not args.fp32, max_batch=args.max_batch)
    print(json.dumps({name: str(path) for name, path in engines.items()}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vla_app.bench import BenchConfig, format_table, run_bench, write_plot
    from vla_runtime.io import check_output_file

    for path, flag in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_output_file(path, flag)  # before minutes of timing, not after
    cfg = BenchConfig(backends=tuple(args.backend.split(",")), ns=tuple(int(n) for n in args.n.split(",")),
                      repeats=args.repeats, threads=args.threads, policy=args.policy, verifier=args.verifier,
                      value=args.value)
    result = run_bench(cfg)
    print(format_table(result))
    if args.json:
        from vla_runtime.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    if args.plot:
        write_plot(result, Path(args.plot))
    return 0


def _scorer_io_args(p: argparse.ArgumentParser, data_help: str) -> None:
    """What both scorer trainers (`train verifier`, `train value`) read and write."""
    p.add_argument("--policy", type=_checkpoint, default="models/policy",
                   help="the frozen policy whose token it reads")
    p.add_argument("--data", nargs="+", required=True, help=data_help)
    p.add_argument("--out", required=True)
    _overwrite_arg(p, "checkpoint of the same kind")


def _scorer_run_args(p: argparse.ArgumentParser, val_every: int, ckpt_every: int) -> None:
    """Both scorer trainers' run habits: seed, threads, validation/checkpoint cadence, feature cache, resume."""
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--val-every", type=_positive, default=val_every)
    p.add_argument("--ckpt-every", type=_positive, default=ckpt_every)
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="cache the frozen policy's frame encodings here (default: beside --out)")
    p.add_argument("--resume", action="store_true", help="continue from the training state beside --out")
    p.add_argument("--no-progress", action="store_true")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vla_steering")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _overwrite_arg(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing --out folder that is not a previous {kind} (never one holding an "
                        f"input or the working directory); without it only a previous {kind} is replaced")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla", description="VLA policy + test-time steering toolkit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="the PyBullet simulator").add_subparsers(dest="sim_command", required=True)
    p = sim.add_parser("tasks", help="list tasks, variations and arms")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_sim_tasks)

    p = sim.add_parser("collect", help="collect scripted-expert episodes into a dataset folder (resumable)")
    p.add_argument("--task", default="all", help="task name, comma list, or 'all'")
    p.add_argument("--variation", default="id")
    p.add_argument("--quality", default="expert", choices=["expert", "noisy", "dart"])
    p.add_argument("--arm", default="panda")
    p.add_argument("--episodes", type=_positive, default=100, help="total episodes in the folder (round-robin tasks)")
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--image-size", type=_size, default=(128, 128), help="N or HxW")
    p.add_argument("--wrist", action="store_true", help="also record the wrist camera")
    p.add_argument("--depth", action="store_true", help="also record static-camera depth (metres)")
    p.add_argument("--max-steps", type=_positive, default=80)
    p.add_argument("--json", action="store_true", help="only the JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sim_collect)

    p = sim.add_parser("replay", help="render a stored episode as a GIF")
    p.add_argument("dir")
    p.add_argument("--episode", type=int, default=0, help="episode position in the dataset (0-based)")
    p.add_argument("--gif", required=True, help="the GIF file to write")
    p.add_argument("--fps", type=_positive_float, default=10.0)
    p.set_defaults(func=cmd_sim_replay)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="train_command", required=True)
    p = train.add_parser("policy", help="behaviour-clone the diffusion VLA policy on dataset folders")
    p.add_argument("--data", nargs="+", required=True, help="dataset folder(s) from `vla sim collect`")
    p.add_argument("--out", required=True, help="checkpoint folder (training state goes beside it)")
    _overwrite_arg(p, "policy checkpoint")
    p.add_argument("--steps", type=_positive, default=20_000)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights (0 = off)")
    p.add_argument("--image-size", type=_size, default=(64, 64))
    p.add_argument("--vision-strides", type=_int_tuple, default=None, metavar="S,S,S",
                   help="stride (1 or 2) of each FiLM block after the stride-2 stem (default 1,1,1); "
                        "use 2,1,1 at 128x128 to keep 32x32 keypoint maps")
    p.add_argument("--wrist-camera", default=None, metavar="NAME",
                   help="also read this camera (e.g. wrist; collect with --wrist) with a second CNN")
    p.add_argument("--wrist-image-size", type=_size, default=None, help="N or HxW (default 64)")
    p.add_argument("--wrist-vision-strides", type=_int_tuple, default=None, metavar="S,S,S",
                   help="the wrist CNN's block strides (default 2,1,1)")
    p.add_argument("--random-shift", type=int, default=None,
                   help="pixels of random-shift augmentation (default 4; scale it with the image size)")
    p.add_argument("--aux-weight", type=float, default=1.0, help="weight of the direct chunk-regression loss")
    p.add_argument("--aux-object-weight", type=float, default=1.0,
                   help="weight of the target/goal xy auxiliary loss (privileged labels, training only)")
    p.add_argument("--aux-object-input", default=None, choices=["cond", "vision"],
                   help="features the object head reads (default vision: grounding cannot lean on proprio)")
    p.add_argument("--aux-object-steps", type=int, default=None,
                   help="label the object xy on the first N frames of an episode (default 2: before the arm moves)")
    p.add_argument("--grounding-steps", type=int, default=0,
                   help="first train only the object-localisation loss for this many steps")
    p.add_argument("--proprio-inputs", default=None, metavar="NAMES",
                   help="comma-separated proprio entries the policy sees (default: all)")
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--val-every", type=_positive, default=500)
    p.add_argument("--ckpt-every", type=_positive, default=1000)
    p.add_argument("--resume", action="store_true", help="continue from the training state beside --out")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="fine-tune this policy checkpoint (its config and normalisation; fresh optimizer)")
    p.add_argument("--anchor", action="store_true",
                   help="condition every decision on the object head's first-frame target/goal estimate "
                        "(with --init: add it to the parent policy)")
    p.add_argument("--anchor-noise", type=float, default=None, metavar="M",
                   help="metres of noise on the training anchors (default 0.01)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_policy)

    p = train.add_parser("verifier", help="the action verifier on synthetic preferences (RoboMonkey)")
    _scorer_io_args(p, "dataset folder(s) with expert or dart episodes")
    p.add_argument("--steps", type=_positive, default=8000)
    p.add_argument("--batch-states", type=_positive, default=64, help="states per step (all their candidates)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.1, help="preference-level term weight (0 = Bradley-Terry)")
    p.add_argument("--max-states", type=_positive, default=20_000, help="demonstration states given candidates")
    p.add_argument("--perturbations", type=_positive, default=16, help="expert perturbations per state")
    p.add_argument("--policy-samples", type=_positive, default=8, help="frozen-policy samples per state")
    p.add_argument("--gaussian", type=int, default=8, help="GaussianVote draws around the samples per state")
    p.add_argument("--hidden", type=_positive, default=256)
    p.add_argument("--layers", type=_positive, default=2)
    _scorer_run_args(p, val_every=500, ckpt_every=1000)
    p.set_defaults(func=cmd_train_verifier)

    p = train.add_parser("value", help="the V-GPS value function Q(s, chunk) by IQL on mixed-quality episodes")
    _scorer_io_args(p, "dataset folders: expert, dart/noisy and policy rollouts (`vla eval --record`)")
    p.add_argument("--steps", type=_positive, default=20_000)
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.98, help="discount per environment step")
    p.add_argument("--k", type=_positive, default=4, help="environment steps per transition (the replan interval)")
    p.add_argument("--expectile", type=float, default=0.7)
    p.add_argument("--cql-alpha", type=float, default=0.0,
                   help="weight of Cal-QL's calibrated conservative term on perturbed chunks (0 = plain IQL)")
    p.add_argument("--reward", default="vgps", choices=["vgps", "sparse"],
                   help="vgps: 0 on a success's final step, -1 elsewhere; sparse: 1 on a success's final step")
    p.add_argument("--head", default="hlgauss", choices=["hlgauss", "regression"])
    p.add_argument("--bins", type=_positive, default=51, help="HL-Gauss value bins")
    p.add_argument("--hidden", type=_positive, default=256)
    p.add_argument("--layers", type=_positive, default=2)
    _scorer_run_args(p, val_every=1000, ckpt_every=2000)
    p.set_defaults(func=cmd_train_value)

    p = sub.add_parser("eval", help="closed-loop success of a policy (or `expert`) in the simulator")
    p.add_argument("--policy", type=_checkpoint, required=True, help="checkpoint folder, or `expert`")
    p.add_argument("--task", default="all")
    p.add_argument("--variation", default="id", help="one or a comma list of variations")
    p.add_argument("--episodes", type=_positive, default=50, help="per task")
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--seed", type=_nonnegative, default=10_000)
    p.add_argument("--arm", default="panda")
    p.add_argument("--replan", type=_positive, default=4, help="replan every k steps")
    p.add_argument("--ensemble", action="store_true", help="CogACT adaptive action ensemble")
    p.add_argument("--alpha", type=float, default=0.1, help="ensemble temperature")
    p.add_argument("--average", type=_positive, default=1, metavar="N",
                   help="draw N chunks per plan (one batched run) and execute their mean, gripper by majority")
    p.add_argument("--steer", default="none", choices=["none", "robomonkey", "vgps", "both"],
                   help="test-time steering: robomonkey (GaussianVote + verifier), vgps (value re-ranks the "
                        "policy's samples), both (z-scored sum)")
    p.add_argument("--n", type=_positive, default=16, help="steering: policy samples per decision")
    p.add_argument("--m", type=_positive, default=16, help="steering: candidates scored (vgps: <= n)")
    p.add_argument("--verifier", type=_checkpoint, default="models/verifier", help="action verifier checkpoint")
    p.add_argument("--value", type=_checkpoint, default="models/value", help="value function checkpoint")
    p.add_argument("--selection", default="argmax", choices=["argmax", "softmax"])
    p.add_argument("--temperature", type=float, default=1.0, help="softmax selection temperature")
    p.add_argument("--weights", type=_weights, default=(), metavar="S=W,...",
                   help="`both`: per-scorer weights of the z-score sum (default 1 each), e.g. verifier=1,value=0.25")
    p.add_argument("--keep-samples", action="store_true",
                   help="robomonkey/both: score the n policy samples too, beside the m Gaussian draws")
    p.add_argument("--safety", action="store_true", help="add the depth-based safety scorer (renders depth)")
    _backend_arg(p)
    p.add_argument("--json", help="write {'results': [...]} here")
    p.add_argument("--gifs", type=int, default=0, help="GIFs of the first N episodes per task")
    p.add_argument("--gif-dir", default="runs/eval_gifs")
    p.add_argument("--record", help="save evaluated episodes (dataset format) under DIR/<variation>")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="run every task and write a report + GIFs")
    p.add_argument("--out", default="runs/demo")
    _overwrite_arg(p, "demo folder")
    p.add_argument("--policy", type=_checkpoint, default="models/policy", help="checkpoint folder, or `expert`")
    p.add_argument("--episodes-per-task", type=_positive, default=3)
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--seed", type=_nonnegative, default=10_000)
    p.add_argument("--average", type=_positive, default=16, metavar="N",
                   help="execute the mean of N sampled chunks per plan (default 16; 1 = one sample)")
    _backend_arg(p)
    p.set_defaults(func=cmd_demo)

    export = sub.add_parser("export", help="ONNX graphs and TensorRT engines").add_subparsers(
        dest="export_command", required=True)
    p = export.add_parser("onnx", help="the policy's encoder, denoiser and unrolled sampler (+ scorer heads)")
    p.add_argument("--policy", type=_checkpoint, default="models/policy")
    p.add_argument("--verifier", type=_checkpoint, default=None, help="also export this action verifier's head")
    p.add_argument("--value", type=_checkpoint, default=None, help="also export this value function's head")
    p.add_argument("--out", required=True)
    _overwrite_arg(p, "ONNX export")
    p.set_defaults(func=cmd_export_onnx)
    p = export.add_parser("trt", help="TensorRT engines from an ONNX export (needs a CUDA GPU and tensorrt)")
    p.add_argument("--onnx", required=True, help="a `vla export onnx` folder")
    p.add_argument("--cache", default="runs/tensorrt", help="engine cache folder")
    p.add_argument("--fp32", action="store_true", help="build fp32 engines (default fp16)")
    p.add_argument("--max-batch", type=_positive, default=64, help="largest N / M the profiles cover")
    p.set_defaults(func=cmd_export_trt)

    p = sub.add_parser("bench", help="latency per backend, n and stage (median, p90, ratios, GFLOP/s) + plot")
    p.add_argument("--backend", default="torch,onnx", help="comma list of backends")
    p.add_argument("--n", default="1,4,16,64", help="comma list of sample counts (n = m)")
    p.add_argument("--repeats", type=_positive, default=30)
    p.add_argument("--threads", type=_positive, default=2)
    p.add_argument("--policy", type=_checkpoint, default="models/policy")
    p.add_argument("--verifier", type=_checkpoint, default="models/verifier")
    p.add_argument("--value", type=_checkpoint, default="models/value")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--plot", default=None, help="write a PNG here")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, IndexError) as exc:
        print(f"vla: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
