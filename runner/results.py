"""Per-test and per-entry results: one status vocabulary for the whole runner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    FLAKY = "flaky"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"
    PENDING = "pending"


FAILING = frozenset({Status.FAILED, Status.ERROR, Status.TIMED_OUT})
PROTECTING = frozenset({Status.PASSED, Status.FLAKY})


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One execution of one pytest test (retries add attempts)."""

    number: int
    status: Status
    duration: float
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """The outcome of one pytest test (one node id)."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    entry_id: str
    status: Status
    duration: float = 0.0
    message: str = ""
    longrepr: str = ""
    output: str = ""
    attempts: tuple[Attempt, ...] = ()
    worker: str = ""  # the pytest-xdist worker that ran it, under --workers


@dataclass(frozen=True, kw_only=True)
class EntryResult:
    """The roll-up of the pytest tests that one registry entry selects."""

    entry_id: str
    status: Status
    tests: tuple[TestResult, ...] = ()
    note: str = ""

    @property
    def duration(self) -> float:
        return sum(t.duration for t in self.tests)

    @property
    def needs_attention(self) -> bool:
        """Failed, errored, timed out, or flaky: what a report lists one by one."""
        return self.status in FAILING or self.status is Status.FLAKY

    @property
    def headline(self) -> str:
        """The first line of the failure, or of the note when there is none."""
        text = self.message or self.note
        return text.splitlines()[0] if text else ""

    @property
    def message(self) -> str:
        if self.note and not self.tests:
            return self.note
        failing = [t for t in self.tests if t.status in FAILING]
        return failing[0].message if failing else self.note


def phase_status(phases: Mapping[str, str]) -> Status:
    """A pytest test's status from its {when: outcome} phase reports, as pytest maps them."""
    if phases.get("call") == "failed":
        return Status.FAILED
    if "failed" in phases.values():
        return Status.ERROR
    if "skipped" in phases.values():
        return Status.SKIPPED
    return Status.PASSED if phases.get("call") == "passed" else Status.NOT_RUN


_ROLLUP_ORDER = (Status.TIMED_OUT, Status.ERROR, Status.FAILED, Status.NOT_RUN)


def rollup(entry_id: str, tests: tuple[TestResult, ...], note: str = "") -> EntryResult:
    """Failed if any test failed, errored or timed out; skipped if all skipped; else passed."""
    statuses = {t.status for t in tests}
    if not tests:
        return EntryResult(entry_id=entry_id, status=Status.NOT_RUN, note=note or "no tests ran")
    for status in _ROLLUP_ORDER:
        if status in statuses:
            return EntryResult(entry_id=entry_id, status=status, tests=tests, note=note)
    if statuses == {Status.SKIPPED}:
        return EntryResult(entry_id=entry_id, status=Status.SKIPPED, tests=tests, note=note)
    skipped = sum(t.status is Status.SKIPPED for t in tests)
    if skipped:
        note = note or f"{skipped} of {len(tests)} tests skipped"
    status = Status.FLAKY if Status.FLAKY in statuses else Status.PASSED
    return EntryResult(entry_id=entry_id, status=status, tests=tests, note=note)
