"""Which registry entries a collected path or node id belongs to (inside the pytest child).

A test belongs to the most specific entry whose path matches it (a node id before its
file, a file before the directories above it). An entry also *matches* every test below
its path, even one a more specific entry owns: a catch-all directory entry is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EntryIndex:
    """Entries by resolved file (with the node-id suffix each selects) and by directory."""

    def __init__(self, entries: list[Any], root: Path) -> None:
        self.by_file: dict[Path, list[tuple[str, str]]] = {}
        self.by_dir: dict[Path, str] = {}
        for entry in entries:
            file_part, _, suffix = str(entry["path"]).partition("::")
            target = (root / file_part).resolve()
            if target.is_dir():
                self.by_dir[target] = entry["id"]
            else:
                self.by_file.setdefault(target, []).append((suffix, entry["id"]))
        for options in self.by_file.values():
            options.sort(key=lambda o: -len(o[0]))
        self._dirs_above: dict[Path, list[str]] = {}

    def find(self, path: Path, nodeid: str) -> str | None:
        """The entry that owns this test: the most specific match, or None."""
        matches = self.matching(path, nodeid)
        return matches[0] if matches else None

    def matching(self, path: Path, nodeid: str) -> list[str]:
        """Every entry whose path matches, most specific first."""
        suffix = nodeid.partition("::")[2]
        found = [
            entry_id
            for wanted, entry_id in self.by_file.get(path, [])
            if not wanted or suffix == wanted or suffix.startswith((wanted + "::", wanted + "["))
        ]
        return found + self.dirs_above(path)

    def dirs_above(self, path: Path) -> list[str]:
        """Directory entries above `path`, nearest first (cached: this runs for every test)."""
        if path not in self._dirs_above:
            self._dirs_above[path] = [self.by_dir[p] for p in path.parents if p in self.by_dir]
        return self._dirs_above[path]

    def inside(self, path: Path) -> list[str]:
        """Entries at or below `path` (what a failure to collect `path` keeps from running)."""
        files = [
            entry_id
            for target, options in self.by_file.items()
            if target == path or path in target.parents
            for _, entry_id in options
        ]
        dirs = [
            entry_id
            for target, entry_id in self.by_dir.items()
            if path in (target, *target.parents)
        ]
        return files + dirs

    def registered_file(self, path: Path) -> bool:
        return path in self.by_file
