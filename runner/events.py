"""Fold the child's event stream into per-test results.

The stream may end anywhere (crash, timeout, Ctrl-C): `finish` turns whatever was
seen into a complete set of results in which every selected test has a status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.results import Attempt, Status, TestResult, phase_status


@dataclass
class _Test:
    nodeid: str
    entry_id: str
    phases: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    message: str = ""
    longrepr: str = ""
    output: str = ""
    started: bool = False
    finished: bool = False
    worker: str = ""


@dataclass(frozen=True, kw_only=True)
class Interruption:
    """Why the child stopped early, if it did: decides what unfinished tests become."""

    running: Status
    waiting: Status
    reason: str


class EventLog:
    """Mutable accumulator for one child run; `apply` each event, then `finish`."""

    def __init__(self) -> None:
        self.tests: dict[str, _Test] = {}
        self.collect_problems: dict[str, list[dict[str, Any]]] = {}
        self.unregistered: list[str] = []
        self.unmatched: list[str] = []
        self.strict_unregistered = False
        self.internal_errors: list[str] = []
        self.collected = False
        self.exitstatus: int | None = None
        self.current: str | None = None
        self.crashed: dict[str, str] = {}  # node id -> the xdist worker that died running it
        self.workers_down: list[str] = []

    def apply(self, event: dict[str, Any]) -> None:
        handler = getattr(self, "_on_" + str(event.get("event")), None)
        if handler is not None:
            handler(event)

    # Under xdist every worker reports the same collection: the first report counts.
    def _on_collected(self, event: dict[str, Any]) -> None:
        if self.collected:
            return
        self.collected = True
        for item in event["tests"]:
            self.tests[item["nodeid"]] = _Test(nodeid=item["nodeid"], entry_id=item["entry"])

    def _on_collect_failed(self, event: dict[str, Any]) -> None:
        problems = self.collect_problems.setdefault(str(event.get("entry")), [])
        if all(p.get("nodeid") != event.get("nodeid") for p in problems):
            problems.append(event)

    _on_collect_skipped = _on_collect_failed

    def _on_unregistered(self, event: dict[str, Any]) -> None:
        if not self.unregistered:  # the same list from every worker: keep the first
            self.unregistered = list(event["nodeids"])

    def _on_unmatched(self, event: dict[str, Any]) -> None:
        if not self.unmatched:
            self.unmatched = list(event["entries"])

    def _on_worker_crashed(self, event: dict[str, Any]) -> None:
        self.crashed[str(event["nodeid"])] = str(event.get("worker", "?"))

    def _on_worker_down(self, event: dict[str, Any]) -> None:
        self.workers_down.append(f"{event.get('worker')}: {event.get('error')}")

    def _on_strict_unregistered(self, event: dict[str, Any]) -> None:
        self.strict_unregistered = True

    def _on_internal_error(self, event: dict[str, Any]) -> None:
        self.internal_errors.append(str(event.get("message", "")))

    def _on_session_finish(self, event: dict[str, Any]) -> None:
        self.exitstatus = int(event["exitstatus"])

    def _on_start(self, event: dict[str, Any]) -> None:
        self.current = event["nodeid"]
        if event["nodeid"] in self.tests:
            self.tests[event["nodeid"]].started = True
            self.tests[event["nodeid"]].worker = str(event.get("worker", ""))

    def _on_finish(self, event: dict[str, Any]) -> None:
        self.current = None
        if event["nodeid"] in self.tests:
            self.tests[event["nodeid"]].finished = True

    def _on_report(self, event: dict[str, Any]) -> None:
        test = self.tests.get(event["nodeid"])
        if test is None:
            return
        test.phases[event["when"]] = event["outcome"]
        test.duration += float(event.get("duration", 0.0))
        if event["outcome"] != "passed" and not test.message:
            test.message = str(event.get("message", ""))
            test.longrepr = str(event.get("longrepr", ""))
        test.output = test.output or str(event.get("output", ""))

    def status_of(self, nodeid: str) -> Status | None:
        test = self.tests[nodeid]
        return phase_status(test.phases) if test.finished else None

    def finish(self, stop: Interruption | None, attempt: int = 1) -> list[TestResult]:
        """Every collected test as a result; unfinished ones take the interruption's statuses."""
        return [_result(t, self._stop_for(t, stop), attempt) for t in self.tests.values()]

    def _stop_for(self, test: _Test, stop: Interruption | None) -> Interruption:
        if test.nodeid in self.crashed:
            worker = self.crashed[test.nodeid]
            why = f"pytest-xdist worker {worker} died while running this test"
            return Interruption(running=Status.ERROR, waiting=Status.ERROR, reason=why)
        if stop is not None:
            return stop
        why = "the pytest process ended before this test finished"
        if self.crashed:
            why = "not run: a pytest-xdist worker died and the run ended before this test"
        return Interruption(running=Status.ERROR, waiting=Status.NOT_RUN, reason=why)


def _result(test: _Test, stop: Interruption, attempt: int) -> TestResult:
    status, message = phase_status(test.phases), test.message
    if not test.finished:
        status = stop.running if test.started else stop.waiting
        message = stop.reason
    return TestResult(
        nodeid=test.nodeid,
        entry_id=test.entry_id,
        status=status,
        duration=test.duration,
        message=message,
        longrepr=test.longrepr,
        output=test.output,
        worker=test.worker,
        attempts=(Attempt(number=attempt, status=status, duration=test.duration, message=message),),
    )
