"""Selection: which registry entries a run covers. Pure functions, no I/O."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from runner.errors import EmptySelectionError, UsageError
from runner.model import Entry, Registry

ALL_LEVELS = "all"


@dataclass(frozen=True, kw_only=True)
class Criteria:
    """What the user asked for on the command line."""

    level: str | None = None
    patterns: tuple[str, ...] = ()
    tiers: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The chosen entries in run order, with the levels they came from."""

    level: str
    levels: frozenset[str]
    entries: tuple[Entry, ...]

    @property
    def runnable(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if not e.pending)

    @property
    def pending(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.pending)


def level_closure(registry: Registry, level: str) -> frozenset[str]:
    """`level` and every level it includes, transitively."""
    if level == ALL_LEVELS:
        return frozenset(registry.levels)
    if level not in registry.levels:
        raise UsageError(f"unknown level {level!r}{_hint(level, [*registry.levels, ALL_LEVELS])}")
    found: set[str] = set()
    todo = [level]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(registry.levels[name].includes)
    return frozenset(found)


def level_timeout(registry: Registry, level: str) -> float:
    """A level's own timeout; `all` gets the sum of every level's."""
    if level in registry.levels:
        return registry.levels[level].timeout
    return sum(lv.timeout for lv in registry.levels.values())


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    known = ", ".join(sorted(choices))
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {known})"


def matches_pattern(entry: Entry, pattern: str) -> bool:
    """A glob matches an entry's id, name, file name or node id / path; so does the very
    text of one (a parametrized node id's `[1]` is no character class then)."""
    file_name = PurePosixPath(entry.file_part).name
    candidates = (entry.id, entry.name, file_name, entry.path, entry.file_part)
    return any(c == pattern or fnmatchcase(c, pattern) for c in candidates)


def run_order(entries: tuple[Entry, ...] | list[Entry]) -> tuple[Entry, ...]:
    """Tier 1 first; within a tier the most MRR first; then by id for determinism."""
    return tuple(sorted(entries, key=lambda e: (e.tier, -e.mrr, e.id)))


def select(registry: Registry, criteria: Criteria) -> Selection:
    """Apply level, pattern, tier and id criteria; raise if nothing is left."""
    level = criteria.level or registry.default_level
    levels = level_closure(registry, level)
    _check_known(registry, criteria)
    chosen = [e for e in registry.tests if _wanted(e, levels, criteria)]
    if not chosen:
        raise EmptySelectionError(f"no registered test matches {_describe(level, criteria)}")
    return Selection(level=level, levels=levels, entries=run_order(chosen))


def _check_known(registry: Registry, criteria: Criteria) -> None:
    ids = [e.id for e in registry.tests]
    for wanted in criteria.ids:
        if wanted not in ids:
            raise UsageError(f"unknown test id {wanted!r}{_hint(wanted, ids)}")
    for tier in criteria.tiers:
        if tier not in registry.tiers:
            raise UsageError(f"unknown tier {tier} (defined: {sorted(registry.tiers)})")


def _wanted(entry: Entry, levels: frozenset[str], criteria: Criteria) -> bool:
    if criteria.ids:
        return entry.id in criteria.ids and _tier_ok(entry, criteria)
    if entry.level not in levels or not _tier_ok(entry, criteria):
        return False
    return not criteria.patterns or any(matches_pattern(entry, p) for p in criteria.patterns)


def _tier_ok(entry: Entry, criteria: Criteria) -> bool:
    return not criteria.tiers or entry.tier in criteria.tiers


def _describe(level: str, criteria: Criteria) -> str:
    parts = [f"level {level!r}"]
    if criteria.patterns:
        parts.append("pattern " + " or ".join(repr(p) for p in criteria.patterns))
    if criteria.tiers:
        parts.append("tier " + " or ".join(str(t) for t in criteria.tiers))
    if criteria.ids:
        parts.append("id " + " or ".join(repr(i) for i in criteria.ids))
    return ", ".join(parts)
