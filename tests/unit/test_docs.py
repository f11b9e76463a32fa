"""The docs stay true to the tree: the README stays short, and every path and contract the design
document names exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ARCH = ROOT / "docs" / "architecture.md"
# (module, name) of every contract docs/architecture.md describes
CONTRACTS = [("vla_runtime.policy.protocol", n) for n in ("Policy", "Context", "EpisodeEncoder")] + [
    ("vla_runtime.backends", "load_policy"), ("vla_runtime.types", "Observation"), ("vla_runtime.types", "ActionSpec"),
    ("vla_runtime.types", "CameraInfo"), ("vla_runtime.execution", "ChunkExecutor"), ("vla_runtime.training", "Run"),
    ("vla_runtime.io", "check_output_dir"), ("verifiers.pipeline", "SteeredPolicy"), ("verifiers.pipeline", "Scorer"),
    ("verifiers.pipeline", "Proposal"), ("verifiers.pipeline", "StepResult"), ("verifiers.steering", "SteeringConfig"),
    ("verifiers.steering", "steered_pipeline"), ("verifiers.proposals", "GaussianVote"),
    ("verifiers.proposals", "Identity"), ("vla_app.agents", "Agent"), ("vla_app.agents", "AgentFactory"),
]


def test_readme_is_at_most_10_kb() -> None:
    assert (ROOT / "README.md").stat().st_size <= 10 * 1024


def _named_paths(text: str) -> set[str]:
    """Backticked tokens that look like repository paths (`vla_runtime/io.py`, `launch/*.launch.yaml`)."""
    tokens = re.findall(r"`([^`\s]+)`", text)
    return {t for t in tokens if re.fullmatch(r"[\w.*-]+(/[\w.*<>-]*)+", t) and not t.startswith(("http", "<"))}


def test_every_path_the_design_names_exists() -> None:
    text = ARCH.read_text()
    paths = _named_paths(text) | set(re.findall(r"^\s*([a-z_]+/)\s", text, re.M))
    missing = [p for p in sorted(paths) if "<" not in p and not list(ROOT.glob(p.rstrip("/") or "."))]
    assert len(paths) > 15 and not missing, missing


@pytest.mark.parametrize(("module", "name"), CONTRACTS)
def test_every_contract_the_design_names_exists(module: str, name: str) -> None:
    assert name in ARCH.read_text(), f"{name} is no longer described in docs/architecture.md"
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is named in the design but missing"


def test_docs_links_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
