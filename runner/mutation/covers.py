"""Which code each entry claims to protect: the Python files its `covers` globs match.

Tests are not the code under test: files under the registry's suite roots, and the
entries' own test files, are never mutated.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from runner.model import Entry, Registry
from runner.planning.changed import covers_spec

SKIPPED_DIRS = frozenset({".git", ".venv", "venv", ".tox", ".nox", "node_modules", ".runner"})


def project_files(root: Path) -> list[str]:
    """Every Python file of the project, relative to the root (no environments, caches)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        base = Path(folder).relative_to(root)
        found += [(base / f).as_posix() for f in sorted(files) if f.endswith(".py")]
    return found


def covered_files(registry: Registry, entries: tuple[Entry, ...]) -> dict[str, list[str]]:
    """Entry id -> the files it covers that may be mutated."""
    files = [f for f in project_files(registry.root) if not _is_test(registry, f)]
    return {
        e.id: [f for f in files if covers_spec(e.covers).match_file(f)] if e.covers else []
        for e in entries
    }


def _is_test(registry: Registry, path: str) -> bool:
    file = PurePosixPath(path)
    roots = [PurePosixPath(r) for r in registry.suite_roots]
    tests = {PurePosixPath(e.file_part) for e in registry.tests}
    return file in tests or any(r in file.parents for r in roots if str(r) != ".")
