"""Load and validate the YAML registry into frozen `Registry` data.

Every error names the file, the line and the entry, so a user fixes it in one go.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from runner.errors import RegistryError
from runner.model import IMPLEMENTED, PENDING, Entry, Gate, Level, Quarantine, Registry, Tier
from runner.registry.change_policy import change_policy
from runner.registry.environments import environments
from runner.registry.quarantine import parse_quarantine
from runner.registry.yamlread import LineDict, load_yaml

TOP_KEYS = {
    *("version", "default_level", "levels", "tiers", "gates", "tests", "suite_roots"),
    "environments",
    "changed",
}
LEVEL_KEYS = {"description", "timeout", "includes", "workers"}
TIER_KEYS = {"name", "retries", "description"}
GATE_KEYS = {
    "require_tiers",
    "require_all",
    "min_protected_percent",
    "min_protected_mrr",
    "max_quarantined_mrr",
    "quarantine_tiers",
    "description",
}
ENTRY_KEYS = {
    *("id", "name", "tier", "mrr", "level", "path", "status", "owner", "description"),
    *("group", "covers", "allow_skips", "quarantine"),
}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class _Source:
    """The file being validated, for error messages, and what entries may refer to."""

    def __init__(self, path: Path, root: Path) -> None:
        self.file = str(path)
        self.root = root
        self.levels: dict[str, Level] = {}
        self.tiers: dict[int, Tier] = {}
        self.checked: dict[tuple[str, bool], str] = {}

    def path_problem(self, file_part: str, must_exist: bool) -> str:
        """Why a registry path is unusable ('' if it is fine); each file checked once."""
        key = (file_part, must_exist)
        if key not in self.checked:
            if "\0" in file_part or os.path.isabs(file_part):
                self.checked[key] = f"{file_part!r} is not a relative path"
                return self.checked[key]
            resolved = os.path.realpath(os.path.join(self.root, file_part))
            if not Path(resolved).is_relative_to(self.root):
                self.checked[key] = f"{file_part!r} escapes the project root"
            elif must_exist and not os.path.exists(resolved):
                self.checked[key] = f"{file_part!r} does not exist"
            else:
                self.checked[key] = ""
        return self.checked[key]

    def fail(self, line: int | None, message: str) -> RegistryError:
        return RegistryError(message, file=self.file, line=line)


def load_registry(path: Path, root: Path | None = None) -> Registry:
    """Read `path` and return a validated registry; paths resolve against `root` (cwd)."""
    root = (root or Path.cwd()).resolve()
    src = _Source(path, root)
    doc = _document(path, src)
    levels = src.levels = _levels(doc["levels"], src, doc.line)
    tiers = src.tiers = _tiers(doc["tiers"], src, doc.line)
    default = _default_level(doc, levels, src)
    envs = environments(doc.get("environments") or LineDict(), src, doc.line)
    tests = _entries(doc["tests"], src, doc.line)
    _check_skip_environments(tests, envs, src)
    gates = _gates(doc.get("gates") or LineDict(), src, doc.line, tiers)
    return Registry(
        path=path,
        root=root,
        version=1,
        default_level=default,
        levels=levels,
        tiers=tiers,
        gates=gates,
        tests=tests,
        suite_roots=_suite_roots(doc, tests, src),
        environments=envs,
        changed=change_policy(doc.get("changed") or LineDict(), src, doc.line, tests),
    )


def _document(path: Path, src: _Source) -> LineDict:
    doc = _mapping(load_yaml(path), src, 1, "the registry")
    _check_keys(doc, TOP_KEYS, {"version", "levels", "tiers", "tests"}, src, "registry")
    if doc["version"] != 1:
        raise src.fail(doc.line, f"unsupported registry version {doc['version']!r} (expected 1)")
    return doc


def _check_skip_environments(tests: tuple[Entry, ...], envs: dict[str, Any], src: _Source) -> None:
    known = {*envs, "local", "*"}
    for entry in tests:
        unknown = [name for name in entry.allow_skips if name not in known]
        if unknown:
            raise src.fail(
                entry.line,
                f"entry {entry.id!r}: 'allow_skips' names unknown environment {unknown[0]!r}",
            )


def _mapping(value: Any, src: _Source, line: int, what: str) -> LineDict:
    if not isinstance(value, LineDict):
        raise src.fail(line, f"{what} must be a mapping, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _check_keys(
    m: LineDict, allowed: set[str], required: set[str], src: _Source, what: str
) -> None:
    unknown = sorted(str(k) for k in m if k not in allowed)
    if unknown:
        raise src.fail(
            m.line, f"{what}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    missing = sorted(required - set(m))
    if missing:
        raise src.fail(m.line, f"{what}: missing required key {missing[0]!r}")


def _text(m: LineDict, key: str, src: _Source, what: str, default: str | None = None) -> str:
    value = m.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise src.fail(m.line, f"{what}: {key!r} must be a non-empty string, not {_kind(value)}")
    return value


def _number(m: LineDict, key: str, src: _Source, what: str, default: float | None = None) -> float:
    value = m.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not isinstance(value, int | float) or not ok or not math.isfinite(value) or value < 0:
        raise src.fail(m.line, f"{what}: {key!r} must be a non-negative number, not {value!r}")
    return float(value)


def _whole(m: LineDict, key: str, src: _Source, what: str, default: int = 0) -> int:
    value = m.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise src.fail(m.line, f"{what}: {key!r} must be a whole number >= 0, not {value!r}")
    return value


def _levels(raw: Any, src: _Source, line: int) -> dict[str, Level]:
    section = _mapping(raw, src, line, "'levels'")
    levels: dict[str, Level] = {}
    for name, body in section.items():
        what = f"level {name!r}"
        m = _mapping(body if body is not None else LineDict(), src, section.line, what)
        _check_keys(m, LEVEL_KEYS, set(), src, what)
        timeout = _number(m, "timeout", src, what, 900)
        if timeout <= 0:
            raise src.fail(m.line or section.line, f"{what}: 'timeout' must be above 0")
        levels[str(name)] = Level(
            name=str(name),
            description=str(m.get("description", "")),
            timeout=timeout,
            includes=_names(m.get("includes", []), src, m.line, f"{what}: 'includes'"),
            workers=_level_workers(m, src, what),
        )
    _check_includes(levels, src, section.line)
    return levels


def _level_workers(m: LineDict, src: _Source, what: str) -> str | None:
    value = m.get("workers")
    if value is None:
        return None
    text = str(value).strip().lower()
    if isinstance(value, bool) or not (text == "auto" or (text.isdigit() and int(text) >= 1)):
        raise src.fail(m.line, f"{what}: 'workers' must be a whole number >= 1 or 'auto'")
    return text


def _names(value: Any, src: _Source, line: int, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise src.fail(line, f"{what} must be a list of names")
    return tuple(value)


def _check_includes(levels: dict[str, Level], src: _Source, line: int) -> None:
    for level in levels.values():
        for inc in level.includes:
            if inc not in levels:
                raise src.fail(line, f"level {level.name!r} includes unknown level {inc!r}")
    for name in levels:
        _walk_includes(name, levels, (), src, line)


def _walk_includes(
    name: str, levels: dict[str, Level], trail: tuple[str, ...], src: _Source, line: int
) -> None:
    if name in trail:
        raise src.fail(line, f"levels include each other in a cycle: {' -> '.join((*trail, name))}")
    for inc in levels[name].includes:
        _walk_includes(inc, levels, (*trail, name), src, line)


def _tiers(raw: Any, src: _Source, line: int) -> dict[int, Tier]:
    section = _mapping(raw, src, line, "'tiers'")
    tiers: dict[int, Tier] = {}
    for number, body in section.items():
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise src.fail(section.line, f"tier {number!r}: tiers are numbered 1, 2, 3, ...")
        what = f"tier {number}"
        m = _mapping(body, src, section.line, what)
        _check_keys(m, TIER_KEYS, {"name"}, src, what)
        tiers[number] = Tier(
            number=number, name=_text(m, "name", src, what), retries=_whole(m, "retries", src, what)
        )
    return dict(sorted(tiers.items()))


def _default_level(doc: LineDict, levels: dict[str, Level], src: _Source) -> str:
    default = doc.get("default_level", next(iter(levels), ""))
    if default not in levels:
        raise src.fail(doc.line, f"default_level {default!r} is not a defined level")
    return str(default)


def _gates(raw: Any, src: _Source, line: int, tiers: dict[int, Tier]) -> dict[str, Gate]:
    section = _mapping(raw, src, line, "'gates'")
    gates: dict[str, Gate] = {}
    for name, body in section.items():
        what = f"gate {name!r}"
        m = _mapping(body, src, section.line, what)
        _check_keys(m, GATE_KEYS, set(), src, what)
        gates[str(name)] = Gate(
            name=str(name),
            require_tiers=_gate_tiers(m, src, what, tiers),
            require_all=_flag(m, "require_all", src, what),
            min_protected_percent=_percent(m, src, what),
            min_protected_mrr=_number(m, "min_protected_mrr", src, what)
            if "min_protected_mrr" in m
            else None,
            max_quarantined_mrr=_number(m, "max_quarantined_mrr", src, what)
            if "max_quarantined_mrr" in m
            else None,
            quarantine_tiers=_gate_tiers(
                m, src, what, tiers, key="quarantine_tiers", default=(2, 3)
            ),
        )
    return gates


def _gate_tiers(
    m: LineDict,
    src: _Source,
    what: str,
    tiers: dict[int, Tier],
    *,
    key: str = "require_tiers",
    default: tuple[int, ...] = (),
) -> tuple[int, ...]:
    if key not in m:
        return tuple(t for t in default if t in tiers)
    value = m[key]
    if not isinstance(value, list) or any(t not in tiers or isinstance(t, bool) for t in value):
        raise src.fail(m.line, f"{what}: {key!r} must list defined tiers, not {value!r}")
    return tuple(int(t) for t in value)


def _flag(m: LineDict, key: str, src: _Source, what: str) -> bool:
    value = m.get(key, False)
    if not isinstance(value, bool):
        raise src.fail(m.line, f"{what}: {key!r} must be true or false, not {value!r}")
    return value


def _percent(m: LineDict, src: _Source, what: str) -> float | None:
    if "min_protected_percent" not in m:
        return None
    value = _number(m, "min_protected_percent", src, what)
    if value > 100:
        raise src.fail(m.line, f"{what}: 'min_protected_percent' must be at most 100")
    return value


def _entries(raw: Any, src: _Source, line: int) -> tuple[Entry, ...]:
    if not isinstance(raw, list):
        raise src.fail(line, f"'tests' must be a list of entries, not {_kind(raw)}")
    seen: dict[str, int] = {}
    entries = []
    for index, item in enumerate(raw):
        entry = _entry(_mapping(item, src, line, f"tests[{index}]"), src)
        if entry.id in seen:
            raise src.fail(
                entry.line,
                f"entry {entry.id!r}: duplicate id (first defined on line {seen[entry.id]})",
            )
        seen[entry.id] = entry.line
        entries.append(entry)
    return tuple(entries)


def _entry(m: LineDict, src: _Source) -> Entry:
    raw_id = m.get("id")
    what = f"entry {raw_id!r}" if raw_id is not None else "entry"
    _check_keys(m, ENTRY_KEYS, {"id", "tier", "mrr", "level", "path"}, src, what)
    entry_id = _text(m, "id", src, what)
    if not ID_RE.match(entry_id):
        raise src.fail(m.line, f"{what}: id may hold letters, digits and _ . : - only")
    _check_refs(m, src, what)
    status = m.get("status", IMPLEMENTED)
    path = _entry_path(m, src, what, status == IMPLEMENTED)
    return Entry(
        id=entry_id,
        name=_text(m, "name", src, what, entry_id),
        tier=int(m["tier"]),
        mrr=_number(m, "mrr", src, what),
        level=str(m["level"]),
        path=path,
        status=status,
        owner=_text(m, "owner", src, what, "unowned"),
        group=_text(m, "group", src, what, "-") if "group" in m else "",
        covers=_globs(m, src, what),
        allow_skips=_allow_skips(m, src, what),
        quarantine=_quarantine(m, src, what, path),
        line=m.line,
    )


def _quarantine(m: LineDict, src: _Source, what: str, path: str) -> Quarantine | None:
    if "quarantine" not in m:
        return None
    line = getattr(m["quarantine"], "line", m.line)
    quarantine = parse_quarantine(m["quarantine"], lambda text: src.fail(line, f"{what}: {text}"))
    outside = [t for t in quarantine.tests if not _inside(t, path)]
    if outside:
        raise src.fail(line, f"{what}: quarantined test {outside[0]!r} is not under {path!r}")
    return quarantine


def _inside(nodeid: str, path: str) -> bool:
    """Is `nodeid` one of the tests the entry at `path` (a directory, file or node id) has?"""
    if nodeid == path or nodeid.startswith((path + "::", path + "[")):
        return True
    return "::" not in path and nodeid.split("::", 1)[0].startswith(path.rstrip("/") + "/")


def _globs(m: LineDict, src: _Source, what: str) -> tuple[str, ...]:
    value = m.get("covers", [])
    ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    if not ok or any(os.path.isabs(v) or "\0" in v for v in value):
        raise src.fail(m.line, f"{what}: 'covers' must be a list of relative path globs")
    return tuple(value)


def _allow_skips(m: LineDict, src: _Source, what: str) -> tuple[str, ...]:
    """`true` (skips are fine anywhere), `false`, or the environments where they are."""
    value = m.get("allow_skips", False)
    if isinstance(value, bool):
        return ("*",) if value else ()
    return _names(value, src, m.line, f"{what}: 'allow_skips' must be true, false or a list")


def _check_refs(m: LineDict, src: _Source, what: str) -> None:
    tier, level, status = m["tier"], m["level"], m.get("status", IMPLEMENTED)
    if tier not in src.tiers or isinstance(tier, bool):
        raise src.fail(m.line, f"{what}: unknown tier {tier!r} (defined: {sorted(src.tiers)})")
    if level not in src.levels:
        raise src.fail(m.line, f"{what}: unknown level {level!r} (defined: {sorted(src.levels)})")
    if status not in (IMPLEMENTED, PENDING):
        raise src.fail(m.line, f"{what}: status must be 'implemented' or 'pending'")


def _entry_path(m: LineDict, src: _Source, what: str, must_exist: bool) -> str:
    path = _text(m, "path", src, what)
    file_part = path.split("::", 1)[0]
    if path.startswith(("-", "@")) or os.path.isabs(file_part):
        raise src.fail(m.line, f"{what}: path {path!r} must be relative to the project root")
    if "\n" in path or "\r" in path:
        raise src.fail(m.line, f"{what}: path {path!r} must be one line")
    problem = src.path_problem(file_part, must_exist)
    if problem:
        raise src.fail(m.line, f"{what}: path {problem}")
    return path


def _suite_roots(doc: LineDict, tests: tuple[Entry, ...], src: _Source) -> tuple[str, ...]:
    """Where unregistered tests are looked for: directories inside the project root."""
    if "suite_roots" in doc:
        roots = _names(doc["suite_roots"], src, doc.line, "'suite_roots'")
        for root in roots:
            problem = src.path_problem(root, must_exist=True)
            if problem or not (src.root / root).is_dir():
                why = problem or f"{root!r} is not a directory"
                raise src.fail(doc.line, f"'suite_roots': {why}")
        return roots
    files = {e.file_part for e in tests}  # thousands of entries share a few files
    tops = {Path(f).parts[0] for f in files if len(Path(f).parts) > 1}
    return tuple(sorted(tops))
