"""House style, enforced: functions under 25 lines, modules under 500."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("runner", "apex", "suites", "bench", "tests")
MAX_FUNCTION_LINES = 25
MAX_MODULE_LINES = 500


def _sources() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES if (REPO / pkg).is_dir() for p in (REPO / pkg).rglob("*.py")
    )


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
        f"({(node.end_lineno or node.lineno) - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_functions_are_short() -> None:
    offenders = [line for path in _sources() for line in _long_functions(path)]
    assert offenders == []


def test_modules_are_small() -> None:
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in _sources()}
    assert [str(p) for p, n in sizes.items() if n > MAX_MODULE_LINES] == []
