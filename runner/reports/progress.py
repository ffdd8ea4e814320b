"""Live progress from the child's events.

On a terminal, a rich progress bar (tests done, failures, MRR protected so far, the test
running now); everywhere, a line per finished entry and per failing test. `-v` adds a line
per test, `-q` shows nothing until the summary. A line per test is cheap to write but not
to read: at 64,000 tests it was 17 MB of terminal output, and the run a third slower.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.text import Text

from runner.child.protocol import Event
from runner.model import Registry
from runner.reports.tables import printable
from runner.results import Status, phase_status
from runner.summary import money

QUIET, NORMAL, VERBOSE = -1, 0, 1
_BAD = frozenset({Status.FAILED, Status.ERROR})
_GOOD = frozenset({Status.PASSED, Status.XPASSED})
_STYLE = {
    Status.PASSED: "green",
    Status.FAILED: "red",
    Status.ERROR: "red",
    Status.SKIPPED: "yellow",
}


class Tally:
    """Counts so far, and the MRR of entries whose every test has passed."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.left: dict[str, int] = {}
        self.tests: dict[str, int] = {}
        self.unverified: set[str] = set()  # entries with a test that did not pass
        self.failing: set[str] = set()  # entries with a test that failed
        self.phases: dict[str, dict[str, str]] = {}
        self.total = self.done = self.failed = 0
        self.protected = 0.0

    def collected(self, tests: list[dict[str, Any]]) -> None:
        self.total += len(tests)
        for item in tests:
            self.left[item["entry"]] = self.left.get(item["entry"], 0) + 1
        self.tests.update(self.left)

    def finished(self, nodeid: str, entry_id: str | None) -> tuple[Status, str | None]:
        """The test's status, and the entry it completed (its last test), if any."""
        status = phase_status(self.phases.pop(nodeid, {}))
        self.done += 1
        self.failed += status in _BAD
        if entry_id is None or not self.left.get(entry_id):
            return status, None
        if status not in _GOOD:
            self.unverified.add(entry_id)
        if status in _BAD:
            self.failing.add(entry_id)
        self.left[entry_id] -= 1
        if self.left[entry_id]:
            return status, None
        if entry_id not in self.unverified:
            self.protected += self.registry.by_id[entry_id].mrr
        return status, entry_id

    def summary(self) -> str:
        return f"{self.failed} failed · {money(self.protected)} protected so far"


class Progress:
    """Feeds events to a Tally and shows them; use as a context manager around the run."""

    def __init__(self, registry: Registry, console: Console, verbosity: int = NORMAL) -> None:
        self.tally = Tally(registry)
        self.console = console
        self.verbosity = verbosity
        self.entries: dict[str, str | None] = {}
        self.bar = _bar(console) if console.is_terminal and verbosity > QUIET else None
        self.task = self.bar.add_task("starting", total=None, note="") if self.bar else None

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == Event.COLLECTED and event.get("attempt", 1) == 1 and not self.entries:
            self._collected(event["tests"])
        elif kind == Event.START:
            self._show(description=printable(event["nodeid"]))
        elif kind == Event.REPORT:
            self.tally.phases.setdefault(event["nodeid"], {})[event["when"]] = event["outcome"]
        elif kind == Event.FINISH:
            self._finished(event)

    def _collected(self, tests: list[dict[str, Any]]) -> None:
        self.tally.collected(tests)
        self.entries.update({t["nodeid"]: t["entry"] for t in tests})
        self._print(Text(f"collected {self.tally.total} pytest tests"))
        self._show(total=self.tally.total)

    def _finished(self, event: dict[str, Any]) -> None:
        nodeid, attempt = event["nodeid"], event.get("attempt", 1)
        if attempt > 1:  # a retry: the first attempt was counted
            status, done = phase_status(self.tally.phases.pop(nodeid, {})), None
        else:
            status, done = self.tally.finished(nodeid, self.entries.get(nodeid))
        if self.verbosity >= VERBOSE or status in _BAD:
            retry = f" (attempt {attempt})" if attempt > 1 else ""
            self._print(_line(status, f"{nodeid}{retry}"))
        if done is not None:
            self._entry_done(done)
        self._show(completed=self.tally.done, note=self.tally.summary())

    def _entry_done(self, entry_id: str) -> None:
        label = "passed"
        if entry_id in self.tally.failing:
            label = "failed"
        elif entry_id in self.tally.unverified:
            label = "not verified"
        count = self.tally.tests[entry_id]
        plural = "s" if count != 1 else ""
        self._print(Text(f"entry {entry_id}: {label} ({count} pytest test{plural})"))

    def _print(self, text: Text) -> None:
        if self.verbosity <= QUIET:
            return
        if self.bar is None:  # plain output: no rich layout cost per line
            self.console.file.write(printable(text.plain) + "\n")
            self.console.file.flush()
        else:
            self.console.print(text, highlight=False, soft_wrap=True)

    def _show(self, **fields: Any) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, **fields)


def _line(status: Status, what: str) -> Text:
    return Text(f"{status.upper():8}", style=_STYLE.get(status, "")) + Text(printable(what))


def _bar(console: Console) -> Bar:
    return Bar(
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}", markup=False),
        TimeElapsedColumn(),
        TextColumn("{task.description}", style="dim", markup=False),
        console=console,
        transient=True,
        refresh_per_second=8,
    )
