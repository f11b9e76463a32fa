"""The regression verdict (pairing, statistics, refusals) and the `vla regress` / `vla report` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vla_app import cli
from vla_app.regress import compare, paired_interval
from vla_app.store import ResultStore, code_revision

pytestmark = pytest.mark.unit


def rec(seed: int, success: bool, task: str = "pick_lift", variation: str = "id", method: str = "base",
        cid: str = "aaaaaaaaaaaa", samples: int = 16, revision: str = "a" * 40) -> dict:
    return {"schema": 1, "key": {"variation": variation, "method": method, "config_id": cid, "task": task,
                                 "arm": "panda", "seed": seed},
            "success": success, "steps": 50, "instruction": "x", "stats": {}, "config": {"samples": samples},
            "provenance": {"revision": revision, "dirty": False, "models": {"policy": "f" * 16}}}


def side(outcomes: dict[tuple[str, str], list[int]], **kw) -> list[dict]:
    """{(variation, task): [0/1 per seed from 10000]} -> records of method `base`."""
    return [rec(10_000 + k, bool(x), task=task, variation=variation, **kw)
            for (variation, task), xs in outcomes.items() for k, x in enumerate(xs)]


BASE = {("id", "pick_lift"): [1, 0] * 50, ("id", "push_to"): [1, 1, 0] * 20}


def write(path: Path, records: list[dict]) -> str:
    s = ResultStore(path)
    for r in records:
        s.append(r)
    return str(path)


def test_identical_sides_pass_as_non_inferior() -> None:
    v = compare(side(BASE), side(BASE))
    (g,) = v.groups
    assert not v.failed and g["status"] == "non-inferior" and (g["pairs"], g["lost"], g["won"]) == (160, 0, 0)
    assert g["difference"] == 0 and g["p"] == 1.0 and g["ci95"][0] > -5
    assert v.markdown.startswith("# Regression check: PASS")
    assert "| id | base | pick_lift | panda | 100 | 50% | 50% | 0 | 0 |" in v.markdown


def test_a_candidate_that_lost_episodes_is_a_regression_and_fails_the_command(tmp_path: Path, capsys) -> None:
    worse = {**BASE, ("id", "pick_lift"): [0] * 100}  # lost all 50 pick_lift successes
    v = compare(side(BASE), side(worse, cid="bbbbbbbbbbbb", samples=1))
    (g,) = v.groups
    assert v.failed and g["status"] == "regression" and (g["lost"], g["won"]) == (50, 0) and g["p"] < 1e-10
    assert g["difference"] == pytest.approx(-100 * 50 / 160) and g["ci95"][1] < 0
    assert "`aaaaaaaaaaaa` -> `bbbbbbbbbbbb`" in v.markdown and "`samples`: 16 -> 1" in v.markdown
    baseline, candidate = write(tmp_path / "b.jsonl", side(BASE)), write(tmp_path / "c.jsonl", side(worse))
    out = tmp_path / "verdict.md"
    assert cli.main(["regress", "--baseline", baseline, "--candidate", candidate, "--out", str(out)]) == 1
    assert "# Regression check: FAIL" in capsys.readouterr().out
    assert out.read_text().startswith("# Regression check: FAIL")
    assert cli.main(["regress", "--baseline", baseline, "--candidate", baseline]) == 0


def test_unpaired_seeds_are_refused_naming_them(tmp_path: Path, capsys) -> None:
    candidate = [r for r in side(BASE) if r["key"]["seed"] != 10_007 or r["key"]["task"] != "push_to"]
    candidate.append(rec(20_000, True, task="push_to"))
    with pytest.raises(ValueError, match=r"1 baseline episode\(s\) missing from the candidate: push_to/panda seed "
                                         r"10007.*not in the baseline: push_to/panda seed 20000"):
        compare(side(BASE), candidate)
    code = cli.main(["regress", "--baseline", write(tmp_path / "b.jsonl", side(BASE)),
                     "--candidate", write(tmp_path / "c.jsonl", candidate)])
    assert code == 2 and "vla: error: cannot pair" in capsys.readouterr().err


def test_missing_and_extra_groups_are_refused() -> None:
    both = {**BASE, ("camera", "pick_lift"): [1] * 10}
    with pytest.raises(ValueError, match=r"the candidate lacks the baseline's group\(s\) camera/base"):
        compare(side(both), side(BASE))
    with pytest.raises(ValueError, match=r"the candidate holds group\(s\) camera/base the baseline lacks"):
        compare(side(BASE), side(both))
    with pytest.raises(ValueError, match="the candidate holds no episodes"):
        compare(side(BASE), [])


def test_a_group_mixing_two_configurations_is_ambiguous() -> None:
    mixed = side(BASE)
    mixed[0]["key"]["config_id"] = "cccccccccccc"
    with pytest.raises(ValueError, match=r"the candidate's group id/base mixes configurations cccccccccccc "
                                         r"\(1 episodes\), aaaaaaaaaaaa \(159 episodes\)"):
        compare(side(BASE), mixed)


def test_strict_fails_an_inconclusive_group() -> None:
    few = {("id", "pick_lift"): [1, 0] * 5}  # 10 identical pairs: the interval still reaches below -5 points
    v = compare(side(few), side(few))
    assert v.groups[0]["status"] == "inconclusive" and not v.failed
    strict = compare(side(few), side(few), strict=True)
    assert strict.failed and strict.markdown.startswith("# Regression check: FAIL")
    assert compare(side(few), side(few), margin=20).groups[0]["status"] == "non-inferior"


def test_agresti_min_interval_matches_the_hand_computed_value() -> None:
    # lost 5, won 1 of 20 pairs: cells + 0.5 over 22 -> p10 = 0.25, p01 = 1.5 / 22, d = -0.181818,
    # se = sqrt((0.318182 - 0.033058) / 22) = 0.113843, half = 1.959964 * se = 0.223128
    lo, hi = paired_interval(lost=5, won=1, n=20)
    assert lo == pytest.approx(-0.404946, abs=1e-6) and hi == pytest.approx(0.041309, abs=1e-6)
    lo0, hi0 = paired_interval(0, 0, 10)  # no discordant pair: still an interval, not a point
    assert lo0 == pytest.approx(-hi0) and hi0 == pytest.approx(1.959964 / 12)
    base = side({("id", "pick_lift"): [1] * 5 + [0] * 15})
    cand = side({("id", "pick_lift"): [0] * 5 + [1] + [0] * 14})
    g = compare(base, cand).groups[0]
    assert g["ci95"] == [-40.49, 4.13] and (g["lost"], g["won"]) == (5, 1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"margin": -1.0}, "margin must be .* got -1.0"), ({"margin": math.nan}, "got nan"),
    ({"alpha": 1.5}, r"alpha must be in \(0, 1\), got 1.5"), ({"alpha": 0.0}, "got 0.0"),
])
def test_bad_margin_or_alpha_is_refused_echoing_it(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare(side(BASE), side(BASE), **kwargs)


# --------------------------------------------------------------------------- vla report


def test_report_writes_tables_and_plot_and_flags_another_revision(tmp_path: Path, capsys) -> None:
    sha, _ = code_revision()
    a = write(tmp_path / "a.jsonl", side(BASE, revision=sha))
    b = write(tmp_path / "b.jsonl", [rec(10_000, True, revision=sha), rec(10_100, False, revision="0" * 40)])
    out = tmp_path / "report"
    assert cli.main(["report", a, b, "--out", str(out), "--merged-store", str(tmp_path / "m.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0]) == {"inputs": 162, "written": 161, "duplicates": 1, "conflicts": 0}
    text = (out / "report.md").read_text()
    assert text in printed and "| id | base | 50% [40, 59] |" in text  # pick_lift: 50 of 101 with seed 10100
    assert f"**WARNING**: 1 record(s) come from another revision than the running code's ({sha}" in text
    assert f"{'0' * 40} (1 records)" in text and "| policy | ffffffffffffffff | 161 |" in text
    assert (out / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report.json").read_text())["provenance"]["revisions"] == {sha: 160, "0" * 40: 1}
    assert cli.main(["report", a, "--out", str(out)]) == 0  # a previous report is replaced
    assert "WARNING" not in (out / "report.md").read_text()


def test_report_refuses_an_unrelated_folder_and_a_folder_holding_the_store(tmp_path: Path, capsys) -> None:
    store = write(tmp_path / "runs" / "s.jsonl", side(BASE))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert cli.main(["report", store, "--out", str(tmp_path / "mine")]) == 2
    assert cli.main(["report", store, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "not a vla report folder" in err and "contains the input" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and Path(store).exists()
