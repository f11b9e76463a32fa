"""`vla eval --executor ray` on a real local Ray instance (`ray.init(num_cpus=2)`): the same seeds give the
same episodes as the local executor; a simulator worker killed mid-episode is retried and its episode counted
once; a killed inference server is restarted and the run goes on; an unreachable cluster is a clear error;
and the result store resumes a run without re-running what finished."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed")

from sim.env import EnvConfig  # noqa: E402
from vla_app.agents import AgentFactory, unsteered  # noqa: E402
from vla_app.evaluate import EvalConfig, evaluate  # noqa: E402
from vla_app.ray_eval import RayConfig, RayEvaluation  # noqa: E402
from vla_app.runner import EpisodeJob, run_episodes  # noqa: E402
from vla_app.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]
POLICY = str(ROOT / "models" / "policy")
TASK = "push_to"  # the shortest episodes
SEEDS = (10000, 10001, 10002)
KILL_AFTER_S = 2.0  # into an episode (~5-15 s here) before a worker or the server is killed


@pytest.fixture(scope="module")
def factory() -> AgentFactory:
    return AgentFactory(POLICY, unsteered(2))


@pytest.fixture(scope="module")
def jobs(factory) -> list[EpisodeJob]:
    env = EnvConfig(task=TASK, depth=False, **factory.env_options())
    return [EpisodeJob(index=k, seed=seed, env=env) for k, seed in enumerate(SEEDS)]


def episode(s) -> tuple:
    """What must not change between executors: outcome, length and the executed chunk-switch jumps."""
    return s.seed, s.success, s.steps, s.stats["max_boundary_jump"]


@pytest.fixture(scope="module")
def local(factory, jobs) -> list[tuple]:
    return sorted(episode(s) for s in run_episodes(jobs, factory, workers=2))


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def run_ray(factory, jobs, meanwhile=None, **options) -> list:
    """Summaries of a Ray run; `meanwhile(run)` runs in a thread beside it (the fault injector)."""
    with RayEvaluation(factory, RayConfig(workers=2, **options)) as run:
        if meanwhile is not None:
            threading.Thread(target=meanwhile, args=(run,), daemon=True).start()
        return list(run.episodes(jobs))


def test_ray_gives_the_local_executors_episodes_on_the_same_seeds(cluster, factory, jobs, local) -> None:
    with RayEvaluation(factory, RayConfig(workers=2, max_batch=1)) as run:
        summaries = list(run.episodes(jobs))
        served = ray.get(run.server.served.remote())
    assert sorted(episode(s) for s in summaries) == local  # bit for bit: one decision per server call
    assert served and set(served) == {1} and sum(served) == sum(-(-s.steps // 4) for s in summaries)


def test_a_simulator_worker_killed_mid_episode_is_retried_and_counted_once(cluster, factory, jobs, local) -> None:
    import psutil

    killed = []

    def kill_a_worker(run) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for p in psutil.process_iter(["cmdline"]):
                if "ray::run_episode" in " ".join(p.info["cmdline"] or []) and \
                        time.time() - p.create_time() > KILL_AFTER_S:
                    p.kill()
                    killed.append(p.pid)
                    return
            time.sleep(0.1)

    summaries = run_ray(factory, jobs, meanwhile=kill_a_worker, max_batch=1)
    assert killed, "no simulator worker was found to kill"
    assert sorted(s.seed for s in summaries) == list(SEEDS)  # each episode once, none lost
    assert sorted(episode(s) for s in summaries) == local  # the retried episode ran from its start


def test_a_killed_inference_server_restarts_and_the_run_goes_on(cluster, factory, jobs, local) -> None:
    restarts = []

    def kill_the_server(run) -> None:
        time.sleep(KILL_AFTER_S + 5.0)  # after its model has loaded and decisions flow
        ray.kill(run.server, no_restart=False)
        restarts.append(time.monotonic())

    summaries = run_ray(factory, jobs, meanwhile=kill_the_server, max_batch=1)
    assert restarts
    assert sorted(episode(s) for s in summaries) == local  # stateless server: retried calls answer the same


def test_batched_decisions_give_the_same_outcomes(cluster, factory, jobs, local) -> None:
    summaries = run_ray(factory, jobs, max_batch=4, max_wait_ms=20.0)
    assert sorted(episode(s)[:2] for s in summaries) == [x[:2] for x in local]


def test_an_unreachable_cluster_is_a_clear_error_within_seconds(factory) -> None:
    t = time.monotonic()
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9"), \
            RayEvaluation(factory, RayConfig(address="127.0.0.1:9", connect_timeout_s=2.0)):
        pass
    assert time.monotonic() - t < 10.0


def test_the_store_resumes_a_run_on_ray_and_refuses_other_models(cluster, tmp_path) -> None:
    store = tmp_path / "results.jsonl"
    cfg = dict(policy=POLICY, tasks=(TASK,), workers=2, seed=SEEDS[0], store=str(store), executor="ray",
               max_batch=2)
    first = evaluate(EvalConfig(episodes=1, **cfg), progress=False)
    assert len(ResultStore(store)) == 1 and first[0]["episodes"] == 1
    lines = store.read_text().splitlines()
    rows = evaluate(EvalConfig(episodes=2, **cfg), progress=False)  # resumes: one more episode, not two
    assert store.read_text().splitlines()[0] == lines[0] and len(ResultStore(store)) == 2
    assert rows[0]["episodes"] == 2 and rows[0]["outcomes"][0] == first[0]["outcomes"][0]
    record = ResultStore(store).records()[1]
    assert record["provenance"]["executor"] == "ray" and record["provenance"]["models"]["policy"]
    other = tmp_path / "other_policy"  # a copy with one weight file changed: another model
    other.mkdir()
    for f in Path(POLICY).iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")
    with pytest.raises(ValueError, match="other models"):
        evaluate(EvalConfig(episodes=2, **{**cfg, "policy": str(other)}), progress=False)
