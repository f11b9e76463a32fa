"""`vla train policy | verifier | value`: the policy and the two learned scorers, on one training harness."""

from __future__ import annotations

import argparse
import json
import sys

from vla_app.cli import args as a


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="train_command", required=True)
    _policy(sub.add_parser("policy", help="behaviour-clone the diffusion VLA policy on dataset folders",
                           formatter_class=a.Formatter))
    _verifier(sub.add_parser("verifier", help="the action verifier on synthetic preferences (RoboMonkey)",
                             formatter_class=a.Formatter))
    _value(sub.add_parser("value", help="the V-GPS value function Q(s, chunk) by IQL on mixed-quality episodes",
                          formatter_class=a.Formatter))


def _run_args(p: argparse.ArgumentParser, cfg_cls) -> None:
    """Every trainer's run habits, with its own config's defaults."""
    p.add_argument("--seed", type=a.nonnegative, default=a.default_of(cfg_cls, "seed"))
    p.add_argument("--threads", type=a.positive, default=a.default_of(cfg_cls, "threads"))
    p.add_argument("--val-every", type=a.positive, default=a.default_of(cfg_cls, "val_every"))
    p.add_argument("--ckpt-every", type=a.positive, default=a.default_of(cfg_cls, "ckpt_every"))
    p.add_argument("--resume", action="store_true", help="continue from the training state beside --out")
    p.add_argument("--no-progress", action="store_true")


def _policy(p: argparse.ArgumentParser) -> None:
    from vla_runtime.policy.config import PolicyConfig
    from vla_runtime.policy.train import TrainConfig

    def pc(name: str):
        return a.default_of(PolicyConfig, name)

    def tc(name: str):
        return a.default_of(TrainConfig, name)

    p.add_argument("--data", nargs="+", required=True, help="dataset folder(s) from `vla sim collect`")
    p.add_argument("--out", required=True, help="checkpoint folder (training state goes beside it)")
    a.overwrite_arg(p, "policy checkpoint")
    p.add_argument("--steps", type=a.positive, default=tc("steps"))
    p.add_argument("--batch-size", type=a.positive, default=tc("batch_size"))
    p.add_argument("--lr", type=float, default=tc("lr"))
    p.add_argument("--ema", type=float, default=tc("ema_decay"), help="EMA decay of the saved weights (0 = off)")
    p.add_argument("--image-size", type=a.size, default=pc("image_size"), help="N or HxW")
    p.add_argument("--vision-strides", type=a.int_tuple, default=pc("vision_strides"), metavar="S,S,S",
                   help="stride (1 or 2) of each FiLM block after the stride-2 stem; use 2,1,1 at 128x128 to keep "
                        "32x32 keypoint maps")
    p.add_argument("--wrist-camera", default=pc("wrist_camera"), metavar="NAME",
                   help="also read this camera (e.g. wrist; collect with --wrist) with a second CNN")
    p.add_argument("--wrist-image-size", type=a.size, default=pc("wrist_image_size"), help="N or HxW")
    p.add_argument("--wrist-vision-strides", type=a.int_tuple, default=pc("wrist_vision_strides"), metavar="S,S,S",
                   help="the wrist CNN's block strides")
    p.add_argument("--random-shift", type=int, default=tc("random_shift"),
                   help="pixels of random-shift augmentation (scale it with the image size)")
    p.add_argument("--aux-weight", type=float, default=pc("aux_weight"),
                   help="weight of the direct chunk-regression loss")
    p.add_argument("--aux-object-weight", type=float, default=pc("aux_object_weight"),
                   help="weight of the target/goal xy auxiliary loss (privileged labels, training only)")
    p.add_argument("--aux-object-input", default=pc("aux_object_input"), choices=["cond", "vision"],
                   help="features the object head reads (vision: grounding cannot lean on proprio)")
    p.add_argument("--aux-object-steps", type=int, default=tc("object_label_steps"),
                   help="label the object xy on the first N frames of an episode (before the arm moves)")
    p.add_argument("--grounding-steps", type=int, default=tc("grounding_steps"),
                   help="first train only the object-localisation loss for this many steps")
    p.add_argument("--proprio-inputs", default=",".join(pc("proprio_inputs")), metavar="NAMES",
                   help="comma-separated proprio entries the policy sees")
    p.add_argument("--init", default=None, metavar="DIR", type=a.checkpoint,
                   help="fine-tune this policy checkpoint (its config and normalisation; fresh optimizer)")
    p.add_argument("--anchor", action="store_true",
                   help="condition every decision on the object head's first-frame target/goal estimate "
                        "(with --init: add it to the parent policy)")
    p.add_argument("--role-grounding", action="store_true",
                   help="locate the instruction's target and goal separately: one learned query per role over "
                        "the language model's token states, each with its own spatial head")
    p.add_argument("--anchor-noise", type=float, default=tc("anchor_noise"), metavar="M",
                   help="metres of noise on the training anchors")
    _run_args(p, TrainConfig)
    p.set_defaults(func=policy)


def policy(args: argparse.Namespace) -> int:
    from vla_runtime.policy.card import policy_card
    from vla_runtime.policy.config import PolicyConfig
    from vla_runtime.policy.train import TrainConfig, train_policy

    command = _command_line("train", "policy")
    anchor = {"anchor": True} if args.anchor else {}  # what --init may add to the parent's config
    if args.init and args.role_grounding:
        raise ValueError("--role-grounding reshapes the fusion layer, so it cannot be added to an --init parent: "
                         "train from scratch")
    pcfg = PolicyConfig(image_size=args.image_size, vision_strides=args.vision_strides,
                        wrist_camera=args.wrist_camera, wrist_image_size=args.wrist_image_size,
                        wrist_vision_strides=args.wrist_vision_strides, aux_weight=args.aux_weight,
                        aux_object_weight=args.aux_object_weight, aux_object_input=args.aux_object_input,
                        proprio_inputs=tuple(args.proprio_inputs.split(",")), role_grounding=args.role_grounding,
                        **({} if args.init else anchor))
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       grounding_steps=args.grounding_steps, object_label_steps=args.aux_object_steps,
                       anchor_noise=args.anchor_noise, random_shift=args.random_shift, ema_decay=args.ema,
                       threads=args.threads, val_every=args.val_every, ckpt_every=args.ckpt_every)
    result = train_policy(args.data, args.out, pcfg, tcfg, resume=args.resume, progress=not args.no_progress,
                          model_card_fn=lambda trainer, last: policy_card(trainer, last, command, args.data),
                          init=args.init, init_overrides=anchor if args.init else None, overwrite=args.overwrite)
    print(json.dumps(result))
    return 0


def _scorer_io_args(p: argparse.ArgumentParser, data_help: str, data_required: bool = True) -> None:
    """What both scorer trainers read and write."""
    p.add_argument("--policy", type=a.checkpoint, default="models/policy",
                   help="the frozen policy whose token it reads")
    p.add_argument("--data", nargs="+" if data_required else "*", required=data_required, default=[], help=data_help)
    p.add_argument("--out", required=True)
    a.overwrite_arg(p, "checkpoint of the same kind")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="cache the frozen policy's frame encodings here (default: beside --out)")


def _verifier(p: argparse.ArgumentParser) -> None:
    from verifiers.train_verifier import VerifierTrainConfig as C

    _scorer_io_args(p, "dataset folder(s) with expert or dart episodes", data_required=False)
    p.add_argument("--relabelled", nargs="+", default=[], metavar="DIR",
                   help="`vla sim relabel` folders: the policy's own states, ranked against the expert's chunk there")
    p.add_argument("--init", type=a.checkpoint, default=None, help="start from this verifier's weights")
    p.add_argument("--own-perception", action="store_true",
                   help="train a verifier with its own image/instruction/proprio encoder (initialised from --policy) "
                        "on --relabelled decisions, instead of one reading the policy's token")
    p.add_argument("--image-shift", type=a.nonnegative, default=a.default_of(C, "image_shift"),
                   help="--own-perception: random image shift in pixels while training")
    p.add_argument("--color-jitter", type=float, default=a.default_of(C, "color_jitter"),
                   help="--own-perception: brightness/contrast jitter while training")
    p.add_argument("--steps", type=a.positive, default=a.default_of(C, "steps"))
    p.add_argument("--batch-states", type=a.positive, default=a.default_of(C, "batch_states"),
                   help="states per step (all their candidates)")
    p.add_argument("--lr", type=float, default=a.default_of(C, "lr"))
    p.add_argument("--alpha", type=float, default=a.default_of(C, "alpha"),
                   help="preference-level term weight (0 = Bradley-Terry)")
    p.add_argument("--max-states", type=a.positive, default=a.default_of(C, "max_states"),
                   help="demonstration states given candidates")
    p.add_argument("--perturbations", type=a.positive, default=a.default_of(C, "perturbations"),
                   help="expert perturbations per state")
    p.add_argument("--policy-samples", type=a.positive, default=a.default_of(C, "policy_samples"),
                   help="frozen-policy samples per state")
    p.add_argument("--gaussian", type=int, default=a.default_of(C, "gaussian"),
                   help="GaussianVote draws around the samples per state")
    p.add_argument("--hidden", type=a.positive, default=a.default_of(C, "hidden"))
    p.add_argument("--layers", type=a.positive, default=a.default_of(C, "layers"))
    _run_args(p, C)
    p.set_defaults(func=verifier)


def verifier(args: argparse.Namespace) -> int:
    from verifiers.train_verifier import VerifierTrainConfig, train_verifier

    cfg = VerifierTrainConfig(steps=args.steps, batch_states=args.batch_states, lr=args.lr, alpha=args.alpha,
                              max_states=args.max_states, perturbations=args.perturbations,
                              policy_samples=args.policy_samples, gaussian=args.gaussian, hidden=args.hidden,
                              layers=args.layers, val_every=args.val_every, ckpt_every=args.ckpt_every,
                              seed=args.seed, threads=args.threads, image_shift=args.image_shift,
                              color_jitter=args.color_jitter)
    if args.own_perception:
        from verifiers.train_perception import train_perception_verifier

        if args.data or args.init:
            raise ValueError("--own-perception trains on --relabelled decisions from the policy's weights; "
                             "--data and --init are for the token verifier")
        result = train_perception_verifier(args.policy, args.relabelled, args.out, cfg, resume=args.resume,
                                           progress=not args.no_progress, command=_command_line("train", "verifier"),
                                           overwrite=args.overwrite)
        print(json.dumps({k: v for k, v in result.items() if k != "train_config"}))
        return 0
    result = train_verifier(args.policy, args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress,
                            command=_command_line("train", "verifier"), feature_cache=args.feature_cache,
                            overwrite=args.overwrite, relabelled=args.relabelled, init=args.init)
    print(json.dumps({k: v for k, v in result.items() if k != "train_config"}))
    return 0


def _value(p: argparse.ArgumentParser) -> None:
    from verifiers.train_value import ValueTrainConfig as C

    _scorer_io_args(p, "dataset folders: expert, dart/noisy and policy rollouts (`vla eval --record`)")
    p.add_argument("--steps", type=a.positive, default=a.default_of(C, "steps"))
    p.add_argument("--batch-size", type=a.positive, default=a.default_of(C, "batch_size"))
    p.add_argument("--lr", type=float, default=a.default_of(C, "lr"))
    p.add_argument("--gamma", type=float, default=a.default_of(C, "gamma"), help="discount per environment step")
    p.add_argument("--k", type=a.positive, default=a.default_of(C, "k"),
                   help="environment steps per transition (the replan interval)")
    p.add_argument("--expectile", type=float, default=a.default_of(C, "expectile"))
    p.add_argument("--cql-alpha", type=float, default=a.default_of(C, "cql_alpha"),
                   help="weight of Cal-QL's calibrated conservative term on perturbed chunks (0 = plain IQL)")
    p.add_argument("--reward", default=a.default_of(C, "reward"), choices=["vgps", "sparse"],
                   help="vgps: 0 on a success's final step, -1 elsewhere; sparse: 1 on a success's final step")
    p.add_argument("--head", default=a.default_of(C, "head"), choices=["hlgauss", "regression"])
    p.add_argument("--bins", type=a.positive, default=a.default_of(C, "bins"), help="HL-Gauss value bins")
    p.add_argument("--hidden", type=a.positive, default=a.default_of(C, "hidden"))
    p.add_argument("--layers", type=a.positive, default=a.default_of(C, "layers"))
    _run_args(p, C)
    p.set_defaults(func=value)


def value(args: argparse.Namespace) -> int:
    from verifiers.train_value import ValueTrainConfig, train_value

    cfg = ValueTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, gamma=args.gamma, k=args.k,
                           expectile=args.expectile, cql_alpha=args.cql_alpha, reward=args.reward, head=args.head,
                           bins=args.bins, hidden=args.hidden, layers=args.layers, val_every=args.val_every,
                           ckpt_every=args.ckpt_every, seed=args.seed, threads=args.threads)
    result = train_value(args.policy, args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress,
                         command=_command_line("train", "value"), feature_cache=args.feature_cache,
                         overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in result.items() if k != "train_config"}))
    return 0


def _command_line(*words: str) -> str:
    """The `vla ...` command as typed, for model cards ("" when called from Python)."""
    n = len(words)
    return "vla " + " ".join(sys.argv[1:]) if tuple(sys.argv[1:1 + n]) == words else ""
