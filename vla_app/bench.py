"""`vla bench`: per-stage latency of the policy and the steering pipeline on each inference backend.

Per backend and n (`remote`: the torch policy served by `vla serve` on localhost in this process, so
its ratio to torch is the protocol's cost; it runs the unsteered and mean rows only, token scorers
staying with a local policy): `encode`, `sample` (n chunks at the policy's own DDIM steps), `sample_cheap` (at
`candidate_steps`), `verifier`, `value` (direct calls on one fixed observation and its context), then full
`SteeredPolicy.act()` calls: `act_mean` (the mean of n samples, the free baseline), `act_steered` (the
default steering, `SteeringConfig(n=n, m=n)`: RoboMonkey) and `act_steered_cheap` (the same with candidates
of `candidate_steps` DDIM steps), plus `act_unsteered` (one sample, n = 1 only). `steering_cost` divides
each act() row by `act_unsteered` per backend. Every figure is the median and p90 of
`repeats` timed calls after `warmup` untimed ones, all in ONE process, so the ratios against torch compare
runs on the same machine under the same load. `sample` rows also carry the achieved GFLOP/s (`dit_flops`
over the median), set against this CPU's fp32 matmul peak (`measure_peak_gflops`): the physical limit.

Result schema (`run_bench`): `{"rows": [{"backend", "n", "stage", "median_ms", "p90_ms", "gflops"? (sample),
"ratio_vs_torch"? (when torch was measured)}], "peak_gflops", "machine", "torch", "onnxruntime", "command",
"config"}`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vla_runtime.backends import BACKENDS
from vla_runtime.types import Observation

BENCH_STAGES = ("encode", "sample", "sample_cheap", "verifier", "value", "act_unsteered", "act_mean",
                "act_steered", "act_steered_cheap")  # what `vla bench` times


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("torch", "onnx")
    ns: tuple[int, ...] = (1, 4, 16, 64)
    repeats: int = 30  # timed calls per figure
    warmup: int = 5  # untimed calls before them
    threads: int = 2  # torch intra-op threads (torch backend) / onnxruntime session threads (onnx)
    policy: str = "models/policy"
    verifier: str = "models/verifier"
    value: str = "models/value"
    seed: int = 0  # the observation's pixels and the torch generators' seeds
    candidate_steps: int = 3  # DDIM steps of the cheaper candidates timed beside the default (`--steps`)

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError(f"backends must name at least one backend of {list(BACKENDS)}, got {self.backends!r}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"backends must be distinct, got {self.backends!r}")
        if not self.ns or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in self.ns):
            raise ValueError(f"ns must be a non-empty list of integers >= 1, got {self.ns!r}")
        if len(set(self.ns)) != len(self.ns):
            raise ValueError(f"ns must be distinct, got {self.ns!r}")
        for name, low in (("repeats", 1), ("warmup", 0), ("threads", 1), ("candidate_steps", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def measure_peak_gflops(threads: int, size: int = 1024, repeats: int = 10) -> float:
    """fp32 GFLOP/s of a (size x size) @ (size x size) torch matmul on `threads` threads: the best of
    `repeats` timed calls (2 size^3 FLOPs each) after two warm-up calls. The torch thread count is
    restored afterwards."""
    if threads < 1 or size < 1 or repeats < 1:
        raise ValueError(f"threads, size and repeats must be >= 1, got {threads}, {size}, {repeats}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g)
        b = torch.randn(size, size, generator=g)
        out = torch.empty(size, size)
        for _ in range(2):
            torch.matmul(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2.0 * size**3 / best / 1e9


def dit_flops(policy_config, n: int, steps: int | None = None) -> float:
    """Analytic FLOPs (multiply-add = 2) of one `sample(n)`: `steps` DDIM steps (None: the config's
    `inference_steps`), each one DiT
    forward on a batch of n (2n with classifier-free guidance, `guidance_scale != 1`).

    Per forward and sample, with d = d_model, T = horizon + 2 tokens (condition, timestep, H actions),
    f = int(d * dit_mlp_ratio), A = action_dim, L = dit_layers:
      L * T * [2 (4 d^2)   q, k, v and output projections
               + 2 (2 d f)  the two MLP matmuls
               + 2 (2 T d)] attention scores Q K^T and their mix with V (all heads together)
      + 2 (H A d) * 2      action_in and action_out on the H action tokens.
    Left out (each under ~1 %, or not matmuls): the timestep MLP, layer norms, softmax, GELU, the DDIM
    update and the encoders (they run in `encode`, not `sample`)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    c = policy_config
    d, h, a = c.d_model, c.horizon, c.action_dim
    t = h + 2
    f = int(d * c.dit_mlp_ratio)
    per_token_layer = 2 * (4 * d * d) + 2 * (2 * d * f) + 2 * (2 * t * d)
    forward = c.dit_layers * t * per_token_layer + 2 * (2 * h * a * d)
    batch = n * (2 if c.guidance_scale != 1.0 else 1)
    return float((c.inference_steps if steps is None else steps) * batch * forward)


def random_observation(policy_config, rng: np.random.Generator) -> Observation:
    """Random uint8 images at the sizes the policy reads, a fixed instruction, standard-normal proprio."""
    return Observation(images={cam: rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
                               for cam, hw in policy_config.camera_sizes.items()},
                       instruction="pick up the red cube",
                       proprio=rng.normal(size=policy_config.proprio_dim).astype(np.float32))


def timed(fn, repeats: int, warmup: int, before=None) -> tuple[dict, list]:
    """-> ({"median_ms", "p90_ms"} of `repeats` calls of fn after `warmup`, the timed calls' return values);
    `before()` runs untimed before each call."""
    for _ in range(warmup):
        if before is not None:
            before()
        fn()
    ts, outs = [], []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        outs.append(fn())
        ts.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90))}, outs



def _machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "platform": platform.platform()}


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _bench_backend(backend: str, cfg: BenchConfig, export_dir, policy: str | None = None) -> list[dict]:
    """The rows of one backend: act_unsteered at n = 1, then per n the direct stages and the act() rows.
    policy: where this backend loads the policy (remote: the URL of the server `run_bench` started)."""
    from verifiers.steering import SteeringConfig, build_steered, steered_pipeline

    # onnx / trt sessions own their threads; a remote policy's server computes in this process's torch
    torch.set_num_threads(cfg.threads if backend in ("torch", "remote") else 1)
    threads = None if backend in ("torch", "remote") else cfg.threads
    policy = policy or cfg.policy
    unsteered = steered_pipeline(policy, SteeringConfig(method="none", verifier=cfg.verifier, value=cfg.value),
                                 backend=backend, export_dir=export_dir, threads=threads)
    obs = random_observation(unsteered.policy.config, np.random.default_rng(cfg.seed))
    gen = torch.Generator()
    rows = [{"backend": backend, "n": 1, "stage": "act_unsteered",
             **timed(lambda: unsteered.act(obs, gen), cfg.repeats, cfg.warmup,
                      before=lambda: (unsteered.reset(), gen.manual_seed(cfg.seed)))[0]}]
    for n in cfg.ns:
        if backend == "remote":  # the token scorers stay with a local policy: the mean of n is what runs here
            mean = steered_pipeline(policy, SteeringConfig(method="mean", n=n), backend=backend)
            rows += [{"backend": backend, "n": n, **r} for r in _bench_stages(mean, {"act_mean": mean}, obs, n, cfg)]
            continue
        both = steered_pipeline(cfg.policy, SteeringConfig(method="both", n=n, m=n, verifier=cfg.verifier,
                                                           value=cfg.value),
                                backend=backend, export_dir=export_dir, threads=threads)
        scorers = {s.name: s for s in both.scorers}
        acts = {"act_mean": SteeringConfig(method="mean", n=n),
                "act_steered": SteeringConfig(n=n, m=n, verifier=cfg.verifier),
                "act_steered_cheap": SteeringConfig(n=n, m=n, verifier=cfg.verifier, steps=cfg.candidate_steps)}
        pipelines = {stage: build_steered(both.policy, s, scorers=scorers) for stage, s in acts.items()}
        rows += [{"backend": backend, "n": n, **r} for r in _bench_stages(both, pipelines, obs, n, cfg)]
    return rows


def _bench_stages(both, pipelines: dict, obs: Observation, n: int, cfg: BenchConfig) -> list[dict]:
    """encode / sample / sample_cheap / verifier / value by direct calls on `obs` and its context, then each
    pipeline's full act()."""
    policy, gen = both.policy, torch.Generator()
    ctx = policy.encode(obs)  # also fills the instruction-embedding cache, as in a running episode
    samples = policy.sample(ctx, n, torch.Generator().manual_seed(cfg.seed))
    candidates = both.proposal.propose(samples, n, torch.Generator().manual_seed(cfg.seed))  # what act() scores
    rows = [{"stage": "encode", **timed(lambda: policy.encode(obs), cfg.repeats, cfg.warmup)[0]}]
    for stage, steps in (("sample", None), ("sample_cheap", cfg.candidate_steps)):
        rows.append({"stage": stage, **timed(lambda k=steps: policy.sample(ctx, n, gen, steps=k), cfg.repeats,
                                             cfg.warmup, before=lambda: gen.manual_seed(cfg.seed))[0]})
        rows[-1]["gflops"] = dit_flops(policy.config, n, steps) / (rows[-1]["median_ms"] / 1e3) / 1e9
    for scorer in both.scorers:
        rows.append({"stage": scorer.name, "candidates": len(candidates),
                     **timed(lambda s=scorer: s.score(ctx, candidates), cfg.repeats, cfg.warmup)[0]})
    for stage, sp in pipelines.items():
        rows.append({"stage": stage, **timed(lambda p=sp: p.act(obs, gen), cfg.repeats, cfg.warmup,
                                             before=lambda p=sp: (p.reset(), gen.manual_seed(cfg.seed)))[0]})
    return rows


def steering_cost(result: dict) -> list[dict]:
    """Per backend and n: the default steered decision (`act_steered`), the same with cheaper candidates and
    the mean of n, each divided by the unsteered decision (`act_unsteered`) measured in the same run."""
    ms = {(r["backend"], r["n"], r["stage"]): r["median_ms"] for r in result["rows"]}
    out = []
    for (backend, n, stage), value in ms.items():
        base = ms.get((backend, 1, "act_unsteered"))
        if stage == "act_steered" and base:
            out.append({"backend": backend, "n": n, "steered_vs_unsteered": value / base,
                        "cheap_vs_unsteered": ms[(backend, n, "act_steered_cheap")] / base,
                        "mean_vs_unsteered": ms[(backend, n, "act_mean")] / base})
    return out


def run_bench(cfg: BenchConfig) -> dict:
    """Measure every backend in `cfg.backends` in this process (see the module docstring for the schema).
    onnx / tensorrt read one ONNX export of the policy + verifier + value, made and cached under runs/onnx on
    first use. The torch thread count is restored afterwards."""
    before = torch.get_num_threads()
    export_dir = None
    if any(b != "torch" for b in cfg.backends):
        from verifiers.steering import ensure_export

        export_dir = ensure_export(cfg.policy, {"verifier": cfg.verifier, "value": cfg.value},
                                   steps=cfg.candidate_steps)
    server = None
    if "remote" in cfg.backends:  # the torch policy served in this process: the rows price the protocol
        from vla_app.serve import ServerThread
        from vla_runtime.backends import load_policy

        server = ServerThread(load_policy(cfg.policy, "torch"))
    try:
        peak = measure_peak_gflops(cfg.threads)
        rows = []
        for backend in cfg.backends:
            rows += _bench_backend(backend, cfg, export_dir, policy=server.url if backend == "remote" else None)
    finally:
        torch.set_num_threads(before)
        if server is not None:
            server.stop()
    torch_median = {(r["n"], r["stage"]): r["median_ms"] for r in rows if r["backend"] == "torch"}
    for r in rows:
        ref = torch_median.get((r["n"], r["stage"]))
        if ref is not None:
            r["ratio_vs_torch"] = r["median_ms"] / ref
    result = {"rows": rows, "peak_gflops": peak, "machine": _machine(), "torch": torch.__version__,
            "onnxruntime": _onnxruntime_version(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "config": dataclasses.asdict(cfg), "export_dir": None if export_dir is None else str(export_dir)}
    result["steering_cost"] = steering_cost(result)
    return result


def write_plot(result: dict, path: str | Path) -> Path:
    """A PNG: per stage, the median ms against n for each backend (log scales), and the achieved GFLOP/s of
    both sample stages against the measured matmul peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    rows = result["rows"]
    ns = sorted({r["n"] for r in rows})

    def n_axis(ax) -> None:  # the measured n as ticks, the same range on every panel
        ax.set_xscale("log")
        ax.set_xlim(ns[0] / 1.5, ns[-1] * 1.5)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_locator(NullLocator())

    backends = list(dict.fromkeys(r["backend"] for r in rows))
    fig, axes = plt.subplots(2, 5, figsize=(20, 7.5))
    panels = list(axes.flat)
    for ax, stage in zip(panels, BENCH_STAGES, strict=False):
        for backend in backends:
            pts = sorted((r["n"], r["median_ms"]) for r in rows if r["backend"] == backend and r["stage"] == stage)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=backend)
        ax.set(title=stage, xlabel="n", ylabel="median ms", yscale="log")
        n_axis(ax)
        ax.grid(True, which="both", alpha=0.3)
    ax = panels[len(BENCH_STAGES)]
    for backend in backends:
        for stage, style in (("sample", "-"), ("sample_cheap", ":")):
            pts = sorted((r["n"], r["gflops"]) for r in rows
                         if r["backend"] == backend and r["stage"] == stage and "gflops" in r)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", linestyle=style, label=f"{backend} {stage}")
    ax.axhline(result["peak_gflops"], color="k", linestyle="--", label=f"matmul peak {result['peak_gflops']:.0f}")
    ax.set(title="sample: achieved GFLOP/s", xlabel="n", ylabel="GFLOP/s", yscale="log")
    n_axis(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    panels[0].legend(fontsize=8)
    for extra in panels[len(BENCH_STAGES) + 1:]:
        extra.axis("off")
    machine = result.get("machine", {})
    fig.suptitle(f"vla bench on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), "
                 f"{result.get('config', {}).get('threads', '?')} threads")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    """A markdown table of every row (backend, n, stage, median, p90, ratio vs torch, GFLOP/s)."""
    order = {s: i for i, s in enumerate(BENCH_STAGES)}
    backends = list(dict.fromkeys(r["backend"] for r in result["rows"]))
    rows = sorted(result["rows"], key=lambda r: (backends.index(r["backend"]), r["n"], order.get(r["stage"], 99)))
    lines = ["| backend | n | stage | median ms | p90 ms | vs torch | GFLOP/s |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio_vs_torch']:.2f}x" if "ratio_vs_torch" in r else "-"
        gflops = f"{r['gflops']:.2f}" if "gflops" in r else "-"
        lines.append(f"| {r['backend']} | {r['n']} | {r['stage']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} "
                     f"| {ratio} | {gflops} |")
    lines.append("")
    lines.append(f"fp32 matmul peak: {result['peak_gflops']:.1f} GFLOP/s")
    k = result["config"]["candidate_steps"]
    lines += ["", "Steering cost (median act() / act_unsteered of the same backend and run):", "",
              f"| backend | n = m | default steering | candidates of {k} DDIM steps | mean of n |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {c['backend']} | {c['n']} | {c['steered_vs_unsteered']:.2f}x | {c['cheap_vs_unsteered']:.2f}x "
              f"| {c['mean_vs_unsteered']:.2f}x |" for c in result["steering_cost"]]
    return "\n".join(lines) + "\n"
