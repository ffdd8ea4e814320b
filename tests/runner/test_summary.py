from __future__ import annotations

from runner.reports.tables import unregistered_lines
from runner.results import EntryResult, Status
from runner.summary import money, summarize
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(
    make_entry("a", tier=1, mrr=25_000, owner="identity"),
    make_entry("b", tier=1, mrr=20_000, owner="agents"),
    make_entry("c", tier=2, mrr=12_000, owner="identity"),
    make_entry("d", tier=2, mrr=8_000),
    make_entry("e", tier=3, mrr=5_000, status="pending"),
    make_entry("f", tier=3, mrr=3_000),
)


def _r(entry_id: str, status: Status) -> EntryResult:
    return EntryResult(entry_id=entry_id, status=status)


def test_protected_at_risk_and_unverified_add_up_per_tier() -> None:
    results = [
        _r("a", Status.PASSED),
        _r("b", Status.FAILED),
        _r("c", Status.FLAKY),
        _r("d", Status.SKIPPED),
        _r("e", Status.PENDING),
    ]  # f not selected
    summary = summarize(REGISTRY, results)
    t1, t2, t3 = summary.tiers
    assert (t1.protected, t1.at_risk, t1.unverified) == (25_000, 20_000, 0)
    assert (t2.protected, t2.at_risk, t2.unverified, t2.flaky) == (12_000, 0, 8_000, 1)
    assert (t3.protected, t3.unverified, t3.selected, t3.registered) == (0, 8_000, 1, 2)
    total = summary.total
    assert total.registered_mrr == 73_000
    assert total.protected + total.at_risk + total.unverified == total.registered_mrr
    assert total.coverage is not None
    assert round(total.coverage, 2) == round(100 * 37_000 / 73_000, 2)


def test_timeouts_and_errors_are_at_risk_by_owner() -> None:
    results = [_r("a", Status.TIMED_OUT), _r("c", Status.ERROR), _r("b", Status.FAILED)]
    summary = summarize(REGISTRY, results)
    assert summary.total.at_risk == 57_000
    assert summary.at_risk_by_owner == (("identity", 37_000), ("agents", 20_000))


def test_not_run_counts_as_unverified() -> None:
    summary = summarize(REGISTRY, [_r("a", Status.NOT_RUN)])
    assert summary.total.unverified == summary.total.registered_mrr


def test_money_format() -> None:
    assert money(25_000) == "$25,000"
    assert money(177_000.0) == "$177,000"
    assert money(500.5) == "$500.50"
    assert money(-20) == "-$20"


def test_unregistered_tests_are_counted_per_file() -> None:
    nodeids = (
        *(f"tests/test_p.py::test_p[{i}]" for i in range(20)),
        "tests/test_q.py::test_a",
        "tests/test_q.py::test_b",
        "tests/test_r.py::test_a",
    )
    assert unregistered_lines(nodeids) == [
        "tests/test_p.py (20 pytest tests)",
        "tests/test_q.py (2 pytest tests)",
        "tests/test_r.py (1 pytest test)",
    ]
    assert unregistered_lines(nodeids, shown=1)[1] == "... and 2 more files (3 pytest tests)"
