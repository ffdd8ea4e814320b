"""Fold one child's event stream into per-test results and facts about the child.

The stream may end anywhere (crash, timeout, a stop signal): `finish` turns whatever was
seen into a complete set of results in which every collected test has a status, and
`facts` says how the child's session went, for the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runner.child.protocol import Event, EventData
from runner.results import Attempt, ChildRun, Status, TestResult, phase_status

# Under `--dist each` every worker runs every test: the worst outcome of a phase wins.
_SEVERITY = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 3, "failed": 4}
DESELECTED_MESSAGE = "deselected by pytest's options (-k, -m, addopts or a plugin)"


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

    def report(self, event: EventData) -> None:
        when, outcome = str(event["when"]), str(event["outcome"])
        if _SEVERITY.get(outcome, 4) >= _SEVERITY.get(self.phases.get(when, "passed"), 0):
            self.phases[when] = outcome
        self.duration += float(event.get("duration", 0.0))
        if outcome != "passed" and (not self.message or outcome == "failed"):
            self.message = str(event.get("message", "")) or self.message
            self.longrepr = str(event.get("longrepr", "")) or self.longrepr
        self.output = self.output or str(event.get("output", ""))


@dataclass(frozen=True, kw_only=True)
class Interruption:
    """Why the child stopped early, if it did: decides what unfinished tests become."""

    running: Status
    waiting: Status
    reason: str
    running_reason: str = ""  # for a test that had started, when it differs


class EventLog:
    """Mutable accumulator for one child run; `apply` each event, then `finish`."""

    def __init__(self) -> None:
        self.tests: dict[str, _Test] = {}
        self.dropped: dict[str, str] = {}  # node id -> entry, deselected by pytest's options
        self.matched: set[str] = set()
        self.collect_problems: dict[str, list[EventData]] = {}
        self.unregistered: list[str] = []
        self.unmatched: list[str] = []
        self.strict_unregistered = False
        self.internal_errors: list[str] = []
        self.collected = False
        self.mode: str | None = None  # set at session start: '' or --collect-only, ...
        self.exit_request: EventData | None = None
        self.exitstatus: int | None = None  # at the end of the session
        self.final_status: int | None = None  # once pytest is done (unconfigure)
        self.unconfigured = False
        self.running: dict[str, str] = {}  # worker ('' in one process) -> node id
        self.crashed: dict[str, str] = {}  # node id -> the xdist worker that died running it
        self.workers_down: list[str] = []

    def apply(self, event: EventData) -> None:
        handler = _HANDLERS.get(str(event.get("event")))
        if handler is not None:
            handler(self, event)

    @property
    def session_finished(self) -> bool:
        return self.exitstatus is not None

    def done(self) -> bool:
        """pytest is through (its last hook ran); only the interpreter's exit is left."""
        return self.unconfigured

    def _session_start(self, event: EventData) -> None:
        self.mode = str(event.get("mode", ""))

    # Under xdist every worker reports the same collection: the first report counts.
    def _collected(self, event: EventData) -> None:
        if self.collected:
            return
        self.collected = True
        for item in event["tests"]:
            self.tests[item["nodeid"]] = _Test(nodeid=item["nodeid"], entry_id=item["entry"])
        self.dropped = {d["nodeid"]: d["entry"] for d in event.get("dropped", ())}
        self.matched.update(event.get("matched", ()))

    def _collect_problem(self, event: EventData) -> None:
        for entry in event.get("entries") or [None]:
            problems = self.collect_problems.setdefault(str(entry), [])
            if all(p.get("nodeid") != event.get("nodeid") for p in problems):
                problems.append(event)
        self.matched.update(event.get("entries") or ())

    def _unregistered(self, event: EventData) -> None:
        if not self.unregistered:  # the same list from every worker: keep the first
            self.unregistered = list(event["nodeids"])

    def _unmatched(self, event: EventData) -> None:
        if not self.unmatched:
            self.unmatched = list(event["entries"])

    def _strict(self, event: EventData) -> None:
        self.strict_unregistered = True

    def _start(self, event: EventData) -> None:
        test = self.tests.get(event["nodeid"])
        self.running[str(event.get("worker", ""))] = event["nodeid"]
        if test is not None:
            test.started = True
            test.worker = str(event.get("worker", ""))

    def _report(self, event: EventData) -> None:
        test = self.tests.get(event["nodeid"])
        if test is not None:
            test.report(event)

    def _finish(self, event: EventData) -> None:
        self.running.pop(str(event.get("worker", "")), None)
        if event["nodeid"] in self.tests:
            self.tests[event["nodeid"]].finished = True

    def _internal_error(self, event: EventData) -> None:
        self.internal_errors.append(str(event.get("message", "")))

    def _exit_requested(self, event: EventData) -> None:
        self.exit_request = self.exit_request or event

    def _session_finish(self, event: EventData) -> None:
        status = event.get("exitstatus")
        self.exitstatus = int(status) if status is not None else 0

    def _unconfigure(self, event: EventData) -> None:
        status = event.get("exitstatus")
        self.final_status = int(status) if status is not None else self.exitstatus
        self.unconfigured = True

    def _worker_crashed(self, event: EventData) -> None:
        self.crashed[str(event["nodeid"])] = str(event.get("worker", "?"))

    def _worker_down(self, event: EventData) -> None:
        self.workers_down.append(f"{event.get('worker')}: {event.get('error')}")

    def not_started(self) -> list[str]:
        """Collected tests that never started, in run order."""
        return [t.nodeid for t in self.tests.values() if not t.started]

    def finish(self, stop: Interruption | None, attempt: int = 1) -> list[TestResult]:
        """Every collected test as a result; unfinished ones take the interruption's statuses."""
        mode = self.mode or ""
        results = [_result(t, self._stop_for(t, stop), attempt, mode) for t in self.tests.values()]
        return results + [_deselected(n, e, attempt) for n, e in self.dropped.items()]

    def _stop_for(self, test: _Test, stop: Interruption | None) -> Interruption:
        if test.nodeid in self.crashed:
            worker = self.crashed[test.nodeid]
            why = f"pytest-xdist worker {worker} died while running this test"
            return Interruption(running=Status.ERROR, waiting=Status.ERROR, reason=why)
        return stop or Interruption(
            running=Status.ERROR,
            waiting=Status.NOT_RUN,
            reason=self._why_not_run(),
            running_reason="the pytest session ended while this test was running",
        )

    def _why_not_run(self) -> str:
        if self.mode:
            return f"not run: pytest ran with {self.mode}"
        if self.exit_request is not None:
            return f"not run: {ended_early(self.exit_request)}"
        if self.crashed:
            return "not run: a pytest-xdist worker died and the run ended before this test"
        return "not run: the pytest session ended before this test ran"

    def facts(self, attempt: int, purpose: str, returncode: int | None, stopped: str) -> ChildRun:
        """What the verdict needs to know about this child."""
        request = self.exit_request or {}
        return ChildRun(
            attempt=attempt,
            purpose=purpose,
            returncode=returncode,
            pytest_status=self.final_status if self.final_status is not None else self.exitstatus,
            stopped=stopped,
            session_started=self.mode is not None,
            session_finished=self.session_finished,
            collected=self.collected,
            exit_request=f"{request.get('kind')}: {request.get('message')}" if request else "",
            no_run_mode=self.mode or "",
            internal_errors=tuple(self.internal_errors),
            crashed=tuple(self.crashed.items()),
            workers_down=tuple(self.workers_down),
            died_in=next(iter(self.running.values()), "") if not self.session_finished else "",
            failures=self._failures(),
            ran=sum(t.finished for t in self.tests.values()),
            unconfigured=self.unconfigured,
            running_at_death=() if self.session_finished else tuple(self.running.values()),
        )

    def _failures(self) -> int:
        failing = (Status.FAILED, Status.ERROR)
        tests = sum(phase_status(t.phases) in failing for t in self.tests.values() if t.finished)
        failed = {
            p["nodeid"]
            for problems in self.collect_problems.values()
            for p in problems
            if p["event"] == Event.COLLECT_FAILED
        }
        return tests + len(failed) + len(self.crashed)


_HANDLERS: dict[str, Callable[[EventLog, EventData], None]] = {
    Event.SESSION_START: EventLog._session_start,
    Event.COLLECTED: EventLog._collected,
    Event.COLLECT_FAILED: EventLog._collect_problem,
    Event.COLLECT_SKIPPED: EventLog._collect_problem,
    Event.UNREGISTERED: EventLog._unregistered,
    Event.UNMATCHED: EventLog._unmatched,
    Event.STRICT_UNREGISTERED: EventLog._strict,
    Event.START: EventLog._start,
    Event.REPORT: EventLog._report,
    Event.FINISH: EventLog._finish,
    Event.INTERNAL_ERROR: EventLog._internal_error,
    Event.EXIT_REQUESTED: EventLog._exit_requested,
    Event.SESSION_FINISH: EventLog._session_finish,
    Event.UNCONFIGURE: EventLog._unconfigure,
    Event.WORKER_CRASHED: EventLog._worker_crashed,
    Event.WORKER_DOWN: EventLog._worker_down,
}


def ended_early(request: EventData) -> str:
    """How a session that was ended early ended, in words."""
    kind, message = str(request.get("kind")), str(request.get("message", ""))
    how = {
        "Exit": "pytest.exit() ended the session",
        "Interrupted": "the session was stopped (session.shouldstop)",
        "Failed": "the session was failed (session.shouldfail)",
    }.get(kind, f"a {kind} ended the session")
    return f"{how}: {message}" if message else how


def _result(test: _Test, stop: Interruption, attempt: int, mode: str) -> TestResult:
    status, message = phase_status(test.phases), test.message
    if test.finished and status is Status.NOT_RUN:
        message = f"not run: pytest ran with {mode}" if mode else "not run: its call never ran"
    if not test.finished:
        status = stop.running if test.started else stop.waiting
        message = (stop.running_reason or stop.reason) if test.started else stop.reason
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


def _deselected(nodeid: str, entry_id: str, attempt: int) -> TestResult:
    status, message = Status.DESELECTED, DESELECTED_MESSAGE
    return TestResult(
        nodeid=nodeid,
        entry_id=entry_id,
        status=status,
        message=message,
        attempts=(Attempt(number=attempt, status=status, duration=0.0, message=message),),
    )
