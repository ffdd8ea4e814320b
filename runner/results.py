"""Results as data: one status vocabulary, per-test and per-entry results, and a whole run.

Nothing here starts a process or renders a report: the supervisor produces these, the
verdict judges them, the reports render them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"  # an expected failure (pytest's xfail): verifies nothing
    XPASSED = "xpassed"  # an xfail test that passed (non-strict): it ran and held
    FLAKY = "flaky"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"
    DESELECTED = "deselected"  # a test pytest's own options (-k, -m, a plugin) dropped
    PARTIAL = "partial"  # an entry some of whose tests did not run or were skipped
    PENDING = "pending"
    QUARANTINED = "quarantined"  # carried knowingly (registry): cannot fail, never protects


FAILING = frozenset({Status.FAILED, Status.ERROR, Status.TIMED_OUT})
PROTECTING = frozenset({Status.PASSED, Status.FLAKY})
RAN = frozenset({Status.PASSED, Status.FLAKY, Status.XPASSED})
UNVERIFIED_TESTS = frozenset({Status.SKIPPED, Status.XFAILED, Status.DESELECTED})


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
    collect_error: str = ""  # a collection failure in one of its files: the run broke
    left_out: str = ""  # why the runner itself did not run it (--budget, a missing shard)
    outcome: Status | None = None  # a quarantined entry: what it would have been

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


@dataclass(frozen=True, kw_only=True)
class ChildRun:
    """Facts about one pytest process of a run, as the supervisor and the events saw them."""

    attempt: int  # 1 for the first run; retries and resumptions count on
    purpose: str = "run"  # "run", "retry" or "resume" (after a crash)
    returncode: int | None = None  # negative: killed by that signal
    pytest_status: int | None = None  # the session's final exit status, from the plugin
    stopped: str = ""  # why the runner stopped it: timeout, SIGINT, SIGTERM, SIGHUP, lingered
    session_started: bool = False
    session_finished: bool = False
    collected: bool = False
    exit_request: str = ""  # the message of a pytest.exit() call
    no_run_mode: str = ""  # --collect-only, --setup-only or --setup-plan
    internal_errors: tuple[str, ...] = ()
    crashed: tuple[tuple[str, str], ...] = ()  # (node id, xdist worker) a worker died on
    workers_down: tuple[str, ...] = ()
    died_in: str = ""  # the test that was running when the process died
    failures: int = 0  # tests failed or errored, and files that failed to collect, per events
    ran: int = 0  # tests that finished, per events
    unconfigured: bool = False  # pytest's last hook ran: it ended its session cleanly
    running_at_death: tuple[str, ...] = ()  # every test running when the process died
    log_tail: str = ""  # pytest's last output line, when it exited with an error


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What planning recorded about a run, for its reports and for `merge`."""

    shard: Mapping[str, Any] | None = None  # index, total, plan (its id), entries
    selection: tuple[str, ...] = ()  # every entry the shards of one plan share
    environment: Mapping[str, Any] | None = None  # the --env profile: names, never values
    changed: Mapping[str, Any] | None = None  # --changed: ref, files, touched, ...
    detect_flakes: int = 0  # rounds of --detect-flakes: a flaky test is then the finding
    mutation: Mapping[str, float] | None = None  # entry id -> mutation score (--mutation)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as the JSON report's `run` carries them."""
        values = {"shard": self.shard, "environment": self.environment, "changed": self.changed}
        found: dict[str, Any] = {k: dict(v) for k, v in values.items() if v is not None}
        if self.selection:
            found["selection"] = list(self.selection)
        if self.detect_flakes:
            found["detect_flakes"] = self.detect_flakes
        if self.mutation is not None:
            found["mutation"] = dict(self.mutation)
        return found


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Everything a report needs about one run, and every fact the verdict weighs."""

    level: str
    started_at: str
    duration: float
    entries: tuple[EntryResult, ...]
    unregistered: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    children: tuple[ChildRun, ...] = ()
    problems: tuple[str, ...] = ()  # the run broke in ways no child shows (a missing shard)
    interrupted_by: str = ""  # SIGINT, SIGTERM or SIGHUP
    timeout: float = 0.0
    log_file: str = ""
    context: RunContext = field(default_factory=RunContext)
    shard_durations: tuple[float, ...] = ()  # a merged run: each shard's wall time

    @property
    def interrupted(self) -> bool:
        return bool(self.interrupted_by)

    @property
    def timed_out(self) -> bool:
        return any(c.stopped == "timeout" for c in self.children)


def phase_status(phases: Mapping[str, str]) -> Status:
    """A pytest test's status from its {when: outcome} phase reports, as pytest maps them
    (the plugin reports an xfail's outcome as `xfailed` / `xpassed`)."""
    outcomes = set(phases.values())
    if phases.get("call") == "failed":
        return Status.FAILED
    if "failed" in outcomes:
        return Status.ERROR
    if "xfailed" in outcomes:
        return Status.XFAILED
    if "skipped" in outcomes:
        return Status.SKIPPED
    if phases.get("call") == "xpassed":
        return Status.XPASSED
    return Status.PASSED if phases.get("call") == "passed" else Status.NOT_RUN


_ROLLUP_ORDER = (Status.TIMED_OUT, Status.ERROR, Status.FAILED, Status.NOT_RUN)
DESELECTED_NOTE = "every test was deselected by pytest's options (-k, -m, addopts or a plugin)"


def rollup(
    entry_id: str, tests: tuple[TestResult, ...], note: str = "", *, allow_skips: bool = False
) -> EntryResult:
    """Failed if any test failed, errored or timed out; not run, skipped or partial unless
    every test ran (skips count as run only where the registry allows them); else passed."""
    statuses = {t.status for t in tests}
    if not tests:
        return EntryResult(entry_id=entry_id, status=Status.NOT_RUN, note=note or "no tests ran")
    for status in _ROLLUP_ORDER:
        if status in statuses:
            first = next(t.message for t in tests if t.status is status)
            why = note or (first if status is Status.NOT_RUN else "")
            return EntryResult(entry_id=entry_id, status=status, tests=tests, note=why)
    if not statuses & RAN:
        return _nothing_ran(entry_id, tests, note)
    status = Status.FLAKY if Status.FLAKY in statuses else Status.PASSED
    short = _shortfall(tests)
    if short and (not allow_skips or Status.DESELECTED in statuses):
        status = Status.PARTIAL
    elif short:
        short += " (the registry allows skips here)"
    return EntryResult(entry_id=entry_id, status=status, tests=tests, note=note or short)


def _nothing_ran(entry_id: str, tests: tuple[TestResult, ...], note: str) -> EntryResult:
    if all(t.status is Status.DESELECTED for t in tests):
        return EntryResult(
            entry_id=entry_id, status=Status.NOT_RUN, tests=tests, note=note or DESELECTED_NOTE
        )
    return EntryResult(
        entry_id=entry_id, status=Status.SKIPPED, tests=tests, note=note or _shortfall(tests)
    )


def _shortfall(tests: tuple[TestResult, ...]) -> str:
    """'2 of 5 tests skipped, 1 xfailed' ('' when every test ran)."""
    counts = {s: sum(t.status is s for t in tests) for s in UNVERIFIED_TESTS}
    parts = [f"{n} {s}" for s, n in sorted(counts.items()) if n]
    if not parts:
        return ""
    unverified = sum(counts.values())
    return f"{unverified} of {len(tests)} pytest tests did not verify anything: " + ", ".join(parts)
