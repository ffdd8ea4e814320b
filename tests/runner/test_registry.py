from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import RegistryError
from runner.registry.load import load_registry
from tests.conftest import REPO, Project, entry


def _load(project: Project) -> None:
    load_registry(project.root / "config/levels.yaml", project.root)


def _error(project: Project) -> str:
    with pytest.raises(RegistryError) as info:
        _load(project)
    return str(info.value)


def test_shipped_registry_totals_are_computed() -> None:
    registry = load_registry(REPO / "config/levels.yaml", REPO)
    assert len(registry.tests) == 15
    assert registry.total_mrr() == 177_000
    assert [registry.total_mrr(t) for t in (1, 2, 3)] == [100_000, 50_000, 27_000]
    assert len({e.id for e in registry.tests}) == 15


def test_valid_registry_loads_entries_with_lines(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.registry([entry("a", "tests/test_a.py", owner="team")])
    registry = load_registry(project.root / "config/levels.yaml", project.root)
    (only,) = registry.tests
    assert (only.id, only.name, only.owner, only.mrr, only.status) == (
        "a",
        "a",
        "team",
        1000.0,
        "implemented",
    )
    assert only.line > 1
    assert registry.suite_roots == ("tests",)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("version: 1\nlevels: [\n", "invalid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("version: 2\nlevels: {}\ntiers: {}\ntests: []\n", "unsupported registry version"),
        ("version: 1\nlevels: {}\ntiers: {}\n", "missing required key 'tests'"),
        ("version: 1\nlevels: {}\ntiers: {}\ntests: []\nextra: 1\n", "unknown key 'extra'"),
        ("version: 1\nversion: 1\n", "duplicate key 'version'"),
    ],
)
def test_document_errors_name_file_and_line(project: Project, body: str, expected: str) -> None:
    project.write("config/levels.yaml", body)
    message = _error(project)
    assert "config/levels.yaml" in message
    assert expected in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tier": 9}, "unknown tier 9"),
        ({"level": "nightly"}, "unknown level 'nightly'"),
        ({"mrr": -5}, "'mrr' must be a non-negative number"),
        ({"mrr": "25K"}, "'mrr' must be a non-negative number"),
        ({"mrr": True}, "'mrr' must be a non-negative number"),
        ({"mrr": float("nan")}, "'mrr' must be a non-negative number"),
        ({"status": "done"}, "status must be 'implemented' or 'pending'"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"path": "tests/missing.py"}, "does not exist"),
        ({"path": "../outside.py"}, "escapes the project root"),
        ({"path": "-p evil"}, "must be relative to the project root"),
        ({"id": "bad id!"}, "id may hold"),
    ],
)
def test_entry_errors_name_the_entry_and_its_line(
    project: Project, overrides: dict[str, object], expected: str
) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.registry(
        [entry("ok", "tests/test_a.py"), {**entry("a", "tests/test_a.py"), **overrides}]
    )
    message = _error(project)
    assert expected in message
    assert ":" in message.split(" ")[0]  # file:line prefix


def test_missing_mrr_is_an_error(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    bad = entry("a", "tests/test_a.py")
    del bad["mrr"]
    project.registry([bad])
    assert "missing required key 'mrr'" in _error(project)


def test_duplicate_ids_name_both_lines(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.registry([entry("a", "tests/test_a.py"), entry("a", "tests/test_a.py")])
    message = _error(project)
    assert "duplicate id" in message
    assert "first defined on line" in message


def test_pending_entry_may_point_at_a_file_not_written_yet(project: Project) -> None:
    project.registry([entry("later", "tests/test_later.py", status="pending")])
    registry = load_registry(project.root / "config/levels.yaml", project.root)
    assert registry.tests[0].pending


def test_level_include_cycle_is_refused(project: Project) -> None:
    project.registry(
        [], levels={"a": {"includes": ["b"]}, "b": {"includes": ["a"]}}, default_level="a"
    )
    assert "cycle" in _error(project)


def test_unknown_included_level_is_refused(project: Project) -> None:
    project.registry([], levels={"a": {"includes": ["ghost"]}}, default_level="a")
    assert "unknown level 'ghost'" in _error(project)


def test_non_utf8_and_missing_files(project: Project, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"version: 1\nname: \xff\xfe\n")
    with pytest.raises(RegistryError, match="not UTF-8"):
        load_registry(tmp_path / "bad.yaml", tmp_path)
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "absent.yaml", tmp_path)


def test_gate_must_name_defined_tiers(project: Project) -> None:
    project.registry([], gates={"pr": {"require_tiers": [7]}})
    assert "'require_tiers' must list defined tiers" in _error(project)
