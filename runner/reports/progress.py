"""Live progress from the child's events: a rich status line on a TTY, plain lines elsewhere."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from runner.child.protocol import Event
from runner.model import Registry
from runner.reports.tables import printable
from runner.results import Status, phase_status
from runner.summary import money

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
        self.counts = {s: 0 for s in (Status.PASSED, Status.FAILED, Status.ERROR, Status.SKIPPED)}
        self.left: dict[str, int] = {}
        self.bad: set[str] = set()
        self.phases: dict[str, dict[str, str]] = {}
        self.total = self.done = 0
        self.protected = 0.0
        self.current = ""

    def collected(self, tests: list[dict[str, Any]]) -> None:
        self.total += len(tests)
        for item in tests:
            self.left[item["entry"]] = self.left.get(item["entry"], 0) + 1

    def finished(self, nodeid: str, entry_id: str | None) -> Status:
        status = phase_status(self.phases.pop(nodeid, {}))
        self.counts[status] = self.counts.get(status, 0) + 1
        self.done += 1
        if entry_id is None or entry_id not in self.left:
            return status
        if status in (Status.FAILED, Status.ERROR):
            self.bad.add(entry_id)
        self.left[entry_id] -= 1
        if not self.left[entry_id] and entry_id not in self.bad:
            self.protected += self.registry.by_id[entry_id].mrr
        return status

    def line(self) -> Text:
        c = self.counts
        text = Text(f"[{self.done}/{self.total}] ")
        text.append(f"{c[Status.PASSED]} passed", "green")
        text.append(", ")
        text.append(f"{c[Status.FAILED] + c[Status.ERROR]} failed", "red")
        text.append(f", {c[Status.SKIPPED]} skipped · {money(self.protected)} protected so far")
        if self.current:
            text.append(f" · running {self.current}", "dim")
        return text


class Progress:
    """Feeds events to a Tally and shows them; use as a context manager around the run."""

    def __init__(self, registry: Registry, console: Console) -> None:
        self.tally = Tally(registry)
        self.console = console
        self.entries: dict[str, str | None] = {}
        self.live = (
            Live(console=console, transient=True, auto_refresh=True, refresh_per_second=8)
            if console.is_terminal
            else None
        )

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == Event.COLLECTED and event.get("attempt", 1) == 1 and not self.entries:
            self.tally.collected(event["tests"])
            self.entries.update({t["nodeid"]: t["entry"] for t in event["tests"]})
            self.console.print(f"collected {self.tally.total} tests", highlight=False)
        elif kind == Event.START:
            self.tally.current = event["nodeid"]
        elif kind == Event.REPORT:
            self.tally.phases.setdefault(event["nodeid"], {})[event["when"]] = event["outcome"]
        elif kind == Event.FINISH:
            self._finished(event)
        if self.live is not None:
            self.live.update(self.tally.line())

    def _finished(self, event: dict[str, Any]) -> None:
        nodeid = event["nodeid"]
        retry = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        if retry:
            status = phase_status(self.tally.phases.pop(nodeid, {}))
        else:
            status = self.tally.finished(nodeid, self.entries.get(nodeid))
        if self.live is None:  # plain output: one line, without rich's layout cost per test
            self.console.file.write(printable(f"{status.upper():8}{nodeid}{retry}") + "\n")
        else:
            label = Text(f"{status.upper():8}", style=_STYLE.get(status, ""))
            line = Text(printable(f"{nodeid}{retry}"))
            self.console.print(label + line, highlight=False, soft_wrap=True)
        self.tally.current = ""
