"""Collection over several arms and with training-time randomisation: the episode -> (task, arm) schedule,
validation, the header (old single-arm folders still resume) and the CLI flags."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from sim.tasks import TASKS
from vla_app.cli import main
from vla_app.collect import CollectConfig, collect
from vla_runtime.dataset import EpisodeDataset, read_dataset_header, write_dataset_header

pytestmark = pytest.mark.sim


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def test_every_task_meets_every_arm_evenly(tmp_path: Path) -> None:
    cfg = CollectConfig(out=tmp_path, tasks=("stack", "push_to", "pick_lift"), arms=("panda", "xarm"), episodes=12)
    pairs = [(j.env.task, j.env.arm, j.seed) for j in cfg.jobs()]
    assert pairs[:6] == [("stack", "panda", 0), ("push_to", "panda", 1), ("pick_lift", "panda", 2),
                         ("stack", "xarm", 3), ("push_to", "xarm", 4), ("pick_lift", "xarm", 5)]
    assert pairs[6:] == [(t, a, s + 6) for t, a, s in pairs[:6]]
    assert all(j.env.randomize is False and "randomize" not in j.meta for j in cfg.jobs())


@pytest.mark.parametrize(("kw", "match"), [
    ({"arms": ()}, "arms must be a non-empty"),
    ({"arms": "panda"}, "'panda'"),
    ({"arms": ("panda", "ur5")}, "'ur5'"),
    ({"arms": ("xarm", "xarm")}, "repeat"),
    ({"randomize": True, "variation": "camera"}, "'camera'"),
    ({"arms": ("xarm",), "variation": "embodiment"}, "'xarm'"),
])
def test_bad_arms_and_randomize_are_refused(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CollectConfig(out=tmp_path, **kw)


def test_header_records_arms_and_randomize_and_old_single_arm_folders_resume(tmp_path: Path) -> None:
    cfg = CollectConfig(out=tmp_path / "new", tasks=("pick_lift",), arms=("xarm", "panda"), randomize=True,
                        episodes=1, image_size=(32, 32))
    assert cfg.header()["arms"] == ["xarm", "panda"] and cfg.header()["randomize"] is True
    assert cfg.legacy_header() is None
    old = CollectConfig(out=tmp_path / "old", tasks=("pick_lift",), episodes=1, image_size=(32, 32))
    legacy = old.legacy_header()
    assert legacy["arm"] == "panda" and "arms" not in legacy and "randomize" not in legacy
    write_dataset_header(old.out, legacy)  # a folder written before arms/randomize existed
    assert collect(old, progress=False)["new_episodes"] == 1
    assert read_dataset_header(old.out)["collection"] == json.loads(json.dumps(legacy))
    # a legacy folder does not silently take a changed collection
    with pytest.raises(ValueError, match="arms|randomize"):
        collect(CollectConfig(out=old.out, tasks=("pick_lift",), arms=("xarm",), episodes=2, image_size=(32, 32)),
                progress=False)


def test_cli_collects_two_arms_with_randomisation(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    rc, out, err = run_main(["sim", "collect", "--out", str(root), "--episodes", "2", "--workers", "1",
                             "--image-size", "32", "--task", "pick_lift", "--arm", "panda,xarm", "--randomize",
                             "--json", "--no-progress"])
    assert rc == 0, err
    assert json.loads(out)["success_rate"] == {"pick_lift": 1.0}
    header = read_dataset_header(root)["collection"]
    assert header["arms"] == ["panda", "xarm"] and header["randomize"] is True
    ds = EpisodeDataset(root)
    metas = [ds.meta(k) for k in range(len(ds))]
    assert [m["arm"] for m in metas] == ["panda", "xarm"]
    assert all(m["randomize"] is True and "appearance" in m["scene"] for m in metas)
    assert all(ds.load_episode(k).proprio.shape[1] == 12 for k in range(2))


@pytest.mark.parametrize(("extra", "match"), [(("--arm", "panda,ur5"), "ur5"),
                                              (("--randomize", "--variation", "appearance"), "appearance")])
def test_cli_refuses_bad_arm_lists_and_randomised_evaluation_splits(tmp_path: Path, extra: tuple,
                                                                    match: str) -> None:
    root = tmp_path / "ds"
    rc, _, err = run_main(["sim", "collect", "--out", str(root), "--episodes", "1", "--image-size", "32",
                           "--no-progress", *extra])
    assert rc == 2 and match in err, err
    assert not root.exists()


def test_tasks_listing_names_the_xarm(capsys) -> None:
    assert main(["sim", "tasks", "--json"]) == 0
    assert {"panda", "kuka", "xarm"} <= set(json.loads(capsys.readouterr().out)["arms"])
    assert len(TASKS) == 4
