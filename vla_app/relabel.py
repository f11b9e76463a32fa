"""DAgger-style relabelling: the policy's own states, each with its candidates and the expert's chunk.

A verifier trained on demonstration states never sees the states the policy drifts into, which are where
steering has to choose. Here the policy runs closed loop on training seeds (a share of the episodes
executing the verifier's pick, the rest the mean of the samples), and at every decision the scripted
expert is asked, from the privileged state, what it would do (`sim.experts.expert_chunk`). Each decision is
stored with the policy's token, the candidates steering scored and the expert's chunk, so the verifier
trainer (`--relabelled DIR`) ranks what steering ranks, where it ranks it. The episode's outcome rides
along (an auxiliary target). Episode k uses task `tasks[k % len(tasks)]` and seed `seed + k`; a killed run
resumed with the same arguments skips the episodes already written.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from sim.env import EnvConfig
from sim.experts import ExpertConfig, ScriptedExpert, expert_chunk
from sim.tasks import TASKS, check_task
from verifiers.relabelled import FORMAT, MANIFEST, pad_candidates
from verifiers.steering import SteeringConfig
from vla_app.agents import Agent, AgentFactory
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.execution import ChunkExecutor, ExecutorConfig
from vla_runtime.io import atomic_write_bytes, atomic_write_text

EVAL_SEEDS = range(10_000, 40_000)  # evaluation (10000+) and development (30000+) seeds never train anything


@dataclass(frozen=True)
class RelabelConfig:
    policy: str
    out: str
    verifier: str = "models/verifier"
    episodes: int = 400
    seed: int = 200_000
    workers: int = 2
    n: int = 16
    m: int = 16
    steered_share: float = 0.5  # episodes whose executed chunk is the verifier's pick; the rest run the mean
    tasks: tuple[str, ...] = TASKS
    variation: str = "id"

    def __post_init__(self) -> None:
        for t in self.tasks:
            check_task(t)
        if self.episodes < 1 or self.workers < 1 or self.n < 1 or self.m < 1:
            raise ValueError(f"episodes, workers, n and m must be >= 1, got episodes={self.episodes} "
                             f"workers={self.workers} n={self.n} m={self.m}")
        if not 0.0 <= self.steered_share <= 1.0:
            raise ValueError(f"steered_share must be in [0, 1], got {self.steered_share}")
        last = self.seed + self.episodes - 1
        if self.seed < EVAL_SEEDS.stop and last >= EVAL_SEEDS.start:
            raise ValueError(f"seeds {self.seed}..{last} overlap the evaluation/development seeds "
                             f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}; relabel on training seeds only")

    def steering(self) -> SteeringConfig:
        """The candidates recorded: RoboMonkey's Gaussian draws plus the policy's own samples."""
        return SteeringConfig(method="robomonkey", n=self.n, m=self.m, verifier=self.verifier, keep_samples=True)


class Recorder:
    """Wraps a steered decision: asks the expert at the same state, stores both, and executes the
    verifier's pick (steered episodes) or the samples' mean (GaussianVote's candidate 0)."""

    def __init__(self, steered, out: Path, index: int, steer: bool, rng: np.random.Generator) -> None:
        self.steered, self.out, self.index, self.steer = steered, out, index, steer
        self.expert = ScriptedExpert(ExpertConfig(), rng)
        self.env = None
        self.rows: list[dict] = []

    def bind(self, env) -> None:
        self.env = env

    def reset(self) -> None:
        self.steered.reset()
        self.rows = []

    def decide(self, obs, generator):
        result = self.steered.act(obs, generator)
        spec = self.steered.policy.action_spec
        expert = expert_chunk(self.env, self.expert, spec.chunk_length)
        index = result.index if self.steer else 0
        self.rows.append({"cond": result.context.cond.numpy()[0], "candidates": result.candidates, "expert": expert,
                          "executed": index, "image": obs.images["static"], "proprio": obs.proprio,
                          "step": self.env.steps})
        return result if self.steer else replace(result, chunk=result.candidates[0], index=0)

    def finish(self, env, summary) -> None:
        """Writes the episode's decisions (one npz, atomically) once its outcome is known."""
        cands, count = pad_candidates([r["candidates"] for r in self.rows])
        meta = {"task": summary.task, "variation": summary.variation, "seed": summary.seed,
                "success": summary.success, "instruction": summary.instruction,
                "mode": "steered" if self.steer else "mean", "steps": summary.steps}
        buf = io.BytesIO()
        np.savez(buf, cond=np.stack([r["cond"] for r in self.rows]).astype(np.float32), candidates=cands,
                 count=count,
                 expert=np.stack([r["expert"] for r in self.rows]).astype(np.float32),
                 executed=np.array([r["executed"] for r in self.rows], np.int32),
                 image=np.stack([r["image"] for r in self.rows]), proprio=np.stack([r["proprio"] for r in self.rows]),
                 step=np.array([r["step"] for r in self.rows], np.int32), meta=np.array(json.dumps(meta)))
        atomic_write_bytes(episode_file(self.out, self.index), buf.getvalue())


def episode_file(out: Path, index: int) -> Path:
    return Path(out) / f"decisions_{index:06d}.npz"


@dataclass(frozen=True)
class RelabelFactory:
    """Picklable: episode seed -> an `Agent` recording its decisions."""

    agents: AgentFactory
    out: str
    steered_share: float
    n_tasks: int
    indices: dict = field(default_factory=dict)  # seed -> episode index

    def __call__(self, seed: int) -> Agent:
        import torch

        torch.set_num_threads(1)  # one worker per core, as `AgentFactory`
        steered = self.agents.pipeline()
        index = self.indices[seed]
        # A fixed, interleaved share of steered rounds (one episode per task each, so every task gets both
        # modes): round r is steered when floor((r+1) s) > floor(r s).
        r = index // self.n_tasks
        steer = int((r + 1) * self.steered_share) > int(r * self.steered_share)
        rec = Recorder(steered, Path(self.out), index, steer, np.random.default_rng([seed, 0xDA66E]))
        return Agent(rec.decide, rec.reset, ChunkExecutor(steered.policy.action_spec, self.agents.executor), seed,
                     before_decide=rec.bind, finish=rec.finish)


def relabel(cfg: RelabelConfig, progress: bool = True) -> dict:
    """Runs the missing episodes of `cfg.out` and returns a summary (episodes, decisions, success by mode)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from vla_runtime.checkpoint import weights_fingerprint
    from vla_runtime.policy.model import VLAPolicy

    # the tokens stored mean something only to this policy: the verifier trainer checks the fingerprint
    fingerprint = weights_fingerprint(VLAPolicy.from_pretrained(cfg.policy))
    manifest = {"format": FORMAT, "policy_fingerprint": fingerprint,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
                   if k not in ("out", "workers", "episodes")}}
    path = out / MANIFEST
    if path.exists():
        stored = json.loads(path.read_text())
        if {k: stored.get(k) for k in manifest} != manifest:
            raise ValueError(f"{out} holds relabelled decisions made with other settings ({path}); use another --out")
    else:
        atomic_write_text(path, json.dumps(manifest, indent=2))
    agents = AgentFactory(cfg.policy, cfg.steering(), ExecutorConfig())
    jobs, indices = [], {}
    for k in range(cfg.episodes):
        if episode_file(out, k).exists():
            continue
        task = cfg.tasks[k % len(cfg.tasks)]
        env = EnvConfig(task=task, variation=cfg.variation, **agents.env_options())
        jobs.append(EpisodeJob(index=k, seed=cfg.seed + k, env=env))
        indices[cfg.seed + k] = k
    factory = RelabelFactory(agents, str(out), cfg.steered_share, len(cfg.tasks), indices)
    t0 = time.perf_counter()
    done = run_episodes(jobs, factory, workers=cfg.workers)
    if progress:
        from tqdm import tqdm

        done = tqdm(done, total=len(jobs), desc="relabel", unit="ep")
    for _ in done:
        pass
    return {"out": str(out), "new_episodes": len(jobs), "seconds": round(time.perf_counter() - t0, 1),
            **summarize(out)}


def summarize(out: str | Path) -> dict:
    """Episodes, decisions and success rate by execution mode in a relabelled folder."""
    by_mode: dict[str, list[bool]] = {}
    decisions = 0
    for f in sorted(Path(out).glob("decisions_*.npz")):
        with np.load(f) as z:
            meta = json.loads(str(z["meta"]))
            decisions += len(z["executed"])
        by_mode.setdefault(meta["mode"], []).append(bool(meta["success"]))
    return {"episodes": sum(len(v) for v in by_mode.values()), "decisions": decisions,
            "success": {m: round(float(np.mean(v)), 3) for m, v in by_mode.items()}}
