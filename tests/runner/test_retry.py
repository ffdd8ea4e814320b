from __future__ import annotations

import pytest

from runner.results import Attempt, Status, TestResult
from runner.supervisor.retry import due_for_retry, merge_attempt, retry_failures
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(
    make_entry("t1", tier=1), make_entry("t2", tier=2), make_entry("t3", tier=3)
)


def _t(entry_id: str, status: Status, attempt: int = 1) -> TestResult:
    return TestResult(
        nodeid=f"{entry_id}::x",
        entry_id=entry_id,
        status=status,
        duration=1.0,
        attempts=(Attempt(number=attempt, status=status, duration=1.0),),
    )


def test_pass_after_failure_is_flaky_and_keeps_every_attempt() -> None:
    merged = merge_attempt(_t("t2", Status.FAILED), _t("t2", Status.PASSED, 2))
    assert merged.status is Status.FLAKY
    assert [a.status for a in merged.attempts] == [Status.FAILED, Status.PASSED]
    assert merged.duration == 2.0


@pytest.mark.parametrize(
    "retry", [Status.SKIPPED, Status.XFAILED, Status.DESELECTED, Status.NOT_RUN]
)
def test_only_a_pass_clears_a_failure(retry: Status) -> None:
    merged = merge_attempt(_t("t2", Status.FAILED), _t("t2", retry, 2))
    assert merged.status is Status.FAILED
    assert [a.status for a in merged.attempts] == [Status.FAILED, retry]
    again = merge_attempt(_t("t2", Status.FAILED), _t("t2", Status.ERROR, 2))
    assert again.status is Status.ERROR


def test_retries_follow_each_tiers_policy() -> None:
    failing = [
        _t("t1", Status.FAILED),
        _t("t2", Status.FAILED),
        _t("t3", Status.ERROR),
        _t("t3", Status.TIMED_OUT),
    ]
    assert due_for_retry(REGISTRY, failing, 2) == ("t2::x", "t3::x")
    assert due_for_retry(REGISTRY, failing, 3) == ("t3::x",)
    assert due_for_retry(REGISTRY, failing, 4) == ()


def test_retry_loop_stops_when_a_test_passes_or_runs_out_of_retries() -> None:
    calls: list[tuple[tuple[str, ...], int]] = []

    def rerun(nodeids: tuple[str, ...], timeout: float, attempt: int) -> list[TestResult]:
        calls.append((nodeids, attempt))
        return [_t(n.split("::")[0], Status.FAILED, attempt) for n in nodeids]

    results = retry_failures(
        REGISTRY, [_t("t1", Status.FAILED), _t("t3", Status.FAILED)], rerun, remaining=60
    )
    assert calls == [(("t3::x",), 2), (("t3::x",), 3)]
    by_id = {r.entry_id: r for r in results}
    assert len(by_id["t3"].attempts) == 3
    assert by_id["t3"].status is Status.FAILED
    assert len(by_id["t1"].attempts) == 1


def test_no_retry_without_time_left() -> None:
    def rerun(nodeids: tuple[str, ...], timeout: float, attempt: int) -> list[TestResult]:
        raise AssertionError("must not rerun")

    assert retry_failures(REGISTRY, [_t("t3", Status.FAILED)], rerun, remaining=0)
