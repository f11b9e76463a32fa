"""Soak benchmark: the sim graph (`launch/sim_bringup.launch.yaml`) under steered control for a fixed time.

    python benchmarks/ros_soak.py --minutes 10 --backend onnx --json benchmarks/results/ros_soak_onnx.json

Episodes run back to back over real DDS (sim robot, steered policy at 10 Hz, MCAP recorder optional):
each one resets the simulator to the next task/seed (episode k: task k mod 4, seed `--seed` + k // 4, the
pairs `vla eval --task all --seed S --episodes N` runs, so the simulator loop is compared on the same
seeds), resets the policy, and ends on the success event or after `--episode-s` seconds. Printed at the end:
- control-deadline miss rate (the node's count: a skipped tick or a command published after the next tick
  was due) and, measured here, the share of command gaps longer than 1.5 periods inside episodes;
- image-to-command latency p50/p99 (image header stamp to the first command planned from it, per decision,
  as the node measures it) and, measured here, from each command's `~/command_stamps` TimeReference to its
  arrival (DDS delivery included); the decision (`act`) latency;
- commands outside the URDF's limits, checked here on every trajectory point received (position limits;
  velocity between consecutive points of the same trajectory and between consecutive one-point commands),
  the node's safety-stage interventions and the largest chunk-boundary jump against one step's bound;
- resident memory of each node after the first minute and at the end, and its growth;
- episode success over ROS with a Wilson 95% interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import TimeReference  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from ros_nodes.launcher import GraphProcesses, isolated_ros_env  # noqa: E402
from ros_nodes.probe import Probe  # noqa: E402
from vla_runtime.stats import wilson_interval  # noqa: E402

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TASKS = ("pick_lift", "push_to", "place_in", "stack")
PERIOD = 0.1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def policy_status(probe: Probe, since: float) -> dict:
    msg = probe.wait_message("/diagnostics", 5.0, since=since,
                             where=lambda m: m.status and m.status[0].name.startswith("vla_policy"))
    return {kv.key: kv.value for kv in msg.status[0].values}


def urdf_limits():
    """The bundled Panda's joint limits, as the node's safety stage reads them."""
    from ros_nodes.arm_commander import ArmCommander, CommanderConfig

    commander = ArmCommander(CommanderConfig())
    try:
        return commander.joint_limits(1.0)
    finally:
        commander.close()


def limit_violations(msgs: list, limits, period: float) -> tuple[int, int]:
    """(trajectory points outside the URDF's position limits, consecutive-point steps above the URDF's
    velocity limit times the point spacing) over the trajectories received, in order."""
    outside = fast = 0
    previous = None
    for msg in msgs:
        q = np.array([[p.positions[msg.joint_names.index(n)] for n in limits.names] for p in msg.points])
        outside += int(np.sum(np.any((q < limits.lower - 1e-9) | (q > limits.upper + 1e-9), axis=1)))
        steps = np.diff(q, axis=0) if len(q) > 1 else (q - previous if previous is not None else np.zeros((0, 7)))
        fast += int(np.sum(np.any(np.abs(steps) > limits.velocity * period + 1e-9, axis=1)))
        previous = q[:1] if len(q) == 1 else None  # one-point commands (stream) are compared tick to tick
    return outside, fast


def run_episode(probe: Probe, task: str, seed: int, limit_s: float) -> tuple[bool, list[float], list]:
    """-> (success, command gaps inside the episode in seconds, the trajectories it received)."""
    probe.call(SetBool, "/vla_policy/enable", SetBool.Request(data=False))
    results = probe.set_parameters("/sim_robot", task=task, seed=seed)
    if not all(r.successful for r in results):
        raise RuntimeError(f"sim_robot refused task={task} seed={seed}: {[r.reason for r in results]}")
    if not probe.call(Trigger, "/sim_robot/reset", Trigger.Request()).success:
        raise RuntimeError("sim_robot reset failed")
    probe.call(Trigger, "/vla_policy/reset", Trigger.Request())
    t0 = time.monotonic()
    probe.call(SetBool, "/vla_policy/enable", SetBool.Request(data=True))
    try:
        probe.wait_message("sim_robot/success", limit_s, since=t0, where=lambda m: m.data)
        success = True
    except TimeoutError:
        success = False
    arrivals = probe.arrivals("joint_trajectory", since=t0)
    gaps = np.diff(arrivals[1:]).tolist() if len(arrivals) > 2 else []  # from the second command on
    return success, gaps, probe.received("joint_trajectory", since=t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--episode-s", type=float, default=10.0, help="episode time limit (100 control steps)")
    ap.add_argument("--steering", default="robomonkey")
    ap.add_argument("--backend", default="torch", help="torch | onnx | tensorrt (the policy node's parameter)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--seed", type=int, default=20000, help="first seed (tasks cycle; each task's seeds count up)")
    ap.add_argument("--output-mode", default="stream", choices=["stream", "chunk"])
    ap.add_argument("--steps", type=int, default=0, help="DDIM steps of the samples (0: the policy's own)")
    ap.add_argument("--no-plan-ahead", action="store_true", help="plan at the replan point (plan_ahead false)")
    ap.add_argument("--blend", type=int, default=2, help="the node's blend_steps")
    ap.add_argument("--max-joint-acceleration", type=float, default=30.0, help="the safety stage's limit (rad/s^2)")
    ap.add_argument("--blend-in-s", type=float, default=0.0, help="the safety stage's velocity ramp (s)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks, cycled")
    ap.add_argument("--record", action="store_true", help="also run the MCAP recorder")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--log-dir", type=Path, default=ROOT / "runs" / "ros_soak")
    args = ap.parse_args()
    if args.minutes <= 0 or args.episode_s <= 0:
        ap.error(f"--minutes and --episode-s must be positive, got {args.minutes} and {args.episode_s}")

    tasks = args.tasks.split(",")
    env = isolated_ros_env()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    values = {"models_dir": str(ROOT / "models"), "steering": args.steering, "backend": args.backend,
              "n": str(args.n), "m": str(args.m), "steps": str(args.steps), "output_mode": args.output_mode,
              "plan_ahead": str(not args.no_plan_ahead).lower(), "blend_steps": str(args.blend),
              "max_joint_acceleration": str(args.max_joint_acceleration), "blend_in_s": str(args.blend_in_s),
              "enable": "false", "record": str(args.record).lower(),
              "record_path": str(args.log_dir / "soak.mcap") if args.record else ""}
    args.log_dir.mkdir(parents=True, exist_ok=True)
    (args.log_dir / "soak.mcap").unlink(missing_ok=True)
    with GraphProcesses(ROOT / "launch" / "sim_bringup.launch.yaml", values, env=env, log_dir=args.log_dir) as graph, \
            Probe("soak") as probe:
        probe.subscribe(Bool, "sim_robot/success", LATCHED)
        probe.subscribe(JointTrajectory, "joint_trajectory")
        probe.subscribe(TimeReference, "/vla_policy/command_stamps")
        probe.subscribe(DiagnosticArray, "/diagnostics")
        probe.wait_message("/diagnostics", 120.0, where=lambda m: m.status[0].name.startswith("vla_policy"))
        pids = {name: graph.pids[name] for name in ("vla_policy", "sim_robot")}
        t_start = time.monotonic()
        end = t_start + args.minutes * 60.0
        outcomes: list[tuple[str, int, bool]] = []
        gaps: list[float] = []
        episode_trajectories: list[list] = []  # per episode: its commands (the sim resets the arm between)
        rss_start: dict[str, float] | None = None
        k = 0
        while time.monotonic() < end:
            if rss_start is None and time.monotonic() - t_start > 60.0:
                rss_start = {name: rss_mb(pid) for name, pid in pids.items()}
            task, seed = tasks[k % len(tasks)], args.seed + k // len(tasks)
            success, episode_gaps, sent = run_episode(probe, task, seed, args.episode_s)  # may overrun
            episode_trajectories.append(sent)
            outcomes.append((task, seed, success))
            gaps += episode_gaps
            k += 1
            dead = {n: c for n, c in graph.poll().items() if c is not None}
            if dead:
                raise RuntimeError(f"nodes exited during the soak: {dead}; logs in {args.log_dir}")
        elapsed = time.monotonic() - t_start
        rss_end = {name: rss_mb(pid) for name, pid in pids.items()}
        rss_start = rss_start or rss_end
        status = policy_status(probe, time.monotonic())
        clock_offset = probe.node.get_clock().now().nanoseconds * 1e-9 - time.monotonic()
        stamps = [(t + clock_offset) - (ref.time_ref.sec + ref.time_ref.nanosec * 1e-9)
                  for t, ref in zip(probe.arrivals("/vla_policy/command_stamps"),
                                    probe.received("/vla_policy/command_stamps"))]

    ticks, misses = int(status["control_ticks"]), int(status["deadline_misses"])
    wins = sum(o[2] for o in outcomes)
    lo, hi = wilson_interval(wins, len(outcomes))
    figures = {
        "minutes": elapsed / 60.0, "steering": args.steering, "backend": args.backend, "n": args.n, "m": args.m,
        "control_ticks": ticks, "deadline_misses": misses, "deadline_miss_rate": misses / max(ticks, 1),
        "starved_ticks": int(status["starved_ticks"]), "decisions": int(status["decisions"]),
        "command_gaps": len(gaps), "command_gaps_over_1.5_periods": int(np.sum(np.asarray(gaps) > 1.5 * PERIOD)),
        "image_to_command_p50_ms": float(status["image_to_command_p50_ms"]),
        "image_to_command_p99_ms": float(status["image_to_command_p99_ms"]),
        "act_p50_ms": float(status["act_p50_ms"]), "act_p99_ms": float(status["act_p99_ms"]),
        "plan_image_age_p50_ms": float(status["plan_image_age_p50_ms"]),
        "plan_image_age_p99_ms": float(status["plan_image_age_p99_ms"]),
        **{f"{stage}_{q}_ms": float(status[f"{stage}_{q}_ms"]) for stage in ("image_arrival_age", "landing_to_command")
           for q in ("p50", "p99") if f"{stage}_{q}_ms" in status},
        "control_tick_p99_ms": float(status["control_tick_p99_ms"]),
        "steps": args.steps, "output_mode": args.output_mode, "plan_ahead": not args.no_plan_ahead,
        "blend_steps": args.blend,
        "max_joint_acceleration": args.max_joint_acceleration, "blend_in_s": args.blend_in_s,
        "stamped_commands": len(stamps),
        "image_to_arrival_p50_ms": float(np.percentile(stamps, 50) * 1e3) if stamps else None,
        "image_to_arrival_p99_ms": float(np.percentile(stamps, 99) * 1e3) if stamps else None,
        "max_boundary_jump_m": float(status.get("max_boundary_jump_m", 0.0)),
        "step_bound_m": 0.055,
        "safety_interventions": {k.removeprefix("safety_"): int(v) for k, v in status.items()
                                 if k.startswith("safety_")},
        "rss_mb_after_1min": rss_start, "rss_mb_end": rss_end,
        "rss_growth": {n: (rss_end[n] - rss_start[n]) / rss_start[n] for n in rss_end},
        "episodes": len(outcomes), "successes": wins, "success_rate": wins / max(len(outcomes), 1),
        "success_ci95": [lo, hi],
        "per_task": {t: [int(o[2]) for o in outcomes if o[0] == t] for t in tasks},
        "seeds": {t: [o[1] for o in outcomes if o[0] == t] for t in tasks},
        "node_status": status,  # the policy node's last diagnostics, every key as it reported them
    }
    limits = urdf_limits()
    counts = [limit_violations(sent, limits, PERIOD) for sent in episode_trajectories]
    outside, fast = sum(c[0] for c in counts), sum(c[1] for c in counts)
    messages = sum(len(sent) for sent in episode_trajectories)
    figures.update(points_outside_position_limits=outside, steps_above_velocity_limit=fast,
                   trajectory_messages=messages)
    print(f"soak: {figures['minutes']:.1f} min of {args.steering} n={args.n} m={args.m} on {args.backend}, "
          f"control at 10 Hz")
    print(f"  control deadlines missed: {misses}/{ticks} = {100 * figures['deadline_miss_rate']:.2f}% "
          f"(target < 1%); starved ticks (no plan yet) {figures['starved_ticks']}")
    print(f"  command gaps > 1.5 periods inside episodes: {figures['command_gaps_over_1.5_periods']}/{len(gaps)}")
    print(f"  image-to-command latency p50 {figures['image_to_command_p50_ms']:.0f} ms, "
          f"p99 {figures['image_to_command_p99_ms']:.0f} ms; decision p50 {figures['act_p50_ms']:.0f} ms, "
          f"p99 {figures['act_p99_ms']:.0f} ms; the image's age when the decision took it p50 "
          f"{figures['plan_image_age_p50_ms']:.0f} ms, p99 {figures['plan_image_age_p99_ms']:.0f} ms")
    if "landing_to_command_p50_ms" in figures:
        print(f"  of which: the image's age on arrival (camera + transport) p50 "
              f"{figures['image_arrival_age_p50_ms']:.0f} ms, p99 {figures['image_arrival_age_p99_ms']:.0f} ms; "
              f"the plan landing to its first command p50 {figures['landing_to_command_p50_ms']:.0f} ms, p99 "
              f"{figures['landing_to_command_p99_ms']:.0f} ms")
    if stamps:
        print(f"  image stamp to command arrival (from ~/command_stamps, {len(stamps)} commands): p50 "
              f"{figures['image_to_arrival_p50_ms']:.0f} ms, p99 {figures['image_to_arrival_p99_ms']:.0f} ms")
    print(f"  commands outside the URDF limits: {outside} points outside the position limits, {fast} steps above "
          f"the velocity limit, over {messages} trajectories; safety interventions "
          f"{figures['safety_interventions']}")
    print(f"  largest chunk-boundary jump {figures['max_boundary_jump_m']:.4f} m (one step's bound 0.055 m)")
    for n in rss_end:
        print(f"  {n} RSS {rss_start[n]:.0f} MB after 1 min -> {rss_end[n]:.0f} MB at the end: "
              f"{100 * figures['rss_growth'][n]:+.2f}% (target < 5%)")
    print(f"  episodes {len(outcomes)}, success {100 * figures['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
