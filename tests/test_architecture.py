"""The structure ARCHITECTURE.md describes, checked on the code itself: imports run one way
(``jobs`` -> ``pipeline`` -> ``workers`` -> ``core``), at any depth of a module (an import
inside a function counts), and no module grows past the size one reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("core", "workers", "pipeline", "jobs")          # each may import only those before it
MAX_LINES = 500


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level packages and dotted modules a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_run_one_way(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    wrong = {f"{path.relative_to(REPO)} imports {name}"
             for path in _modules(layer) for name in _imported(path) if name.split(".")[0] in above}
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("package, forbidden", [
    ("workers/quality", "workers.encode"),     # video reading is core.video; QC never needs the writer
    ("workers/audio", "workers.motion"),       # speech records are core.speech
    ("monitoring", "pipeline"), ("monitoring", "workers"),
])
def test_no_sideways_imports(package, forbidden):
    wrong = {f"{path.relative_to(REPO)} imports {name}"
             for path in _modules(package) for name in _imported(path) if name.startswith(forbidden)}
    assert not wrong, sorted(wrong)


def test_modules_stay_small():
    large = {str(path.relative_to(REPO)): lines for layer in LAYERS for path in _modules(layer)
             if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert not large, large


def test_the_graph_is_the_one_list_of_stages():
    """Settings, executors and metrics read the stages from the graph; each pool's default
    resources are the stage's own."""
    from pipeline.graph import RENDER_GRAPH, STAGES, GraphConfig
    from pipeline.settings import GraphSettings

    assert STAGES == tuple(spec.stage_class.name for spec in RENDER_GRAPH)
    assert tuple(GraphSettings().config().pools) == STAGES
    for spec in RENDER_GRAPH:
        assert GraphConfig().pools[spec.name].resources == spec.stage_class.resources
