"""Hub-standard checkpoints: load by repo id from an offline Hugging Face cache, cards with YAML metadata,
and folders written before either (the bundled models) still loading."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard, scan_cache_dir, try_to_load_from_cache
from tiny import TINY, uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.value import ValueConfig, ValueFunction
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.hub import HubMixin, with_metadata
from vla_runtime.policy.card import policy_card
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.policy.train import TrainConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def make(kind: str, seed: int = 0):
    """A tiny model of each kind, its weights drawn from `seed`."""
    torch.manual_seed(seed)
    norm = uniform_normalizer()
    if kind == "policy":
        return VLAPolicy(TINY, norm).eval()
    if kind == "verifier":
        return ActionVerifier(VerifierConfig(cond_dim=32, hidden=16, layers=1), norm).eval()
    return ValueFunction(ValueConfig(cond_dim=32, hidden=16, layers=1, bins=11), norm).eval()


CLASSES = {"policy": VLAPolicy, "verifier": ActionVerifier, "value": ValueFunction}


def cache_snapshot(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",),
                   skip: tuple[str, ...] = ()) -> Path:
    """What `hf download` leaves: blobs named by content hash, snapshots/<commit>/<file> linking to them,
    refs/<branch or tag> holding the commit (huggingface_hub has no public writer for this layout)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in sorted(folder.iterdir()):
        if f.name in skip:
            continue
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: loading by repo id must read the cache only."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a checkpoint load tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- the cache layout


def test_the_cache_the_tests_build_is_what_huggingface_hub_reads(tmp_path: Path) -> None:
    folder = make("verifier").save_pretrained(tmp_path / "ckpt")
    snapshot = cache_snapshot(tmp_path / "cache", "org/verifier", folder, COMMIT_A)
    info = scan_cache_dir(tmp_path / "cache")
    assert not info.warnings
    (repo,) = info.repos
    (rev,) = repo.revisions
    assert (repo.repo_id, repo.repo_type, rev.commit_hash) == ("org/verifier", "model", COMMIT_A)
    assert set(rev.refs) == {"main"}
    assert {f.file_name for f in rev.files} == {"config.json", "model.safetensors", "normalization.json"}
    assert try_to_load_from_cache("org/verifier", "config.json", cache_dir=tmp_path / "cache") == str(
        snapshot / "config.json")


# --------------------------------------------------------------------------- loading by repo id


@pytest.mark.parametrize("kind", ["policy", "verifier", "value"])
def test_repo_id_loads_the_cached_weights_without_network(kind: str, tmp_path: Path, no_network) -> None:
    cls = CLASSES[kind]
    folder = make(kind, seed=1).save_pretrained(tmp_path / "ckpt", model_card="# card\n")
    cache_snapshot(tmp_path / "cache", f"org/{kind}", folder, COMMIT_A)
    by_id = cls.from_pretrained(f"org/{kind}", cache_dir=tmp_path / "cache")
    by_folder = cls.from_pretrained(folder)
    assert type(by_id) is cls and not by_id.training
    assert by_id.config == by_folder.config
    assert same_weights(by_id, by_folder) and not same_weights(by_id, make(kind, seed=2))


def test_revision_picks_the_branch_tag_or_commit_asked_for(tmp_path: Path, no_network) -> None:
    cache = tmp_path / "cache"
    old, new = make("verifier", seed=1), make("verifier", seed=2)
    cache_snapshot(cache, "org/v", old.save_pretrained(tmp_path / "old"), COMMIT_A, refs=("v1",))
    cache_snapshot(cache, "org/v", new.save_pretrained(tmp_path / "new"), COMMIT_B, refs=("main",))
    assert same_weights(ActionVerifier.from_pretrained("org/v", cache_dir=cache), new)
    assert same_weights(ActionVerifier.from_pretrained("org/v", revision="v1", cache_dir=cache), old)
    assert same_weights(ActionVerifier.from_pretrained("org/v", revision=COMMIT_A, cache_dir=cache), old)


def test_an_uncached_repo_id_names_the_repo_and_the_cache(tmp_path: Path, no_network) -> None:
    cache = tmp_path / "cache"
    cache_snapshot(cache, "org/v", make("verifier").save_pretrained(tmp_path / "ckpt"), COMMIT_A)
    with pytest.raises(FileNotFoundError, match=rf"org/other .*{re.escape(str(cache))}.*hf download org/other"):
        ActionVerifier.from_pretrained("org/other", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="revision v9"):
        ActionVerifier.from_pretrained("org/v", revision="v9", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a path, never looked up as a repo
        ValueFunction.from_pretrained(tmp_path / "nowhere" / "deeper", cache_dir=cache)


def test_a_partly_downloaded_snapshot_names_the_missing_file(tmp_path: Path, no_network) -> None:
    folder = make("value").save_pretrained(tmp_path / "ckpt")
    cache_snapshot(tmp_path / "cache", "org/value", folder, COMMIT_A, skip=("model.safetensors",))
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        ValueFunction.from_pretrained("org/value", cache_dir=tmp_path / "cache")


def test_an_existing_folder_wins_over_a_cached_repo_of_the_same_name(tmp_path: Path, monkeypatch,
                                                                     no_network) -> None:
    monkeypatch.chdir(tmp_path)
    local, cached = make("verifier", seed=1), make("verifier", seed=2)
    local.save_pretrained("org/v")  # a relative folder spelled like a repo id
    cache_snapshot(tmp_path / "cache", "org/v", cached.save_pretrained(tmp_path / "other"), COMMIT_A)
    assert same_weights(ActionVerifier.from_pretrained("org/v", cache_dir=tmp_path / "cache"), local)
    with pytest.raises(ValueError, match="local folder"):
        ActionVerifier.from_pretrained("org/v", revision="main", cache_dir=tmp_path / "cache")


def test_bundled_folders_without_front_matter_load_from_the_folder_and_by_repo_id(tmp_path: Path) -> None:
    """The committed models predate card metadata; HF_HUB_CACHE and HF_HUB_OFFLINE in a fresh process are
    what a user sets, so the environment (not a cache_dir argument) must find the repos."""
    cache = tmp_path / "cache"
    expected = {}
    for kind in ("policy", "verifier", "value"):
        folder = ROOT / "models" / kind
        assert ModelCard.load(folder / "README.md").data.to_dict() == {}  # no front matter: an old folder
        expected[kind] = weights_fingerprint(CLASSES[kind].from_pretrained(folder))
        cache_snapshot(cache, f"vla-steering/{kind}", folder, COMMIT_A)
    script = ("import json; from verifiers.action_verifier import ActionVerifier; from verifiers.value import "
              "ValueFunction; from vla_runtime.policy.model import VLAPolicy; "
              "from vla_runtime.checkpoint import weights_fingerprint as f; "
              "print(json.dumps({k: f(c.from_pretrained('vla-steering/' + k)) for k, c in "
              "[('policy', VLAPolicy), ('verifier', ActionVerifier), ('value', ValueFunction)]}))")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == expected


# --------------------------------------------------------------------------- model cards


def test_a_policy_saved_without_a_card_gets_one_the_hub_reads(tmp_path: Path) -> None:
    out = make("policy").save_pretrained(tmp_path / "ckpt")
    card = ModelCard.load(out / "README.md")
    assert (card.data.library_name, card.data.pipeline_tag, card.data.license) == ("vla_steering", "robotics",
                                                                                   "apache-2.0")
    assert {"vla_steering", "vision-language-action", "diffusion-policy"} <= set(card.data.tags)
    assert card.text.startswith("# vla_steering policy")
    assert VLAPolicy.from_pretrained(out).config == TINY  # the card does not get in the way of loading


def test_the_training_card_carries_the_datasets_and_held_out_metric_names(tmp_path: Path) -> None:
    trainer = SimpleNamespace(model=make("policy"), cfg=TrainConfig(),
                              meta={"episodes": 3, "train_steps_total": 12, "val_episodes": [0]})
    last = {"step": 40, "loss": 0.5, "val_loss": 0.25, "val_action_mae": 0.01, "camera_val_loss": 0.3}
    text = policy_card(trainer, last, "vla train policy --data data/a data/b --seed 0", ["data/a", "data/b"])
    card = ModelCard(text)
    assert card.data.datasets == ["data/a", "data/b"]
    assert card.data.metrics == ["val_loss", "val_action_mae", "camera_val_loss"]
    assert (card.data.library_name, card.data.pipeline_tag, card.data.license) == ("vla_steering", "robotics",
                                                                                   "apache-2.0")
    assert "vla train policy --data data/a data/b --seed 0" in card.text and '"val_loss": 0.25' in card.text
    out = trainer.model.save_pretrained(tmp_path / "ckpt", model_card=text)
    assert (out / "README.md").read_text() == text  # written as given: metadata added once, by the card


def test_metadata_merges_into_existing_front_matter_and_is_idempotent() -> None:
    data = ActionVerifier.card_data()
    once = with_metadata("---\nbase_model: org/policy\ntags:\n- mine\n---\n# v\n\nbody\n", data, ["d1"], ["m1"])
    twice = with_metadata(once, data, ["d1", "d2"], ["m1"])
    meta = ModelCard(twice).data.to_dict()
    assert meta["base_model"] == "org/policy" and meta["datasets"] == ["d1", "d2"] and meta["metrics"] == ["m1"]
    assert meta["tags"][0] == "mine" and len(meta["tags"]) == len(set(meta["tags"]))
    assert ModelCard(twice).text == "# v\n\nbody\n"
    assert with_metadata(once, data, ["d1"], ["m1"]) == once


def test_each_class_carries_its_own_tags() -> None:
    tags = {kind: set(cls.card_data().tags) for kind, cls in CLASSES.items()}
    assert all({"vla_steering", "model_hub_mixin"} <= t for t in tags.values())
    assert "diffusion-policy" in tags["policy"] and "diffusion-policy" not in tags["verifier"] | tags["value"]
    assert "action-verifier" in tags["verifier"] and "value-function" in tags["value"]
    assert set(HubMixin.card_data().tags) == {"vla_steering", "model_hub_mixin"}  # subclasses did not leak in
