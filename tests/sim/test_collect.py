"""`vla sim collect / replay / tasks`: dataset collection end to end, resume, kill safety, parallel runner."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sim.env import EnvConfig
from sim.experts import ExpertFactory
from sim.tasks import TASKS
from sim.variations import VARIATIONS
from vla_app.cli import main
from vla_app.runner import EpisodeJob, run_episodes
from vla_runtime.dataset import Episode, EpisodeDataset, read_dataset_header, write_dataset_header, write_episode
from vla_runtime.types import ActionSpec, CameraInfo

pytestmark = pytest.mark.sim

CLI = [sys.executable, "-m", "vla_app.cli"]
SPEC = ActionSpec()


def collect_args(out: Path, episodes: int, *extra: str, workers: int = 1) -> list[str]:
    return ["sim", "collect", "--out", str(out), "--episodes", str(episodes), "--workers", str(workers),
            "--image-size", "32", "--json", "--no-progress", *extra]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own refusals (a choice outside the registry) exit 2 too
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_same_episode(a, b) -> None:
    assert a.meta == b.meta
    assert a.images.keys() == b.images.keys()
    for cam in a.images:
        np.testing.assert_array_equal(a.images[cam], b.images[cam], err_msg=cam)
    for name in ("proprio", "actions", "rewards", "successes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def episode_files(root: Path) -> list[Path]:
    folder = root / "episodes"
    return sorted(folder.glob("episode_*.npz")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def fresh4(tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted 4-episode collection (all tasks, 32x32) and its stdout."""
    root = tmp_path_factory.mktemp("fresh4") / "ds"
    rc, out, err = run_main(collect_args(root, 4))
    assert rc == 0, err
    return root, out


# --------------------------------------------------------------------------- collect


def test_collect_writes_four_readable_episodes_and_a_json_summary(fresh4) -> None:
    root, stdout = fresh4
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout  # --json: nothing but the summary on stdout
    summary = json.loads(lines[-1])
    assert {"episodes", "seconds", "success_rate"} <= summary.keys()
    assert summary["episodes"] == 4 and summary["new_episodes"] == 4 and summary["seconds"] > 0
    assert summary["success_rate"] == {t: 1.0 for t in TASKS}  # the expert solves one episode of each

    header = read_dataset_header(root)["collection"]
    assert header["tasks"] == list(TASKS) and header["image_size"] == [32, 32] and header["seed"] == 0
    ds = EpisodeDataset(root)
    assert len(ds) == 4
    for k in range(4):
        ep = ds.load_episode(k)
        m = ep.meta
        assert (m["task"], m["seed"], m["variation"], m["arm"], m["quality"]) == (TASKS[k], k, "id", "panda", "expert")
        t = ep.length
        assert ep.images["static"].shape == (t + 1, 32, 32, 3) and ep.images["static"].dtype == np.uint8
        assert ep.images["static"][0].std() > 0  # real renders, not the blank privileged-state frames
        assert ep.depth == {}  # depth is opt-in
        assert ep.proprio.shape == (t + 1, 12) and ep.actions.shape == (t, 7)
        assert np.all(ep.actions >= SPEC.low_array()) and np.all(ep.actions <= SPEC.high_array())
        assert m["success"] is True and bool(ep.successes[-1]) and not ep.successes[:-1].any()
        assert ep.rewards.tolist() == ep.successes.astype(np.float32).tolist()
        assert m["scene"]["task"] == TASKS[k] and m["instruction"] == m["scene"]["instruction"]
        assert set(m["cameras"]) == {"static"}


def test_cli_collect_stdout_is_one_json_line(tmp_path: Path, capsys) -> None:
    rc = main(collect_args(tmp_path / "ds", 1, "--task", "pick_lift"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert len(lines) == 1
    assert summary["episodes"] == 1 and summary["success_rate"] == {"pick_lift": 1.0}
    assert len(EpisodeDataset(tmp_path / "ds")) == 1


def test_resume_adds_only_missing_episodes_identical_to_a_fresh_run(tmp_path: Path, fresh4) -> None:
    fresh_root, _ = fresh4
    root = tmp_path / "ds"
    rc, out, err = run_main(collect_args(root, 2))
    assert rc == 0, err
    assert json.loads(out)["new_episodes"] == 2
    before = {p.name: p.stat().st_mtime_ns for p in episode_files(root)}
    rc, out, err = run_main(collect_args(root, 4))
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["episodes"] == 4 and summary["new_episodes"] == 2
    after = {p.name: p.stat().st_mtime_ns for p in episode_files(root)}
    assert all(after[name] == t for name, t in before.items())  # the first two were not rewritten
    resumed, fresh = EpisodeDataset(root), EpisodeDataset(fresh_root)
    assert len(resumed) == len(fresh) == 4
    for k in (2, 3):
        assert_same_episode(resumed.load_episode(k), fresh.load_episode(k))
    # rerunning a complete collection is a no-op
    rc, out, _ = run_main(collect_args(root, 4))
    assert rc == 0 and json.loads(out)["new_episodes"] == 0


@pytest.mark.parametrize(
    ("extra", "key"),
    [(("--seed", "1"), "seed"), (("--quality", "noisy"), "quality"), (("--task", "stack"), "tasks")],
)
def test_changed_parameters_on_an_existing_folder_are_refused(tmp_path: Path, extra: tuple, key: str) -> None:
    root = tmp_path / "ds"
    assert run_main(collect_args(root, 1, "--task", "pick_lift"))[0] == 0
    header_before = (root / "dataset.json").read_text()
    rc, out, err = run_main(collect_args(root, 2, "--task", "pick_lift", *extra))
    assert rc == 2 and out == ""
    assert "vla: error:" in err and f"{key}: existing=" in err, err
    assert (root / "dataset.json").read_text() == header_before
    assert len(episode_files(root)) == 1  # nothing was added


@pytest.mark.parametrize(
    ("extra", "match"),
    [(("--task", "juggle"), "juggle"), (("--variation", "moon"), "moon"), (("--arm", "ur5"), "ur5"),
     (("--image-size", "8"), "image_size")],
)
def test_bad_collect_parameters_fail_before_touching_the_disk(tmp_path: Path, extra: tuple, match: str) -> None:
    root = tmp_path / "ds"
    rc, _, err = run_main(collect_args(root, 2, *extra))
    assert rc == 2 and match in err, err
    assert not root.exists()


@pytest.mark.parametrize("argv", [["--episodes", "0"], ["--image-size", "32x"], ["--workers", "0"]])
def test_collect_argument_parsing_rejects_bad_values(tmp_path: Path, argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "collect", "--out", str(tmp_path / "ds"), *argv])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_killed_collection_leaves_only_complete_episodes_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    cmd = [*CLI, *collect_args(root, 10, "--task", "pick_lift,push_to", workers=2)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not episode_files(root):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no episode appeared"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # let the killed workers' file handles go
    survivors = episode_files(root)
    assert 1 <= len(survivors) < 10, "the run finished before the kill: the test proves nothing"
    ds = EpisodeDataset(root)
    assert len(ds) == len(survivors)
    for k in range(len(ds)):
        ep = ds.load_episode(k)  # every file with a final name is complete
        assert ep.length >= 1 and ep.images["static"].shape[0] == ep.length + 1
        index = int(Path(ds.episode_path(k)).stem.split("_")[1])
        assert ep.meta["seed"] == index and ep.meta["task"] == ("pick_lift", "push_to")[index % 2]

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # the whole stdout is the JSON summary (no C-level prints)
    assert summary["episodes"] == 10 and summary["new_episodes"] == 10 - len(survivors)
    assert [p.name for p in episode_files(root)] == [f"episode_{k:06d}.npz" for k in range(10)]
    assert not [p.name for p in (root / "episodes").iterdir() if p.name.startswith(".tmp")]
    ds = EpisodeDataset(root)
    assert [ds.meta(k)["seed"] for k in range(10)] == list(range(10))


# --------------------------------------------------------------------------- parallel runner


def test_parallel_runner_matches_serial_runner() -> None:
    jobs = [EpisodeJob(index=k, seed=200 + k, env=EnvConfig(task=("pick_lift", "push_to")[k % 2], image_size=(32, 32)))
            for k in range(4)]
    factory = ExpertFactory("noisy")  # noise draws make any seeding mistake in the workers visible

    def key(s):
        return s.index, s.seed, s.task, s.success, s.steps, s.instruction

    serial = sorted(key(s) for s in run_episodes(jobs, factory, workers=1))
    parallel = sorted(key(s) for s in run_episodes(jobs, factory, workers=2))
    assert serial == parallel
    assert [s[0] for s in serial] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="workers"):
        list(run_episodes(jobs, factory, workers=0))


# --------------------------------------------------------------------------- replay and tasks


def _still_episode(t: int, size: int) -> Episode:
    """An episode whose camera image never changes: only the overlay tells its frames apart."""
    cam = CameraInfo(width=size, height=size, fx=50.0, fy=50.0, cx=size / 2, cy=size / 2, pose_base_cam=np.eye(4))
    img = np.full((t + 1, size, size, 3), 90, np.uint8)
    return Episode(
        images={"static": img}, proprio=np.zeros((t + 1, 12), np.float32), actions=np.zeros((t, 7), np.float32),
        rewards=np.zeros(t, np.float32), successes=np.arange(t) == t - 1,
        meta={"task": "stack", "variation": "embodiment", "arm": "kuka", "seed": 0, "quality": "expert",
              "instruction": "stack the red cube on the blue cylinder", "success": True,
              "cameras": {"static": cam.to_dict()}, "action_spec": SPEC.to_dict()},
    )


def _gif_frames(path: Path) -> tuple[int, list[int]]:
    with Image.open(path) as im:
        assert im.format == "GIF"
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        return im.n_frames, durations


def test_replay_writes_one_gif_frame_per_observation(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_dataset_header(root, {"synthetic": True})
    write_episode(root, 0, _still_episode(t=12, size=128))
    gif = tmp_path / "ep.gif"
    rc, out, err = run_main(["sim", "replay", str(root), "--episode", "0", "--gif", str(gif), "--fps", "20"])
    assert rc == 0, err
    assert out.strip() == str(gif)
    n_frames, durations = _gif_frames(gif)
    assert n_frames == 12 + 1
    assert durations == [50] * 13
    with Image.open(gif) as im:
        assert im.width == 128 * 3 and im.height >= 128 * 3  # upscaled to >= 320 px for the caption


def test_replay_of_collected_episodes_keeps_timing(fresh4, tmp_path: Path) -> None:
    root, _ = fresh4
    ds = EpisodeDataset(root)
    for k in range(4):
        gif = tmp_path / f"ep{k}.gif"
        assert run_main(["sim", "replay", str(root), "--episode", str(k), "--gif", str(gif)])[0] == 0
        n_frames, durations = _gif_frames(gif)
        assert sum(durations) == 100 * (ds.meta(k)["length"] + 1)
        assert 2 <= n_frames <= ds.meta(k)["length"] + 1
        with Image.open(gif) as im:
            assert im.width == 32 * 10 and im.height >= 32 * 10  # upscaled to >= 320 px, overlay band on top


def test_replay_of_small_images_has_one_frame_per_observation(fresh4, tmp_path: Path) -> None:
    root, _ = fresh4
    ds = EpisodeDataset(root)
    for k in range(4):
        gif = tmp_path / f"ep{k}.gif"
        assert run_main(["sim", "replay", str(root), "--episode", str(k), "--gif", str(gif)])[0] == 0
        assert _gif_frames(gif)[0] == ds.meta(k)["length"] + 1, k


@pytest.mark.parametrize("episode", ["4", "-1"])
def test_replay_out_of_range_episode_is_a_clean_error(fresh4, tmp_path: Path, episode: str) -> None:
    root, _ = fresh4
    gif = tmp_path / "out.gif"
    rc, out, err = run_main(["sim", "replay", str(root), "--episode", episode, "--gif", str(gif)])
    assert rc == 2 and out == ""
    assert f"episode {episode} out of range" in err and "4 episodes" in err, err
    assert not gif.exists()


def test_replay_of_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    rc, _, err = run_main(["sim", "replay", str(tmp_path), "--gif", str(tmp_path / "x.gif")])
    assert rc == 2 and "no dataset header" in err


def test_sim_tasks_json_lists_tasks_variations_and_arms(capsys) -> None:
    assert main(["sim", "tasks", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tasks"] == list(TASKS) and len(data["tasks"]) >= 4
    assert data["variations"][0] == "id" and len(data["variations"]) >= 5
    assert set(data["variations"]) == set(VARIATIONS)
    assert {"panda", "kuka"} <= set(data["arms"])
    assert main(["sim", "tasks"]) == 0
    text = capsys.readouterr().out
    assert all(t in text for t in TASKS) and all(v in text for v in VARIATIONS)


# --------------------------------------------------------------------------- DART collection


def test_dart_episodes_record_the_clean_label_and_which_steps_were_relabelled(tmp_path: Path) -> None:
    from vla_app.runner import run_episode

    made = []

    def factory(seed: int):
        agent = ExpertFactory("dart")(seed)
        made.append(agent)
        original = agent.act

        def act(env):  # keep what was executed next to what will be recorded
            a = original(env)
            agent.pairs.append((a.copy(), agent.label.copy()))
            return a

        agent.pairs = []
        agent.act = act
        return agent

    write_dataset_header(tmp_path, {"tasks": list(TASKS), "quality": "dart"})
    successes = perturbed = 0
    for k, task in enumerate(TASKS * 2):
        job = EpisodeJob(index=k, seed=400 + k, env=EnvConfig(task=task, image_size=(32, 32)), meta={"quality": "dart"})
        successes += run_episode(job, factory, record_root=str(tmp_path)).success
        pairs = made[-1].pairs
        differs = [i for i, (a, lab) in enumerate(pairs) if not np.array_equal(a, lab)]
        perturbed += bool(differs)
        for a, lab in pairs:  # perturbations move the arm only: rotation and gripper are the expert's
            np.testing.assert_array_equal(a[3:], lab[3:])
            assert np.abs(a[:3] - lab[:3]).max() <= 0.06 + 1e-6
        ep = EpisodeDataset(tmp_path).load_episode(k)
        assert ep.meta["relabelled_steps"] == differs
        np.testing.assert_array_equal(ep.actions, np.stack([lab for _, lab in pairs]))
    assert perturbed >= 6  # short pick_lift episodes may escape every burst (p=0.15 per moving step)
    assert successes >= 6  # the expert still recovers from its perturbations
