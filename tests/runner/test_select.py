from __future__ import annotations

import pytest

from runner.errors import EmptySelectionError, UsageError
from runner.select import Criteria, level_closure, level_timeout, select
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(
    make_entry("checkout", tier=1, mrr=500, level="unit"),
    make_entry("login", tier=1, mrr=900, level="full", path="tests/auth/test_login.py::TestA"),
    make_entry("reports", tier=3, mrr=50, level="nightly"),
    make_entry("billing", tier=2, mrr=700, level="unit", status="pending"),
)


def ids(criteria: Criteria) -> list[str]:
    return [e.id for e in select(REGISTRY, criteria).entries]


def test_levels_include_other_levels_transitively() -> None:
    assert level_closure(REGISTRY, "nightly") == {"nightly", "full", "unit"}
    assert level_closure(REGISTRY, "unit") == {"unit"}
    assert ids(Criteria(level="full")) == ["login", "checkout", "billing"]


def test_default_level_and_order_is_tier_then_mrr() -> None:
    assert ids(Criteria()) == ["checkout", "billing"]
    assert ids(Criteria(level="all")) == ["login", "checkout", "billing", "reports"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("test_*", ["login", "checkout", "billing", "reports"]),  # file names
        ("log*", ["login"]),  # id
        ("Repo*", ["reports"]),  # name
        ("tests/auth/*", ["login"]),  # path
        ("*::TestA", ["login"]),
    ],  # node id
)
def test_pattern_matches_id_name_file_and_node_id(pattern: str, expected: list[str]) -> None:
    assert ids(Criteria(level="all", patterns=(pattern,))) == expected


def test_patterns_are_or_and_tiers_filter() -> None:
    assert ids(Criteria(level="all", patterns=("login", "reports"))) == ["login", "reports"]
    assert ids(Criteria(level="all", tiers=(3,))) == ["reports"]


def test_ids_pick_entries_from_any_level() -> None:
    assert ids(Criteria(ids=("reports",))) == ["reports"]


def test_pending_entries_are_selected_but_not_runnable() -> None:
    selection = select(REGISTRY, Criteria())
    assert [e.id for e in selection.pending] == ["billing"]
    assert [e.id for e in selection.runnable] == ["checkout"]


def test_unknown_names_are_usage_errors_with_a_hint() -> None:
    with pytest.raises(UsageError, match="did you mean 'unit'"):
        select(REGISTRY, Criteria(level="unti"))
    with pytest.raises(UsageError, match=r"unknown test id 'logn'.*'login'"):
        select(REGISTRY, Criteria(ids=("logn",)))
    with pytest.raises(UsageError, match="unknown tier 7"):
        select(REGISTRY, Criteria(tiers=(7,)))


def test_empty_selection_says_what_was_asked() -> None:
    with pytest.raises(EmptySelectionError, match="pattern 'nothing\\*'"):
        select(REGISTRY, Criteria(patterns=("nothing*",)))


def test_level_timeout() -> None:
    assert level_timeout(REGISTRY, "full") == 300
    assert level_timeout(REGISTRY, "all") == 60 + 300 + 900
