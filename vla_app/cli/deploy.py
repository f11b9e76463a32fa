"""`vla export onnx | trt` and `vla bench`: graphs and engines for edge GPUs, and what they cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vla_app.cli import args as a


def configure_export(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="export_command", required=True)
    q = sub.add_parser("onnx", help="the policy's encoder, denoiser and unrolled sampler (+ scorer heads)",
                       formatter_class=a.Formatter)
    q.add_argument("--policy", type=a.checkpoint, default="models/policy")
    q.add_argument("--verifier", type=a.checkpoint, default=None, help="also export this action verifier's head")
    q.add_argument("--value", type=a.checkpoint, default=None, help="also export this value function's head")
    q.add_argument("--sample-steps", type=a.positive_list, default=(), metavar="K,...",
                   help="also export a sampler unrolled for each of these DDIM step counts (cheaper steering "
                        "candidates: --steps of `vla eval`, the node's `steps`)")
    q.add_argument("--out", required=True)
    a.overwrite_arg(q, "ONNX export")
    q.set_defaults(func=export_onnx)
    q = sub.add_parser("trt", help="TensorRT engines from an ONNX export (needs a CUDA GPU and tensorrt)",
                       formatter_class=a.Formatter)
    q.add_argument("--onnx", required=True, help="a `vla export onnx` folder")
    q.add_argument("--cache", default="runs/tensorrt", help="engine cache folder")
    q.add_argument("--fp32", action="store_true", help="build fp32 engines (fp16 otherwise)")
    q.add_argument("--max-batch", type=a.positive, default=64, help="largest N / M the profiles cover")
    q.set_defaults(func=export_trt)


def export_onnx(args: argparse.Namespace) -> int:
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
    out = export_onnx(args.policy, args.out, scorers, overwrite=args.overwrite, sample_steps=args.sample_steps)
    manifest = read_manifest(out)
    print(json.dumps({"out": str(out), "opset": manifest["opset"], "graphs": sorted(manifest["graphs"])}))
    return 0


def export_trt(args: argparse.Namespace) -> int:
    from vla_runtime.backends.tensorrt import build_engines, trt_available

    ok, why = trt_available()
    if not ok:
        raise ValueError(f"cannot build TensorRT engines here: {why}")
    engines = build_engines(args.onnx, args.cache, fp16=not args.fp32, max_batch=args.max_batch)
    print(json.dumps({name: str(path) for name, path in engines.items()}))
    return 0


def configure_bench(p: argparse.ArgumentParser) -> None:
    from vla_app.bench import BenchConfig as C

    p.add_argument("--backend", default=",".join(a.default_of(C, "backends")), help="comma list of backends")
    p.add_argument("--n", default=",".join(map(str, a.default_of(C, "ns"))), help="comma list of sample counts (n = m)")
    p.add_argument("--repeats", type=a.positive, default=a.default_of(C, "repeats"))
    p.add_argument("--threads", type=a.positive, default=a.default_of(C, "threads"))
    p.add_argument("--policy", type=a.checkpoint, default=a.default_of(C, "policy"))
    p.add_argument("--verifier", type=a.checkpoint, default=a.default_of(C, "verifier"))
    p.add_argument("--value", type=a.checkpoint, default=a.default_of(C, "value"))
    p.add_argument("--candidate-steps", type=a.positive, default=a.default_of(C, "candidate_steps"),
                   help="DDIM steps of the cheaper candidates timed beside the default steering")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--plot", default=None, help="write a PNG here")
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from vla_app.bench import BenchConfig, format_table, run_bench, write_plot
    from vla_runtime.io import atomic_write_text, check_output_file

    for path, flag in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_output_file(path, flag)  # before minutes of timing, not after
    cfg = BenchConfig(backends=tuple(args.backend.split(",")), ns=tuple(int(n) for n in args.n.split(",")),
                      repeats=args.repeats, threads=args.threads, policy=args.policy, verifier=args.verifier,
                      value=args.value, candidate_steps=args.candidate_steps)
    result = run_bench(cfg)
    print(format_table(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    if args.plot:
        write_plot(result, Path(args.plot))
    return 0


def configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", type=a.checkpoint, default="models/policy", help="checkpoint or ONNX export folder")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "tensorrt"])
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--seed", type=a.nonnegative, default=0, help="noise for plain openpi requests (they bring none)")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    from vla_app.serve import PolicyServer
    from vla_app.serve import serve as run
    from vla_runtime.backends import load_policy

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    server = PolicyServer(load_policy(args.policy, args.backend), seed=args.seed)
    run(server, args.host, args.port, ready=lambda bound: print(f"serving {args.policy} ({args.backend}) on "
                                                                  f"ws://{bound[0]}:{bound[1]}", flush=True))
    return 0
