"""Entry results: a run's pytest tests rolled up into one result per selected entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from runner.child.protocol import Event, EventData
from runner.model import Entry
from runner.results import EntryResult, Status, TestResult, rollup
from runner.select import Selection
from runner.supervisor.events import EventLog, ended_early

PENDING_NOTE = "pending: registered, not written yet"


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """What the roll-up needs to know about the run beyond its tests."""

    first: EventLog  # the first child's log: collection happened there
    stopped: str  # why the runner stopped the first child, if it did
    timeout: float
    environment: str | None  # the --env profile, for an entry's `allow_skips`


def entry_results(
    selection: Selection, tests: list[TestResult], facts: RunFacts
) -> tuple[EntryResult, ...]:
    """One result per selected entry, in run order."""
    by_entry: dict[str, list[TestResult]] = {}
    for test in tests:
        by_entry.setdefault(test.entry_id, []).append(test)
    context = _Context(selection, by_entry, facts)
    return tuple(context.result(e) for e in selection.entries)


class _Context:
    def __init__(
        self, selection: Selection, by_entry: dict[str, list[TestResult]], facts: RunFacts
    ) -> None:
        self.selection = selection
        self.by_entry = by_entry
        self.log = facts.first
        self.stopped = facts.stopped
        self.timeout = facts.timeout
        self.environment = facts.environment

    def result(self, entry: Entry) -> EntryResult:
        if entry.pending:
            return EntryResult(entry_id=entry.id, status=Status.PENDING, note=PENDING_NOTE)
        problems = self.log.collect_problems.get(entry.id, [])
        failed = [p for p in problems if p["event"] == Event.COLLECT_FAILED]
        skipped = [_skipped_module(entry.id, p) for p in problems if p not in failed]
        tests = (*self.by_entry.get(entry.id, ()), *skipped)
        if failed:
            message = str(failed[0]["message"]) or "collection failed"
            return EntryResult(
                entry_id=entry.id,
                status=Status.ERROR,
                tests=tests,
                note=f"collection failed: {failed[0]['nodeid']}: {message}",
                collect_error=message,
            )
        if tests:
            return rollup(entry.id, tests, allow_skips=entry.skips_allowed(self.environment))
        return self._empty(entry)

    def _empty(self, entry: Entry) -> EntryResult:
        if not self.log.collected:
            return self._not_collected(entry)
        if entry.id in self.log.matched:
            return self._umbrella(entry)
        return EntryResult(
            entry_id=entry.id, status=Status.NOT_RUN, note="not run: no test of it was collected"
        )

    def _not_collected(self, entry: Entry) -> EntryResult:
        if self.stopped == "timeout":
            note = f"timed out during collection: the level timeout of {self.timeout:g} s struck"
            return EntryResult(entry_id=entry.id, status=Status.TIMED_OUT, note=note)
        if self.stopped:
            note = f"not run: the run was stopped by {self.stopped} before collection finished"
        elif self.log.exit_request is not None:
            note = f"not run: {ended_early(self.log.exit_request)}"
        else:
            note = "not run: pytest ended before collection finished"
        return EntryResult(entry_id=entry.id, status=Status.NOT_RUN, note=note)

    def _umbrella(self, entry: Entry) -> EntryResult:
        """An entry whose every test belongs to more specific entries: it stands or falls
        with theirs (a catch-all directory entry)."""
        owners = [o for o in self.selection.runnable if o.id != entry.id and _below(o, entry)]
        tests = tuple(t for o in owners for t in self.by_entry.get(o.id, ()))
        names = ", ".join(o.id for o in owners[:5]) + (", ..." if len(owners) > 5 else "")
        if not tests:
            note = "not run: its tests belong to more specific entries, none of them selected"
            return EntryResult(entry_id=entry.id, status=Status.NOT_RUN, note=note)
        rolled = rollup(entry.id, tests, allow_skips=entry.skips_allowed(self.environment))
        note = f"no tests of its own: {rolled.status} with the entries under it ({names})"
        return EntryResult(entry_id=entry.id, status=rolled.status, note=note)


def _skipped_module(entry_id: str, problem: EventData) -> TestResult:
    """A module skipped as a whole (`pytest.skip(allow_module_level=True)`, importorskip):
    its tests never ran, so it counts as a skipped test of its entry."""
    message = f"skipped at collection: {problem['message']}"
    return TestResult(
        nodeid=str(problem["nodeid"]), entry_id=entry_id, status=Status.SKIPPED, message=message
    )


def _below(inner: Entry, outer: Entry) -> bool:
    """`inner`'s path lies inside `outer`'s (a node id in its file, a file in its directory)."""
    if inner.path.startswith(outer.path + "::"):
        return True
    outer_dir = PurePosixPath(outer.file_part.rstrip("/"))
    inner_file = PurePosixPath(inner.file_part)
    return inner_file != outer_dir and outer_dir in inner_file.parents
