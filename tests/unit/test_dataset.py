"""On-disk episode format: round trips, random access, atomicity and validation."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vla_runtime.dataset import (
    Episode,
    EpisodeDataset,
    clean_partial,
    episode_path,
    existing_episodes,
    read_dataset_header,
    write_dataset_header,
    write_episode,
)
from vla_runtime.types import ActionSpec, CameraInfo

pytestmark = pytest.mark.unit

H, W, P = 16, 16, 12
SPEC = ActionSpec()
COLLECTION = {"tasks": ["pick"], "episodes_per_task": 4, "seed": 0}


def make_episode(t: int = 5, seed: int = 0, task: str = "pick", success: bool = True, depth: bool = True) -> Episode:
    """Random-noise episode: noise images catch any lossy step in the format."""
    rng = np.random.default_rng(seed)
    cams = ("front", "wrist")
    cam_info = CameraInfo(width=W, height=H, fx=20.0, fy=20.0, cx=8.0, cy=8.0, pose_base_cam=np.eye(4))
    actions = rng.uniform(-0.03, 0.03, size=(t, SPEC.dim)).astype(np.float32)
    actions[:, SPEC.gripper_index] = rng.integers(0, 2, size=t).astype(np.float32)
    return Episode(
        images={c: rng.integers(0, 256, size=(t + 1, H, W, 3), dtype=np.uint8) for c in cams},
        depth={c: rng.uniform(0.1, 3.0, size=(t + 1, H, W)).astype(np.float32) for c in cams} if depth else {},
        proprio=rng.normal(size=(t + 1, P)).astype(np.float32),
        actions=actions,
        rewards=rng.normal(size=t).astype(np.float32),
        successes=np.arange(t) == t - 1,
        meta={
            "task": task,
            "variation": seed % 2,
            "quality": "expert",
            "seed": seed,
            "instruction": f"{task} the red cube",
            "arm": "franka",
            "success": success,
            "cameras": {c: cam_info.to_dict() for c in cams},
            "action_spec": SPEC.to_dict(),
        },
    )


def make_dataset(root: Path, episodes: list[Episode]) -> Path:
    write_dataset_header(root, COLLECTION)
    for i, ep in enumerate(episodes):
        write_episode(root, i, ep)
    return root


def assert_episodes_equal(a: Episode, b: Episode) -> None:
    assert a.meta == b.meta
    assert a.images.keys() == b.images.keys() and a.depth.keys() == b.depth.keys()
    for cam in a.images:
        assert b.images[cam].dtype == np.uint8
        np.testing.assert_array_equal(a.images[cam], b.images[cam])
    for cam in a.depth:
        assert b.depth[cam].dtype == np.float32
        np.testing.assert_array_equal(a.depth[cam], b.depth[cam])
    for name in ("proprio", "actions", "rewards", "successes"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    episodes = [make_episode(t=5, seed=0), make_episode(t=3, seed=1, depth=False)]
    ds = EpisodeDataset(make_dataset(tmp_path, episodes))
    assert len(ds) == 2 and ds.num_steps == 8
    for k, ep in enumerate(episodes):
        loaded = ds.load_episode(k)
        assert loaded.length == ep.length
        assert_episodes_equal(ep, loaded)
    assert ds.meta(0)["length"] == 5 and ds.meta(0)["instruction"] == "pick the red cube"
    assert read_dataset_header(tmp_path)["collection"] == COLLECTION


def test_episode_file_stores_one_deflated_member_per_frame(tmp_path: Path) -> None:
    path = write_episode(tmp_path, 7, make_episode(t=5))
    assert path.name == "episode_000007.npz"
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for name in ("meta.json", "proprio.npy", "actions.npy", "rewards.npy", "successes.npy"):
        assert name in infos
    frames = sorted(n for n in infos if n.startswith("images/front/"))
    assert frames == [f"images/front/{t:06d}.npy" for t in range(6)]
    assert "depth/wrist/000005.npy" in infos
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos.values())


def test_get_step_chunk_padding_and_mask_at_episode_end(tmp_path: Path) -> None:
    episodes = [make_episode(t=5, seed=0), make_episode(t=4, seed=1)]
    ds = EpisodeDataset(make_dataset(tmp_path, episodes))
    assert ds.step_index.shape == (9, 2)
    np.testing.assert_array_equal(ds.step_index[5:7], [[1, 0], [1, 1]])

    ep = episodes[0]
    step = ds.get_step(3, chunk_length=4, with_depth=True)  # episode 0, t=3: 2 real rows, 2 padded
    assert (step["episode"], step["t"]) == (0, 3)
    np.testing.assert_array_equal(step["images"]["front"], ep.images["front"][3])
    np.testing.assert_array_equal(step["depth"]["wrist"], ep.depth["wrist"][3])
    np.testing.assert_array_equal(step["proprio"], ep.proprio[3])
    assert step["instruction"] == "pick the red cube"
    assert step["actions"].shape == (4, SPEC.dim) and step["actions"].dtype == np.float32
    np.testing.assert_array_equal(step["action_mask"], [True, True, False, False])
    np.testing.assert_array_equal(step["actions"][:2], ep.actions[3:5])
    g = SPEC.gripper_index
    pad = step["actions"][2:]
    np.testing.assert_array_equal(pad[:, g], [ep.actions[-1, g]] * 2)
    np.testing.assert_array_equal(np.delete(pad, g, axis=1), 0.0)

    mid = ds.get_step(5, chunk_length=3, cameras=["wrist"])  # episode 1, t=0: all rows real
    assert list(mid["images"]) == ["wrist"] and mid["depth"] == {}
    assert mid["action_mask"].all()
    np.testing.assert_array_equal(mid["actions"], episodes[1].actions[0:3])
    assert ds.get_step(-1)["actions"].shape == (SPEC.chunk_length, SPEC.dim)  # default H from action_spec
    with pytest.raises(IndexError):
        ds.get_step(9)
    with pytest.raises(KeyError, match="nope"):
        ds.get_step(0, cameras=["nope"])


def test_leftover_tmp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_episode()])
    episodes_dir = tmp_path / "episodes"
    (episodes_dir / ".tmp-episode_000001-999-dead.npz").write_bytes(b"half a zip")
    (episodes_dir / ".tmp-episode_000002-999-dead.npz").write_bytes(b"")
    assert existing_episodes(tmp_path) == {0}
    assert len(EpisodeDataset(tmp_path)) == 1

    write_episode(tmp_path, 1, make_episode(seed=1))  # rewriting index 1 removes its stale temp file
    assert not (episodes_dir / ".tmp-episode_000001-999-dead.npz").exists()
    assert existing_episodes(tmp_path) == {0, 1}
    assert clean_partial(tmp_path) == 1
    assert sorted(p.name for p in episodes_dir.iterdir()) == ["episode_000000.npz", "episode_000001.npz"]


def test_write_episode_refuses_to_clobber(tmp_path: Path) -> None:
    write_episode(tmp_path, 0, make_episode(seed=0))
    with pytest.raises(FileExistsError, match="episode_000000"):
        write_episode(tmp_path, 0, make_episode(seed=1))
    write_episode(tmp_path, 0, make_episode(seed=1), overwrite=True)
    write_dataset_header(tmp_path, COLLECTION)
    assert EpisodeDataset(tmp_path).meta(0)["seed"] == 1


def test_truncated_episode_names_the_file(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_episode(seed=0), make_episode(seed=1)])
    path = episode_path(tmp_path, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="episode_000001.npz"):
        EpisodeDataset(tmp_path)


def test_corrupt_frame_names_file_and_member(tmp_path: Path) -> None:
    """A flipped byte inside a frame is caught by the zip CRC when that step is read."""
    make_dataset(tmp_path, [make_episode()])
    ds = EpisodeDataset(tmp_path)
    path = episode_path(tmp_path, 0)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("images/front/000002.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"episode_000000\.npz.*images/front/000002\.npy"):
        ds.get_step(2)


def test_header_mismatch_names_differing_key(tmp_path: Path) -> None:
    write_dataset_header(tmp_path, COLLECTION)
    write_dataset_header(tmp_path, dict(COLLECTION))  # identical: no-op
    with pytest.raises(ValueError, match="episodes_per_task") as err:
        write_dataset_header(tmp_path, {**COLLECTION, "episodes_per_task": 8})
    assert "tasks" not in str(err.value)
    assert read_dataset_header(tmp_path)["collection"] == COLLECTION
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_missing_or_foreign_header(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        EpisodeDataset(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format": "something.else", "format_version": 1, "collection": {}}')
    with pytest.raises(ValueError, match="dataset.json"):
        EpisodeDataset(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format": "vla_steering.episodes", "format_version": 2, "collection": {}}')
    with pytest.raises(ValueError, match="format_version"):
        EpisodeDataset(tmp_path)


def test_episode_validation_names_the_field() -> None:
    ep = make_episode()
    fields = {k: getattr(ep, k) for k in ("images", "depth", "proprio", "actions", "rewards", "successes", "meta")}

    bad = fields["actions"].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"actions must be finite, got nan at index \[2, 1\]"):
        Episode(**{**fields, "actions": bad})
    with pytest.raises(ValueError, match=r"proprio must have T\+1=6 rows .*\(5, 12\)"):
        Episode(**{**fields, "proprio": fields["proprio"][:5]})
    with pytest.raises(ValueError, match=r"rewards must have shape \(5,\).*\(4,\)"):
        Episode(**{**fields, "rewards": fields["rewards"][:4]})
    with pytest.raises(ValueError, match=r"images\['front'\] must be \(T\+1, H, W, 3\) uint8, got float32"):
        Episode(**{**fields, "images": {**fields["images"], "front": fields["images"]["front"].astype(np.float32)}})
    with pytest.raises(ValueError, match=r"missing required keys \['instruction'\]"):
        Episode(**{**fields, "meta": {k: v for k, v in fields["meta"].items() if k != "instruction"}})
    with pytest.raises(TypeError, match=r"meta\['seed'\] must be an int, got '3'"):
        Episode(**{**fields, "meta": {**fields["meta"], "seed": "3"}})
    with pytest.raises(ValueError, match=r"depth\['wrist'\] shape \(6, 8, 8\)"):
        Episode(**{**fields, "depth": {"wrist": np.zeros((6, 8, 8), np.float32)}})


def test_multiple_roots_concatenate_and_filter(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", [make_episode(t=5, seed=0), make_episode(t=2, seed=1, success=False)])
    b = make_dataset(tmp_path / "b", [make_episode(t=3, seed=2, task="stack", depth=False)])
    ds = EpisodeDataset([a, str(b)])
    assert len(ds) == 3 and ds.num_steps == 10
    assert ds.meta(2)["task"] == "stack" and ds.episode_path(2) == episode_path(b, 0)
    step = ds.get_step(7)
    assert (step["episode"], step["t"]) == (2, 0) and step["instruction"] == "stack the red cube"
    assert ds.filter(task="pick") == [0, 1]
    assert ds.filter(success=False) == [1]
    assert ds.filter(task="pick", variation=0) == [0]
    assert ds.filter(task=["pick", "stack"], quality="expert") == [0, 1, 2]
    with pytest.raises(ValueError, match="listed twice"):
        EpisodeDataset([a, a])


def test_pickled_dataset_reads_steps(tmp_path: Path) -> None:
    ds = EpisodeDataset(make_dataset(tmp_path, [make_episode()]))
    first = ds.get_step(1)  # populates the handle cache, which must not be pickled
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.get_step(1)["images"]["front"], first["images"]["front"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_get_step_after_fork(tmp_path: Path) -> None:
    episodes = [make_episode(seed=0), make_episode(seed=1)]
    ds = EpisodeDataset(make_dataset(tmp_path, episodes))
    ds.get_step(0)  # the parent holds an open handle before forking
    pid = os.fork()
    if pid == 0:  # child: must reopen instead of sharing the parent's file offset
        code = 1
        try:
            ok = all(
                np.array_equal(ds.get_step(i)["images"]["front"], episodes[i // 5].images["front"][i % 5])
                for i in range(10)
            )
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(ds.get_step(6)["images"]["wrist"], episodes[1].images["wrist"][1])
