"""Evaluation throughput: episodes/s of the local executor (1 and 2 workers) and of Ray (2 simulator tasks +
the batched inference actor) on the same seeded episodes, decisions/s of the inference server against batch
size, and the cost model `docs/scale.md` uses to size a 2000-episode suite.

    python benchmarks/eval_throughput.py [--episodes 4] [--average 16] [--out benchmarks/results/eval_throughput]

Every figure comes from this one run (the machine is noisy: compare ratios, not absolute numbers):
- executors: each runs the same jobs (`--episodes` per task over pick_lift and push_to); outcomes must match.
- server: `InferenceServer.decide_many` (the actor's own code, in-process) on B observations, B = 1..16.
- cost model: simulator seconds per episode (an episode at 1 worker minus its decisions), decisions per
  episode, and the projection for `--suite` episodes on N CPU nodes of `--cores` cores, with the server at
  the measured CPU throughput or at `--gpu-decisions-per-s` (an assumption the doc names, not a measurement).
Writes OUT.json and OUT.md; the last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sim.env import ArmEnv, EnvConfig
from vla_app.agents import AgentFactory, unsteered
from vla_app.ray_eval import InferenceServer, RayConfig, RayEvaluation
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.io import atomic_write_text

TASKS = ("pick_lift", "push_to")
BATCHES = (1, 2, 4, 8, 16)
NODES = (1, 2, 4, 8, 16, 32)


def run_executor(name: str, factory: AgentFactory, jobs: list[EpisodeJob]) -> tuple[dict, list]:
    t0 = time.perf_counter()
    startup = None
    if name == "ray-2":
        with RayEvaluation(factory, RayConfig(workers=2, max_batch=8, max_wait_ms=5.0)) as run:
            startup = time.perf_counter() - t0  # Ray itself; the server loads its model while episodes start
            summaries = list(run.episodes(jobs))
            import ray

            served = ray.get(run.server.served.remote())
    else:
        summaries = list(run_episodes(jobs, factory, workers=int(name.split("-")[1])))
        served = []
    seconds = time.perf_counter() - t0
    row = {"executor": name, "episodes": len(summaries), "seconds": round(seconds, 2),
           "episodes_per_s": round(len(summaries) / seconds, 4), "steps": sum(s.steps for s in summaries)}
    if startup is not None:
        row["ray_start_s"] = round(startup, 2)
    if served:
        row.update(decisions=sum(served), mean_batch=round(float(np.mean(served)), 3))
    return row, sorted((s.task, s.seed, s.success, s.steps) for s in summaries)


def server_rates(factory: AgentFactory, seconds: float) -> list[dict]:
    server = InferenceServer(factory, max_batch=max(BATCHES))
    env = ArmEnv(EnvConfig(task="pick_lift", depth=False, **factory.env_options()))
    try:
        obs = []
        for k in range(max(BATCHES)):
            env.reset(seed=20000 + k)
            obs.append(env.last_observation)
    finally:
        env.close()
    state = torch.Generator().manual_seed(0).get_state().numpy()
    rows = []
    for b in BATCHES:
        requests = [(o, None, state) for o in obs[:b]]
        server.decide_many(requests)  # warm-up
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            server.decide_many(requests)
            calls += 1
        elapsed = time.perf_counter() - t0
        rows.append({"batch": b, "decisions_per_s": round(b * calls / elapsed, 2),
                     "ms_per_call": round(1e3 * elapsed / calls, 1)})
        print(f"server batch {b:2d}: {rows[-1]['decisions_per_s']:.1f} decisions/s", flush=True)
    return rows


def projection(sim_s: float, decisions_per_episode: float, server_rate: float, suite: int, cores: int) -> list[dict]:
    """Hours for `suite` episodes on N nodes: simulators scale with cores, one server serves every decision."""
    rows = []
    for n in NODES:
        sim_h = suite * sim_s / (n * cores) / 3600
        server_h = suite * decisions_per_episode / server_rate / 3600
        rows.append({"nodes": n, "simulator_h": round(sim_h, 3), "server_h": round(server_h, 3),
                     "hours": round(max(sim_h, server_h), 3),
                     "bottleneck": "simulators" if sim_h >= server_h else "inference server"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="models/policy")
    ap.add_argument("--episodes", type=int, default=4, help="per task")
    ap.add_argument("--average", type=int, default=16, help="decisions execute the mean of this many samples")
    ap.add_argument("--seed", type=int, default=30000)
    ap.add_argument("--server-seconds", type=float, default=4.0, help="timing per batch size")
    ap.add_argument("--suite", type=int, default=2000)
    ap.add_argument("--cores", type=int, default=16, help="simulator cores per CPU node in the projection")
    ap.add_argument("--gpu-decisions-per-s", type=float, default=500.0,
                    help="ASSUMED batched decisions/s of a GPU server (not measured here: no GPU)")
    ap.add_argument("--out", default="benchmarks/results/eval_throughput")
    args = ap.parse_args()
    torch.set_num_threads(1)
    factory = AgentFactory(args.policy, unsteered(args.average))
    env = EnvConfig(task=TASKS[0], depth=False, **factory.env_options())
    jobs = [EpisodeJob(index=i * args.episodes + k, seed=args.seed + k, env=EnvConfig(**{**env.__dict__, "task": t}))
            for i, t in enumerate(TASKS) for k in range(args.episodes)]
    rows, outcomes = [], {}
    for name in ("local-1", "local-2", "ray-2"):
        row, outcomes[name] = run_executor(name, factory, jobs)
        rows.append(row)
        print(f"{name}: {row['episodes']} episodes in {row['seconds']:.1f} s -> {row['episodes_per_s']:.3f} ep/s",
              flush=True)
    base = rows[0]["episodes_per_s"]
    for row in rows:
        row["ratio_vs_local_1"] = round(row["episodes_per_s"] / base, 3)
    same = outcomes["local-1"] == outcomes["local-2"] and [x[:3] for x in outcomes["ray-2"]] == \
        [x[:3] for x in outcomes["local-1"]]
    server = server_rates(factory, args.server_seconds)
    decision_s = 1.0 / server[0]["decisions_per_s"]
    decisions_per_episode = rows[2]["decisions"] / rows[2]["episodes"]
    episode_s = rows[0]["seconds"] / rows[0]["episodes"]
    sim_s = max(episode_s - decisions_per_episode * decision_s, 0.0)
    cpu_rate = max(r["decisions_per_s"] for r in server)
    report = {"policy": args.policy, "average": args.average, "tasks": list(TASKS), "episodes_per_task": args.episodes,
              "seed": args.seed, "executors": rows, "same_outcomes": same, "server": server,
              "cost": {"episode_s_at_1_worker": round(episode_s, 3),
                       "decisions_per_episode": round(decisions_per_episode, 2),
                       "decision_ms_batch_1": round(1e3 * decision_s, 1), "simulator_s_per_episode": round(sim_s, 3),
                       "cpu_server_decisions_per_s": cpu_rate},
              "projection": {"suite": args.suite, "cores_per_node": args.cores,
                             "cpu_server": projection(sim_s, decisions_per_episode, cpu_rate, args.suite, args.cores),
                             "gpu_server_assumed_decisions_per_s": args.gpu_decisions_per_s,
                             "gpu_server": projection(sim_s, decisions_per_episode, args.gpu_decisions_per_s,
                                                      args.suite, args.cores)}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=2))
    atomic_write_text(out.with_suffix(".md"), markdown(report, " ".join(["python benchmarks/eval_throughput.py",
                                                                          f"--episodes {args.episodes}",
                                                                          f"--average {args.average}"])))
    print(json.dumps(report))


def markdown(r: dict, command: str) -> str:
    c, p = r["cost"], r["projection"]
    lines = [f"# Evaluation throughput ({', '.join(r['tasks'])}, {r['episodes_per_task']} episodes per task, "
             f"mean of {r['average']} samples)", "", f"Command: `{command}` (one run; compare ratios).", "",
             "Seconds are all-in: worker start-up and model loading included (Ray's own start is "
             "`ray_start_s` in the JSON).", "",
             "| executor | episodes | seconds | episodes/s | vs local 1 |", "|---|---|---|---|---|"]
    lines += [f"| {x['executor']} | {x['episodes']} | {x['seconds']} | {x['episodes_per_s']} "
              f"| {x['ratio_vs_local_1']}x |" for x in r["executors"]]
    lines += ["", f"Same outcomes on every executor: **{r['same_outcomes']}**.", "",
              "| server batch | decisions/s | ms per call |", "|---|---|---|"]
    lines += [f"| {x['batch']} | {x['decisions_per_s']} | {x['ms_per_call']} |" for x in r["server"]]
    lines += ["", f"Cost model: {c['episode_s_at_1_worker']} s per episode at 1 worker, {c['decisions_per_episode']} "
              f"decisions per episode at {c['decision_ms_batch_1']} ms each -> {c['simulator_s_per_episode']} s of "
              f"simulation per episode; the CPU server peaks at {c['cpu_server_decisions_per_s']} decisions/s.", ""]
    assumed = p["gpu_server_assumed_decisions_per_s"]
    for name, label in (("cpu_server", "this CPU as the server"),
                        ("gpu_server", f"a GPU server ASSUMED at {assumed} decisions/s")):
        lines += [f"{p['suite']} episodes, {p['cores_per_node']} simulator cores per node, {label}:", "",
                  "| CPU nodes | simulators (h) | server (h) | total (h) | bottleneck |", "|---|---|---|---|---|"]
        lines += [f"| {x['nodes']} | {x['simulator_h']} | {x['server_h']} | {x['hours']} | {x['bottleneck']} |"
                  for x in p[name]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
