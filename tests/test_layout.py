"""The pipeline is visible from the imports alone: load -> select -> narrow -> supervise ->
results -> verdict -> reports, with the commands and the CLI on top. Nothing imports
upward; the child's side imports nothing of the parent's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

RUNNER = REPO / "runner"
# each layer may import only the layers listed after it (and itself)
LAYERS = ["cli", "commands", "reports", "mutation", "supervisor", "planning", "registry", "core"]
CORE = {"errors", "model", "results", "select", "summary", "gates", "verdict", "signals"}
CORE |= {"request", "files", "history", "entry", "quarantine", "baseline", "recall"}


def _layer(module: str) -> str:
    """The layer of a runner module ('runner.reports.html' -> 'reports')."""
    parts = module.split(".")[1:]
    if not parts:
        return "core"
    if parts[0] in ("cli", "entry"):
        return "cli" if parts[0] == "cli" else "top"
    return parts[0] if parts[0] in LAYERS or parts[0] == "child" else "core"


def _imports(path: Path) -> set[str]:
    """Every runner module `path` imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "runner" or m.startswith("runner.")}


def _module(path: Path) -> str:
    return ".".join(("runner", *path.relative_to(RUNNER).with_suffix("").parts))


SOURCES = sorted(RUNNER.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_nothing_imports_upward(path: Path) -> None:
    mine = _layer(_module(path))
    if mine == "top":
        return  # the entry point starts the child, then hands over to the CLI
    allowed = set(LAYERS[LAYERS.index(mine) :]) if mine in LAYERS else {"child"}
    if mine == "supervisor":
        allowed.add("child")  # it starts the child and speaks its protocol
    if mine == "reports":
        allowed.add("child")  # progress reads the protocol's event names
    upward = sorted(m for m in _imports(path) if _layer(m) not in allowed)
    assert upward == [], f"{_module(path)} ({mine}) imports {upward}"


def test_the_child_imports_nothing_of_the_parent() -> None:
    """Inside pytest the runner's package has a private name: only relative imports work."""
    for path in (RUNNER / "child").glob("*.py"):
        assert _imports(path) == set(), path


def test_reports_never_import_the_supervisor() -> None:
    for path in (RUNNER / "reports").glob("*.py"):
        assert not [m for m in _imports(path) if _layer(m) in ("supervisor", "commands")], path
