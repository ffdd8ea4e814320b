from __future__ import annotations

import pytest

from runner.results import Status, TestResult, phase_status, rollup


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ({"setup": "passed", "call": "passed", "teardown": "passed"}, Status.PASSED),
        ({"setup": "passed", "call": "failed", "teardown": "passed"}, Status.FAILED),
        ({"setup": "failed", "teardown": "passed"}, Status.ERROR),
        ({"setup": "passed", "call": "passed", "teardown": "failed"}, Status.ERROR),
        ({"setup": "passed", "call": "failed", "teardown": "failed"}, Status.FAILED),
        ({"setup": "skipped", "teardown": "passed"}, Status.SKIPPED),
        ({"setup": "passed", "call": "skipped", "teardown": "passed"}, Status.SKIPPED),
        ({"setup": "passed", "call": "xfailed", "teardown": "passed"}, Status.XFAILED),
        ({"setup": "xfailed", "teardown": "passed"}, Status.XFAILED),
        ({"setup": "passed", "call": "xpassed", "teardown": "passed"}, Status.XPASSED),
        ({"setup": "passed", "teardown": "passed"}, Status.NOT_RUN),
        ({}, Status.NOT_RUN),
    ],
)
def test_phase_status_follows_pytest(phases: dict[str, str], expected: Status) -> None:
    assert phase_status(phases) is expected


def _t(status: Status, n: int = 0) -> TestResult:
    return TestResult(nodeid=f"t::{n}", entry_id="e", status=status, message=f"m{n}")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.PASSED, Status.PASSED], Status.PASSED),
        ([Status.PASSED, Status.FAILED], Status.FAILED),
        ([Status.ERROR, Status.FAILED], Status.ERROR),
        ([Status.PASSED, Status.TIMED_OUT, Status.NOT_RUN], Status.TIMED_OUT),
        ([Status.SKIPPED, Status.SKIPPED], Status.SKIPPED),
        ([Status.PASSED, Status.FLAKY], Status.FLAKY),
        ([Status.PASSED, Status.NOT_RUN], Status.NOT_RUN),
    ],
)
def test_rollup(statuses: list[Status], expected: Status) -> None:
    tests = tuple(_t(s, i) for i, s in enumerate(statuses))
    assert rollup("e", tests).status is expected


def test_a_partial_skip_is_partial_unless_the_registry_allows_skips() -> None:
    tests = (_t(Status.PASSED), _t(Status.SKIPPED, 1), _t(Status.XFAILED, 2))
    result = rollup("e", tests)
    assert result.status is Status.PARTIAL
    assert result.note == "2 of 3 pytest tests did not verify anything: 1 skipped, 1 xfailed"
    allowed = rollup("e", tests, allow_skips=True)
    assert allowed.status is Status.PASSED and "allows skips" in allowed.note
    deselected = rollup("e", (_t(Status.PASSED), _t(Status.DESELECTED, 1)), allow_skips=True)
    assert deselected.status is Status.PARTIAL


def test_nothing_that_ran_is_skipped_or_not_run() -> None:
    assert rollup("e", (_t(Status.XFAILED), _t(Status.SKIPPED, 1))).status is Status.SKIPPED
    only_deselected = rollup("e", (_t(Status.DESELECTED), _t(Status.DESELECTED, 1)))
    assert only_deselected.status is Status.NOT_RUN and "deselected" in only_deselected.note
    assert rollup("e", (_t(Status.XPASSED), _t(Status.PASSED, 1))).status is Status.PASSED


def test_entry_message_is_first_failure() -> None:
    result = rollup("e", (_t(Status.PASSED), _t(Status.FAILED, 1), _t(Status.FAILED, 2)))
    assert result.message == "m1"


def test_rollup_of_nothing_is_not_run() -> None:
    assert rollup("e", ()).status is Status.NOT_RUN
