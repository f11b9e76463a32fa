"""Commands never lose a user's data, and refuse bad arguments and files before the work, not after it.

Each test here failed before the fix it guards (issue: "Never lose a user's data, fail before the work").
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from vla_app import cli
from vla_runtime.checkpoint import metrics_log
from vla_runtime.dataset import EpisodeDataset, episode_path
from vla_runtime.io import check_output_dir, check_output_file, manifest_is
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.train import TrainConfig, Trainer, train_policy
from vla_runtime.training import Run, state_dir

pytestmark = pytest.mark.unit

EPISODE_METAS = [{"task": "pick_lift", "quality": "expert", "seed": i, "instruction": f"lift {i % 2}",
                  "scene": {"objects": [{"xy": [0.4 + 0.05 * i, 0.1]}], "base_index": None}} for i in range(6)]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return VLAPolicy(TINY, uniform_normalizer()).eval().save_pretrained(tmp_path / "policy")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's refusals (a choice outside the registry) exit 2 as well
        code = exc.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- the output-folder rule

def test_check_output_dir_allows_new_empty_and_previous_outputs_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    is_prev = manifest_is("export.json", "format", "kind-a")
    assert check_output_dir(tmp_path / "new", is_prev, "kind-a output") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", is_prev, "kind-a output")
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "export.json").write_text(json.dumps({"format": "kind-a"}))
    check_output_dir(prev, is_prev, "kind-a output")
    other = tmp_path / "other"
    other.mkdir()
    (other / "export.json").write_text(json.dumps({"format": "kind-b"}))
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a kind-a output.*--overwrite"):
        check_output_dir(other, is_prev, "kind-a output")
    check_output_dir(other, is_prev, "kind-a output", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        check_output_dir(tmp_path / "file", is_prev, "kind-a output", overwrite=True)


def test_check_output_dir_refuses_inputs_and_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    (work / "models" / "policy").mkdir(parents=True)
    monkeypatch.chdir(work)
    never = manifest_is("x.json", "k", "v")
    with pytest.raises(ValueError, match="is the input"):
        check_output_dir("models/policy", never, "export", inputs=["models/policy"], overwrite=True)
    with pytest.raises(ValueError, match="contains the input"):
        check_output_dir("models", never, "export", inputs=["models/policy"], overwrite=True)
    for out in (".", "..", str(work)):
        with pytest.raises(ValueError, match="working directory"):
            check_output_dir(out, never, "export", overwrite=True)


def test_check_output_file_refuses_folders_and_paths_under_a_file(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="--json .* is a folder"):
        check_output_file(tmp_path, "--json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_file(tmp_path / "f" / "sub" / "out.json", "--json")
    assert check_output_file(tmp_path / "new" / "dir" / "out.json", "--json")  # created by the writer


# --------------------------------------------------------------------------- vla export onnx --out

def test_export_refuses_to_wipe_an_unrelated_folder(policy_dir: Path, tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, err = _run_cli(["export", "onnx", "--policy", str(policy_dir), "--out", str(mine)], capsys)
    assert code == 2 and "not a ONNX export" in err and "--overwrite" in err
    assert _files(mine) == {"thesis.tex": b"years of work"}


def test_export_refuses_out_equal_to_policy_and_the_working_directory(policy_dir: Path, tmp_path: Path,
                                                                       monkeypatch, capsys) -> None:
    before = _files(policy_dir)
    code, err = _run_cli(["export", "onnx", "--policy", str(policy_dir), "--out", str(policy_dir), "--overwrite"],
                         capsys)
    assert code == 2 and "is the input" in err
    assert _files(policy_dir) == before
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("keep")
    code, err = _run_cli(["export", "onnx", "--policy", "policy", "--out", "."], capsys)
    assert code == 2 and "contains the input" in err
    assert (tmp_path / "keep.txt").read_text() == "keep" and _files(policy_dir) == before


def test_export_replaces_a_previous_export_atomically(policy_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "onnx"
    assert _run_cli(["export", "onnx", "--policy", str(policy_dir), "--out", str(out)], capsys)[0] == 0
    first = json.loads((out / "export.json").read_text())
    assert _run_cli(["export", "onnx", "--policy", str(policy_dir), "--out", str(out)], capsys)[0] == 0
    assert json.loads((out / "export.json").read_text())["graphs"].keys() == first["graphs"].keys()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp or .old left


# --------------------------------------------------------------------------- vla train --out

def test_train_policy_refuses_an_unrelated_folder_or_a_file_before_loading_data(tmp_path: Path,
                                                                                write_tiny_episodes) -> None:
    write_tiny_episodes(tmp_path / "data", EPISODE_METAS, t=7)
    cfg = TrainConfig(steps=2, batch_size=4, val_every=2, ckpt_every=2, warmup=0, ema_decay=0.0, threads=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a policy checkpoint"):
        train_policy([tmp_path / "data"], mine, TINY, cfg, progress=False)
    assert _files(mine) == {"notes.txt": b"keep"}
    (tmp_path / "file").write_text("keep")
    with pytest.raises(FileExistsError, match="is a file"):
        train_policy([tmp_path / "data"], tmp_path / "file", TINY, cfg, progress=False)
    assert (tmp_path / "file").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".old")]
    with pytest.raises(ValueError, match="is the input"):
        train_policy([tmp_path / "data"], tmp_path / "data", TINY, cfg, progress=False)
    train_policy([tmp_path / "data"], tmp_path / "ckpt", TINY, cfg, progress=False)
    train_policy([tmp_path / "data"], tmp_path / "ckpt", TINY, cfg, progress=False)  # its own kind: replaced
    train_policy([tmp_path / "data"], mine, TINY, cfg, progress=False, overwrite=True)
    assert VLAPolicy.from_pretrained(mine).config == TINY


def test_train_verifier_cli_refuses_an_unrelated_out_folder(policy_dir: Path, tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep")
    code, err = _run_cli(["train", "verifier", "--policy", str(policy_dir), "--data", str(tmp_path / "nodata"),
                          "--out", str(mine), "--no-progress"], capsys)
    assert code == 2 and "not a action verifier checkpoint" in err
    assert _files(mine) == {"a.txt": b"keep"}


# --------------------------------------------------------------------------- metrics after --resume

def test_metrics_are_not_repeated_after_a_resume(tmp_path: Path, write_tiny_episodes, monkeypatch) -> None:
    """Validation every step, checkpoints every 3: a run killed at step 5 resumes from 3 and must not list
    steps 4 and 5 twice."""
    write_tiny_episodes(tmp_path / "data", EPISODE_METAS, t=7)
    cfg = TrainConfig(steps=6, batch_size=4, val_every=1, ckpt_every=3, warmup=0, ema_decay=0.0, threads=1)
    out = tmp_path / "ckpt"
    original = Trainer.train_step

    def dying(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train_policy([tmp_path / "data"], out, TINY, cfg, progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    train_policy([tmp_path / "data"], out, TINY, cfg, resume=True, progress=False)
    lines = (state_dir(out) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_scorer_run_metrics_are_not_repeated_after_a_resume(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.ones(4, 2)

    def step() -> float:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def loop(steps: int, resume: bool) -> None:
        Run(tmp_path / "m", {"model": model}, opt, torch.Generator(), {"k": 1}).loop(
            steps, step, dict, lambda last: None, val_every=1, ckpt_every=3, resume=resume, progress=False,
            desc="t")

    loop(5, resume=False)  # a run of 6 "killed" after step 5: its last checkpoint is at step 3
    (tmp_path / "m.training_state" / "trainer.json").write_text(json.dumps({"step": 3, "k": 1}))
    loop(6, resume=True)
    lines = (tmp_path / "m.training_state" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_metrics_log_skips_a_line_cut_short_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    metrics_log(path, resume_step=2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    metrics_log(path, resume_step=None)
    assert path.read_text() == ""


# --------------------------------------------------------------------------- vla eval: checked before episode 1

@pytest.mark.parametrize(("extra", "message"), [
    (["--variation", "id,bogus"], "unknown variation 'bogus'"),
    (["--task", "pick_lift,fly"], "unknown task 'fly'"),
    (["--arm", "ur5"], "invalid choice: 'ur5'"),
    (["--json", "{tmp}"], "--json .* is a folder"),
    (["--json", "{tmp}/afile/out.json"], "is a file, not a folder"),
    (["--record", "{tmp}/afile"], "--record .* is a file"),
    (["--steer", "robomonkey", "--policy", "{policy}", "--verifier", "{tmp}/missing"], "--verifier .* does not exist"),
])
def test_eval_refuses_bad_arguments_before_the_first_episode(extra: list[str], message: str, tmp_path: Path,
                                                             policy_dir: Path, capsys) -> None:
    (tmp_path / "afile").write_text("keep")
    extra = [x.format(tmp=tmp_path, policy=policy_dir) for x in extra]
    record = [] if "--record" in extra else ["--record", str(tmp_path / "rec")]
    argv = ["eval", "--policy", "expert", "--task", "pick_lift", "--episodes", "1", "--workers", "1",
            "--no-progress", *record, *extra]
    code, err = _run_cli(argv, capsys)
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "rec").exists()  # no episode ran (each would have been recorded)
    assert (tmp_path / "afile").read_text() == "keep"


# --------------------------------------------------------------------------- checkpoint files

@pytest.mark.parametrize("content", ["null", "[1, 2]", "3", '"text"'])
@pytest.mark.parametrize("name", ["config.json", "normalization.json"])
def test_policy_files_that_are_not_objects_name_the_file(policy_dir: Path, name: str, content: str) -> None:
    (policy_dir / name).write_text(content)
    with pytest.raises(ValueError, match=rf"{name} must hold a JSON object"):
        VLAPolicy.from_pretrained(policy_dir)


def test_a_missing_config_key_is_an_error_not_a_default(policy_dir: Path) -> None:
    config = json.loads((policy_dir / "config.json").read_text())
    del config["inference_steps"]
    (policy_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: missing required config keys: \['inference_steps'\]"):
        VLAPolicy.from_pretrained(policy_dir)


@pytest.mark.parametrize(("edit", "message"), [
    ({"action_low": "abc"}, "normalization action_low must be a list of numbers"),
    ({"proprio_mean": [0.0, 1.0]}, "normalization has 7 action and 2 proprio dims"),
])
def test_bad_normalization_values_name_the_file(policy_dir: Path, edit: dict, message: str) -> None:
    norm = json.loads((policy_dir / "normalization.json").read_text())
    norm.update(edit)
    if "proprio_mean" in edit:
        norm["proprio_std"] = [1.0, 1.0]
    (policy_dir / "normalization.json").write_text(json.dumps(norm))
    with pytest.raises(ValueError, match=rf"normalization.json: {message}"):
        VLAPolicy.from_pretrained(policy_dir)


@pytest.mark.parametrize(("content", "message"), [
    ("null", "must hold a JSON object"),
    ("[]", "must hold a JSON object"),
    ('{"type": "vla_steering.action_verifier", "cond_dim": 32}', r"missing required keys \['action_dim'"),
    ('{"type": "vla_steering.action_verifier", "cond_dim": 32, "horizon": 8, "action_dim": 7, "hidden": "big", '
     '"layers": 1, "policy": ""}', "hidden must be an integer"),
])
def test_bad_verifier_configs_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    folder = ActionVerifier(VerifierConfig(cond_dim=32, hidden=8, layers=1), uniform_normalizer()).save_pretrained(
        tmp_path / "v")
    (folder / "config.json").write_text(content)
    with pytest.raises(ValueError, match=rf"config.json.*{message}"):
        ActionVerifier.from_pretrained(folder)


# --------------------------------------------------------------------------- sim replay / collect arguments

@pytest.mark.parametrize("fps", ["0", "-5", "nan"])
def test_replay_rejects_a_non_positive_fps_naming_the_argument(fps: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["sim", "replay", str(tmp_path), "--gif", str(tmp_path / "a.gif"), "--fps", fps])
    assert exc.value.code == 2 and "argument --fps: must be a positive number" in capsys.readouterr().err


def test_replay_refuses_a_gif_path_that_is_a_folder(tmp_path: Path, write_tiny_episodes, capsys) -> None:
    write_tiny_episodes(tmp_path / "data", EPISODE_METAS[:1])
    code, err = _run_cli(["sim", "replay", str(tmp_path / "data"), "--gif", str(tmp_path)], capsys)
    assert code == 2 and "--gif" in err and "is a folder" in err
    assert _run_cli(["sim", "replay", str(tmp_path / "data"), "--gif", str(tmp_path / "a.gif")], capsys)[0] == 0


@pytest.mark.parametrize("command", [["sim", "collect", "--out", "x"], ["eval", "--policy", "expert"]])
def test_a_negative_seed_names_the_argument(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--seed", "-5"])
    assert exc.value.code == 2 and "argument --seed: must be >= 0, got -5" in capsys.readouterr().err


# --------------------------------------------------------------------------- EpisodeDataset.get_step

def _rewrite_member(folder: Path, episode: int, member: str, array: np.ndarray) -> Path:
    """Rebuild an episode zip with `member` replaced (what a buggy writer or a bad disk could leave)."""
    path = episode_path(folder, episode)
    tmp = path.with_suffix(".rewrite")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for item in src.infolist():
            if item.filename == member:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, array, allow_pickle=False)
                dst.writestr(item, buf.getvalue())
            else:
                dst.writestr(item, src.read(item.filename))
    tmp.replace(path)
    return path


def test_get_step_refuses_nan_actions_naming_the_file(tmp_path: Path, write_tiny_episodes) -> None:
    write_tiny_episodes(tmp_path / "d", EPISODE_METAS[:1], t=6)
    actions = EpisodeDataset(tmp_path / "d").load_episode(0).actions.copy()
    actions[2, 0] = np.nan
    path = _rewrite_member(tmp_path / "d", 0, "actions.npy", actions)
    with pytest.raises(ValueError, match=rf"{path.name}: member actions.npy holds non-finite values"):
        EpisodeDataset(tmp_path / "d").get_step(1)


def test_get_step_refuses_a_wrong_shape_frame_naming_the_file(tmp_path: Path, write_tiny_episodes) -> None:
    write_tiny_episodes(tmp_path / "d", EPISODE_METAS[:1], t=6)
    path = _rewrite_member(tmp_path / "d", 0, "images/static/000003.npy", np.zeros((8, 8, 3), np.uint8))
    ds = EpisodeDataset(tmp_path / "d")
    assert ds.get_step(2)["images"]["static"].shape == (16, 16, 3)
    with pytest.raises(ValueError, match=rf"{path.name}: member images/static/000003.npy has shape \(8, 8, 3\), "
                                         r"expected \(16, 16, 3\)"):
        ds.get_step(3)



def test_demo_refuses_an_unrelated_out_folder_and_accepts_a_previous_demo(tmp_path: Path, capsys) -> None:
    from vla_app.demo import DEMO_FORMAT, is_demo

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.gif").write_bytes(b"GIF89a")
    code, err = _run_cli(["demo", "--policy", "expert", "--out", str(mine)], capsys)
    assert code == 2 and "not a vla demo folder" in err
    assert _files(mine) == {"holiday.gif": b"GIF89a"}
    old = tmp_path / "old"
    (old / "episodes").mkdir(parents=True)
    (old / "report.json").write_text(json.dumps({"policy": "p", "results": [], "gifs": []}))
    assert is_demo(old)  # a report written before the format key
    (old / "report.json").write_text(json.dumps({"format": DEMO_FORMAT}))
    assert is_demo(old) and not is_demo(mine)


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_checks_its_output_paths_before_timing(flag: str, tmp_path: Path, capsys) -> None:
    code, err = _run_cli(["bench", "--backend", "torch", "--n", "1", "--repeats", "1", "--policy",
                          str(tmp_path / "missing"), flag, str(tmp_path)], capsys)
    assert code == 2 and f"{flag} {tmp_path} is a folder" in err


def test_save_pretrained_never_replaces_a_folder_that_is_not_a_checkpoint_of_its_kind(tmp_path: Path) -> None:
    """The guard sits in `write_checkpoint`, so every caller of save_pretrained (not only the CLI) gets it."""
    policy = VLAPolicy(TINY, uniform_normalizer())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a vla_steering.policy checkpoint"):
        policy.save_pretrained(mine)
    verifier = ActionVerifier(VerifierConfig(cond_dim=TINY.d_model, hidden=8, layers=1), uniform_normalizer())
    ckpt = policy.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileExistsError, match="not a vla_steering.action_verifier checkpoint"):
        verifier.save_pretrained(ckpt)  # a policy folder is not a verifier's to replace
    assert _files(mine) == {"notes.txt": b"keep"}
    policy.save_pretrained(ckpt)  # its own kind: replaced
    policy.save_pretrained(mine, overwrite=True)
    assert VLAPolicy.from_pretrained(mine).config == TINY
