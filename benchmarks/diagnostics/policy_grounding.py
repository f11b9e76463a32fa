"""Does the policy reach for the instructed object, how far off is its grasp, and does it recover from a miss?

    python benchmarks/diagnostics/policy_grounding.py [--policy models/policy | --expert QUALITY]
        [--task pick_lift|...|all] [--episodes 16] [--seed 30000]

Per seeded episode: after `--probe-step` steps, is the TCP nearest the target object (not a
distractor), and the TCP - object offset (mm, table plane) when the agent first closes the
gripper; whether that first close missed (no finger touches the target 3 steps later) and, if so,
whether the agent then moved (reopened or rose by 2 cm) or stayed put ("stuck"), and whether it
"recovered": grasped the target later (fingers on it, hand closed, lifted 1 cm) or succeeded.
Success rates say *that* a policy fails; this says *why* (grounding, precision, or no recovery
from a miss). `push_to` grasps nothing, so its miss columns are null. `--expert QUALITY` runs a
scripted expert instead of a policy (`recovery`: its induced misses, some of which brush the object and
so do not count as missed here, and how many of those episodes still succeed).
For an anchor policy (`PolicyConfig.anchor`) also the latched anchor's target error; `--oracle-anchor`
latches the true target xy instead (pick_lift only: an upper bound on how well the action head acts
on a perfect anchor). Uses development seeds (default 30000+), never the evaluation seeds. Last
stdout line: JSON, per task `{"episodes", "successes", "target_nearest", "median_reach_mm",
"median_grasp_offset_mm", "missed_grasps", "stuck_after_miss", "recovered_after_miss",
"recovered_share", "induced_misses", "induced_then_success", "median_anchor_err_mm"}` and
"seconds_per_episode" (flat for one task, under "tasks" for several).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sim.env import ArmEnv, EnvConfig
from sim.experts import QUALITIES, ExpertFactory
from sim.scene import OBJECT_HALF
from sim.tasks import TASKS, body_pos


def episode(env: ArmEnv, agent, seed: int, probe_step: int, encoder=None, oracle_anchor: bool = False) -> dict:
    """One seeded rollout, judged from privileged state. `encoder`: a policy's `EpisodeEncoder` (its anchor)."""
    env.reset(seed=seed)
    agent.reset(env)
    graspable = [o for o, spec in zip(env.world.objects, env.instance.objects) if spec.urdf is None]
    target = graspable[0]
    target_xy = body_pos(env.client, target)[:2]
    if oracle_anchor:  # pick_lift: the goal is the object itself
        encoder.anchor = np.array([*target_xy, *target_xy], np.float32)
    grasps = env.instance.task != "push_to"
    row = {"near": False, "reach_mm": float("nan"), "offset_mm": float("nan"), "miss": False, "moved": False,
           "recovered": False, "anchor_err_mm": None}
    close_t, close_z, info = None, 0.0, {"success": False}
    for t in range(env.config.max_steps):
        action = agent.act(env)
        tcp = env.arm.tcp_pose()[0]
        obj = body_pos(env.client, target)
        closing = action[env.spec_actions.gripper_index] < 0.5
        if grasps and close_t is None and closing:
            row["offset_mm"] = float(np.linalg.norm((tcp - obj)[:2]) * 1000)
            close_t, close_z = t, float(tcp[2])
        if close_t is not None and t == close_t + 3:
            row["miss"] = not env.arm.in_contact_with(target)
        elif row["miss"]:
            row["moved"] |= not closing or tcp[2] > close_z + 0.02
            held = env.gripper_command < 0.5 and env.arm.in_contact_with(target) and obj[2] > OBJECT_HALF + 0.01
            row["recovered"] |= held
        if t == probe_step:
            d = [np.linalg.norm(body_pos(env.client, o)[:2] - tcp[:2]) for o in graspable]
            row["near"], row["reach_mm"] = bool(np.argmin(d) == 0), d[0] * 1000
        if t == 0 and encoder is not None and encoder.anchor is not None:  # latched by the first decision
            row["anchor_err_mm"] = float(np.linalg.norm(encoder.anchor[:2] - target_xy) * 1000)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    row["success"] = bool(info["success"])
    row["recovered"] = row["miss"] and (row["recovered"] or row["success"])
    stats = getattr(agent, "episode_stats", None)
    row["induced_miss"] = bool(stats().get("induced_miss", False)) if stats is not None else False
    return row


def summarize(rows: list[dict], task: str) -> dict:
    grasps = task != "push_to"
    def count(key) -> int:
        return int(sum(bool(key(r)) for r in rows))

    missed, recovered = count(lambda r: r["miss"]), count(lambda r: r["recovered"])
    anchor = [r["anchor_err_mm"] for r in rows if r["anchor_err_mm"] is not None]
    return {"episodes": len(rows), "successes": count(lambda r: r["success"]),
            "target_nearest": count(lambda r: r["near"]),
            "median_reach_mm": round(float(np.nanmedian([r["reach_mm"] for r in rows])), 1),
            "median_grasp_offset_mm": round(float(np.nanmedian([r["offset_mm"] for r in rows])), 1) if grasps else None,
            "missed_grasps": missed if grasps else None,
            "stuck_after_miss": count(lambda r: r["miss"] and not r["moved"]) if grasps else None,
            "recovered_after_miss": recovered if grasps else None,
            "recovered_share": round(recovered / missed, 3) if grasps and missed else None,
            "induced_misses": count(lambda r: r["induced_miss"]),
            "induced_then_success": count(lambda r: r["induced_miss"] and r["success"]),
            "median_anchor_err_mm": round(float(np.median(anchor)), 1) if anchor else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--policy", default="models/policy")
    who.add_argument("--expert", choices=QUALITIES, help="run this scripted expert quality instead of a policy")
    ap.add_argument("--task", default="pick_lift", choices=[*TASKS, "all"])
    ap.add_argument("--episodes", type=int, default=16, help="per task")
    ap.add_argument("--seed", type=int, default=30_000)
    ap.add_argument("--probe-step", type=int, default=9)
    ap.add_argument("--oracle-anchor", action="store_true",
                    help="anchor policies, pick_lift: latch the true target xy (privileged) instead of the head's")
    args = ap.parse_args()
    tasks = list(TASKS) if args.task == "all" else [args.task]
    if args.oracle_anchor and (args.expert or tasks != ["pick_lift"]):
        raise SystemExit("--oracle-anchor: a policy on --task pick_lift only (its goal is the object itself)")
    if args.expert:
        factory, options = ExpertFactory(args.expert), {"render_images": False, "depth": False}
    else:
        from vla_app.agents import AgentFactory

        factory = AgentFactory(args.policy)
        options = factory.env_options()
    encoder = None if args.expert else factory.pipeline().episode
    if args.oracle_anchor and not factory.pipeline().policy.config.anchor:
        raise SystemExit(f"--oracle-anchor: {args.policy} is not an anchor policy")
    out = {"agent": f"expert:{args.expert}" if args.expert else args.policy, "tasks": {}}
    t0, n = time.perf_counter(), 0
    for task in tasks:
        env = ArmEnv(EnvConfig(task=task, variation="id", **options))
        rows = []
        for seed in range(args.seed, args.seed + args.episodes):
            r = episode(env, factory(seed), seed, args.probe_step, encoder, args.oracle_anchor)
            rows.append(r)
            print(f"{task} seed {seed}: target nearest at step {args.probe_step}: {r['near']}, grasp offset "
                  f"{r['offset_mm']:.0f} mm, missed {r['miss']}{' (induced)' if r['induced_miss'] else ''}"
                  f"{' (stuck)' if r['miss'] and not r['moved'] else ''}"
                  f"{' (recovered)' if r['recovered'] else ''}, success {r['success']}", flush=True)
        env.close()
        n += len(rows)
        out["tasks"][task] = summarize(rows, task)
    out["seconds_per_episode"] = round((time.perf_counter() - t0) / n, 2)
    if len(tasks) == 1:
        out = {"agent": out["agent"], "task": tasks[0], **out["tasks"][tasks[0]],
               "seconds_per_episode": out["seconds_per_episode"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
