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


def test_partial_skip_is_passed_with_a_note() -> None:
    result = rollup("e", (_t(Status.PASSED), _t(Status.SKIPPED, 1)))
    assert result.status is Status.PASSED
    assert result.note == "1 of 2 tests skipped"


def test_entry_message_is_first_failure() -> None:
    result = rollup("e", (_t(Status.PASSED), _t(Status.FAILED, 1), _t(Status.FAILED, 2)))
    assert result.message == "m1"


def test_rollup_of_nothing_is_not_run() -> None:
    assert rollup("e", ()).status is Status.NOT_RUN
