"""`vla eval` over several variations rewrites its JSON after each one, so a late failure keeps what ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_app import cli
from vla_runtime.dataset import write_dataset_header

pytestmark = pytest.mark.sim


def test_a_failure_in_the_second_variation_keeps_the_first_variations_results(tmp_path: Path, capsys) -> None:
    # The `camera` recording folder already holds another collection: evaluate() refuses it, but only once
    # the `id` variation has run.
    write_dataset_header(tmp_path / "rec" / "camera", {"someone": "else"})
    out = tmp_path / "results.json"
    code = cli.main(["eval", "--policy", "expert", "--task", "pick_lift", "--variation", "id,camera",
                     "--episodes", "1", "--workers", "1", "--no-progress", "--record", str(tmp_path / "rec"),
                     "--json", str(out)])
    assert code == 2 and "collection" in capsys.readouterr().err
    saved = json.loads(out.read_text())
    assert saved["complete"] is False
    assert [(r["task"], r["variation"], r["episodes"]) for r in saved["results"]] == [("pick_lift", "id", 1)]
