"""The per-episode result store: round trips, torn and corrupt lines, validation, merging, rows, provenance."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import subprocess
import warnings
from pathlib import Path

import pytest

from vla_app import store as store_module
from vla_app.store import ResultStore, code_revision, config_id, episode_key, fingerprint, merge_stores, rows
from vla_runtime.stats import wilson_interval

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def rec(seed: int = 10_000, success: bool = True, task: str = "pick_lift", variation: str = "id",
        method: str = "base", cid: str = "3f2a9c01aaaa", **extra) -> dict:
    return {"schema": 1, "key": {"variation": variation, "method": method, "config_id": cid, "task": task,
                                 "arm": "panda", "seed": seed},
            "success": success, "steps": 87, "instruction": "pick up the red cube", "stats": {"idle_steps": 0},
            "config": {"samples": 16, "backend": "torch"},
            "provenance": {"revision": "a" * 40, "dirty": False, "models": {"policy": "0123456789abcdef"}}, **extra}


def test_append_then_read_round_trips_and_done_holds_the_keys(tmp_path: Path) -> None:
    s = ResultStore(tmp_path / "deep" / "er" / "store.jsonl")  # parents are created
    written = [rec(10_000), rec(10_001, success=False), rec(10_000, task="push_to")]
    for r in written:
        s.append(r)
    assert s.records() == written and len(s) == 3
    assert s.done() == {("id", "base", "3f2a9c01aaaa", "pick_lift", "panda", 10_000),
                        ("id", "base", "3f2a9c01aaaa", "pick_lift", "panda", 10_001),
                        ("id", "base", "3f2a9c01aaaa", "push_to", "panda", 10_000)}
    assert episode_key(written[1]) == ("id", "base", "3f2a9c01aaaa", "pick_lift", "panda", 10_001)
    assert s.path.read_text().splitlines()[0] == json.dumps(written[0], sort_keys=True)


def test_a_missing_store_holds_nothing(tmp_path: Path) -> None:
    assert ResultStore(tmp_path / "none.jsonl").records() == [] and not ResultStore(tmp_path / "none.jsonl").done()


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_next_append_cuts_it_off(tmp_path: Path) -> None:
    s = ResultStore(tmp_path / "store.jsonl")
    s.append(rec(10_000))
    s.append(rec(10_001))
    whole = json.dumps(rec(10_002), sort_keys=True)
    with s.path.open("a") as f:
        f.write(whole[: len(whole) // 2])  # a write cut short by a kill
    with pytest.warns(UserWarning, match=r"store\.jsonl:3: skipping a torn last line"):
        assert [r["key"]["seed"] for r in s.records()] == [10_000, 10_001]
    s.append(rec(10_002, success=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: nothing torn, nothing corrupt in the middle
        assert [(r["key"]["seed"], r["success"]) for r in s.records()] == [(10_000, True), (10_001, True),
                                                                          (10_002, False)]
    assert all(json.loads(line) for line in s.path.read_text().splitlines())


def test_a_whole_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    path.write_text(json.dumps(rec(10_000)))  # a hand-made baseline whose editor dropped the final newline
    s = ResultStore(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(s) == 1
        s.append(rec(10_001))
        assert [r["key"]["seed"] for r in s.records()] == [10_000, 10_001]


def test_a_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    path.write_text(json.dumps(rec(10_000)) + "\n{not json\n" + json.dumps(rec(10_001)) + "\n")
    with pytest.raises(ValueError, match=r"store\.jsonl:2: not a JSON record"):
        ResultStore(path).records()
    path.write_text(json.dumps(rec(10_000)) + "\n" + json.dumps({**rec(10_001), "success": 1}) + "\n")
    with pytest.raises(ValueError, match=r"store\.jsonl:2: record success must be true or false, got 1"):
        ResultStore(path).records()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.update(schema=2), "schema must be 1, got 2"),
    (lambda r: r["key"].update(seed="10000"), "key.seed must be a non-empty int, got '10000'"),
    (lambda r: r["key"].update(seed=True), "key.seed must be a non-empty int, got True"),
    (lambda r: r["key"].pop("arm"), "key.arm must be a non-empty str, got None"),
    (lambda r: r["key"].update(task=""), "key.task must be a non-empty str, got ''"),
    (lambda r: r.update(success="yes"), "success must be true or false, got 'yes'"),
    (lambda r: r.update(key=["id"]), r"key must be an object .* got \['id'\]"),
    (lambda r: r.update(stats={"jump": float("nan")}), "cannot be stored as JSON"),
])
def test_append_refuses_a_bad_record_echoing_the_value_and_writes_nothing(tmp_path: Path, edit, message: str) -> None:
    r = rec()
    edit(r)
    s = ResultStore(tmp_path / "store.jsonl")
    with pytest.raises(ValueError, match=message):
        s.append(r)
    assert not s.path.exists() or s.path.read_text() == ""


def test_config_id_is_the_canonical_json_hash() -> None:
    c = {"samples": 16, "policy": "models/policy", "n": None}
    assert config_id(c) == config_id(dict(reversed(list(c.items()))))
    assert config_id(c) == hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:12]
    assert config_id({**c, "samples": 1}) != config_id(c)


def test_merge_deduplicates_counts_a_conflict_and_never_overwrites_an_input(tmp_path: Path) -> None:
    a, b = ResultStore(tmp_path / "a.jsonl"), ResultStore(tmp_path / "b.jsonl")
    for r in (rec(10_000), rec(10_001)):
        a.append(r)
    for r in (rec(10_001), rec(10_000, success=False), rec(10_002)):  # a duplicate and a conflict
        b.append(r)
    counts = merge_stores([a.path, b.path], tmp_path / "out" / "merged.jsonl")
    assert counts == {"inputs": 5, "written": 3, "duplicates": 2, "conflicts": 1}
    merged = ResultStore(tmp_path / "out" / "merged.jsonl").records()
    assert [(r["key"]["seed"], r["success"]) for r in merged] == [(10_000, True), (10_001, True), (10_002, True)]
    before = a.path.read_text()
    with pytest.raises(ValueError, match="is one of the inputs"):
        merge_stores([a.path, b.path], a.path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        merge_stores([a.path, tmp_path / "missing.jsonl"], tmp_path / "m2.jsonl")
    assert a.path.read_text() == before


def test_rows_order_outcomes_by_seed_with_wilson_intervals_and_the_config(tmp_path: Path) -> None:
    records = [rec(10_002, success=False), rec(10_000, task="push_to"), rec(10_000), rec(10_001),
               rec(10_000, method="robomonkey", cid="bbbbbbbbbbbb")]
    out = rows(records)
    assert [(r["method"], r["task"]) for r in out] == [("base", "pick_lift"), ("base", "push_to"),
                                                       ("robomonkey", "pick_lift")]
    first = out[0]
    assert first["seeds"] == [10_000, 10_001, 10_002] and first["outcomes"] == [1, 1, 0]
    assert (first["episodes"], first["successes"]) == (3, 2) and first["success_rate"] == pytest.approx(2 / 3)
    assert first["ci95"] == [round(x, 4) for x in wilson_interval(2, 3)]
    assert (first["samples"], first["config_id"], first["arm"], first["variation"]) == (16, "3f2a9c01aaaa", "panda",
                                                                                       "id")
    with pytest.raises(ValueError, match="stored twice"):
        rows([*records, rec(10_001)])


def test_fingerprint_follows_the_weights_and_the_export_graphs(tmp_path: Path) -> None:
    ckpt = tmp_path / "policy"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"type": "policy"}')
    (ckpt / "model.safetensors").write_bytes(b"weights-1")
    (ckpt / "README.md").write_text("card")
    first = fingerprint(ckpt)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    (ckpt / "README.md").write_text("another card")  # not part of the model
    assert fingerprint(ckpt) == first
    (ckpt / "model.safetensors").write_bytes(b"weights-2")
    assert fingerprint(ckpt) != first
    export = tmp_path / "export"
    export.mkdir()
    (export / "export.json").write_text("{}")
    (export / "encoder.onnx").write_bytes(b"graph-1")
    before = fingerprint(export)
    (export / "encoder.onnx").write_bytes(b"graph-2")
    assert fingerprint(export) != before
    with pytest.raises(FileNotFoundError, match="empty"):
        fingerprint(tmp_path / "empty")


def test_code_revision_is_this_checkouts_head_and_unknown_without_git(monkeypatch) -> None:
    sha, dirty = code_revision()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert re.fullmatch(r"[0-9a-f]{40}", sha) and sha == head.strip() and isinstance(dirty, bool)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(store_module.subprocess, "run", no_git)
    assert code_revision() == ("unknown", False)


def _append_many(path: str, method: str, count: int) -> None:
    s = ResultStore(path)
    for k in range(count):
        # ~6 KB lines cross page boundaries, where a torn-looking tail could be seen mid-write
        s.append(rec(10_000 + k, method=method, instruction="x" * 6000))


def test_two_processes_appending_at_once_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), m, 200)) for m in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["schema"] == 1 for line in lines)
    keys = ResultStore(path).done()
    assert {(m, s) for _, m, _, _, _, s in keys} == {(m, 10_000 + k) for m in "ab" for k in range(200)}
