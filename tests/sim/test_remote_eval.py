"""`vla eval --backend remote` against `vla serve` over localhost: the same seeds give the in-process
backend's episodes (the client draws the noise, so the served policy samples the same chunks)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openpi_client", reason="openpi-client is not installed")

from vla_app import cli
from vla_app.evaluate import EvalConfig, evaluate
from vla_app.serve import ServerThread
from vla_runtime.backends import load_policy

pytestmark = pytest.mark.sim

POLICY = str(Path(__file__).resolve().parents[2] / "models" / "policy")


@pytest.fixture(scope="module")
def url():
    with ServerThread(load_policy(POLICY, "torch")) as server:
        yield server.url


def test_remote_success_equals_in_process_success_on_the_same_seeds(url, tmp_path) -> None:
    common = dict(tasks=("push_to", "pick_lift"), episodes=2, workers=2, seed=10000, samples=2)
    local = evaluate(EvalConfig(policy=POLICY, **common), progress=False)
    store = tmp_path / "remote.jsonl"
    remote = evaluate(EvalConfig(policy=url, backend="remote", store=str(store), **common), progress=False)
    assert [r["outcomes"] for r in remote] == [r["outcomes"] for r in local]
    assert [r["max_boundary_jump"] for r in remote] == [r["max_boundary_jump"] for r in local]  # same chunks
    assert '"policy": "remote:' in store.read_text()  # the served weights' fingerprint is the provenance


def test_the_cli_refuses_a_folder_for_the_remote_backend(capsys) -> None:
    assert cli.main(["eval", "--policy", POLICY, "--backend", "remote", "--task", "push_to", "--episodes", "1",
                     "--no-progress"]) == 2
    assert "ws://HOST:PORT" in capsys.readouterr().err


def test_a_foreign_openpi_server_runs_in_the_simulator_through_its_description(tmp_path) -> None:
    import json

    from foreign_openpi import OFFSET, SCALE, STATE, TAKE, ForeignServer

    server = ForeignServer({})
    try:
        description = tmp_path / "foreign.json"
        description.write_text(json.dumps({
            "url": server.url, "keys": {"images": {"static": "image/base"}, "state": "state", "prompt": "task",
                                        "actions": "actions"},
            "image_size": [64, 64], "state": list(STATE),
            "actions": {"horizon": 10, "dim": 8, "take": TAKE, "scale": SCALE, "offset": OFFSET}}))
        rows = evaluate(EvalConfig(policy=str(description), backend="remote", tasks=("push_to",), episodes=1,
                                   workers=1), progress=False)
        assert rows[0]["episodes"] == 1 and len(server.requests) >= 2  # a whole episode of its decisions
    finally:
        server.stop()
