"""`init`: scaffold a registry from the tests pytest collects (tier and MRR to fill in).

One entry per test file, or per directory (`--by directory`: a directory all of whose
tests run becomes one entry). Files whose tests the project's own options never run
(addopts' `-m "not slow"`, a conftest that deselects) are left out and named: an entry made
of them could never pass.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runner.errors import UsageError
from runner.summary import entries
from runner.supervisor.collect import Inventory, collect_all

BY = ("file", "directory")


@dataclass(frozen=True)
class Unit:
    """One entry to write: a test file or a directory, and how many of its tests run."""

    path: str
    run: int
    deselected: int = 0

    @property
    def whole(self) -> bool:
        return not self.deselected


def init(output: Path, level: str, *, force: bool, paths: tuple[str, ...], by: str) -> int:
    """Write a registry with an entry per file (or directory), tier and MRR left to fill."""
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    inventory = collect_all(Path.cwd(), paths)
    if not inventory.collected:
        raise UsageError("pytest collected no tests here: nothing to register")
    files = file_units(inventory)
    never = [u.path for u in files if not u.run]
    units = [u for u in files if u.run]
    if by == "directory":
        units = by_directory(units, never)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(scaffold(units, level), encoding="utf-8")
    print(
        f"wrote {output}: {entries(len(units))} for {len(inventory.run)} pytest tests; "
        "fill in tier, mrr and owner, then run `validate`"
    )
    if never:
        shown = ", ".join(never[:5]) + (f" and {len(never) - 5} more" if len(never) > 5 else "")
        files_ = f"{len(never)} file{'s' if len(never) != 1 else ''}"
        print(f"left out {files_} whose tests the project's own options never run: {shown}")
    return 0


def file_units(inventory: Inventory) -> list[Unit]:
    """Each collected file, with its tests that run and those the options deselect."""
    collected = Counter(n.split("::", 1)[0] for n in inventory.collected)
    run = Counter(n.split("::", 1)[0] for n in inventory.collected if n in inventory.run)
    return [Unit(path=p, run=run[p], deselected=n - run[p]) for p, n in collected.items()]


def by_directory(files: list[Unit], never: list[str]) -> list[Unit]:
    """A directory becomes one entry when every test anywhere under it runs; otherwise its
    files stay entries of their own."""
    partial = [u.path for u in files if not u.whole] + never
    spoiled = {str(d) for p in partial for d in PurePosixPath(p).parents}
    groups: defaultdict[str, list[Unit]] = defaultdict(list)
    for unit in files:
        folder = str(PurePosixPath(unit.path).parent)
        groups[folder if folder not in spoiled and folder != "." else unit.path].append(unit)
    return [Unit(path=path, run=sum(u.run for u in units)) for path, units in groups.items()]


SCAFFOLD_HEAD = """\
# Registry scaffolded by `unified-test-runner init`.
# For each entry set tier (1 = critical revenue .. 3), mrr (dollars of monthly
# recurring revenue the test protects) and owner; then run `validate`.
version: 1
default_level: {level}
levels:
  {level}: {{description: "all registered tests", timeout: 900}}
tiers:
  1: {{name: "Critical revenue protection", retries: 0}}
  2: {{name: "System stability", retries: 1}}
  3: {{name: "Operational excellence", retries: 2}}
tests:
"""
SCAFFOLD_ENTRY = """\
  - id: {entry_id}   # {count}
    path: {path}
    tier: 3          # TODO
    mrr: 0           # TODO: dollars
    level: {level}
    owner: unowned   # TODO
"""


def scaffold(units: list[Unit], level: str) -> str:
    used: defaultdict[str, int] = defaultdict(int)
    parts = [SCAFFOLD_HEAD.format(level=level)]
    for unit in sorted(units, key=lambda u: u.path):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", PurePosixPath(unit.path).stem.removeprefix("test_"))
        slug = slug.strip("-") or "tests"
        used[slug] += 1
        entry_id = slug if used[slug] == 1 else f"{slug}-{used[slug]}"
        count = f"{unit.run} pytest test{'s' if unit.run != 1 else ''}"
        if unit.deselected:
            count += f"; {unit.deselected} more the project's options deselect (partial)"
        parts.append(
            SCAFFOLD_ENTRY.format(entry_id=entry_id, count=count, path=unit.path, level=level)
        )
    return "".join(parts)
