"""The pytest plugin loaded into the child (`-p runner.plugin`).

It maps collected tests to registry entries, deselects what the run did not select,
and streams one JSON event per line to the file named by UTR_EVENTS, so the parent
never scrapes pytest's text. It imports nothing from the rest of the runner.

Under pytest-xdist every worker collects and runs its tests and writes its own events
(tagged with the worker's id; appends of whole lines interleave safely), while the
controller, which collects nothing, reports what only it sees: a worker that died and
the test it held, and the end of the session. It also schedules: tests of entries that
share a `group` go to one worker, every other test wherever a worker is free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

EVENTS_ENV = "UTR_EVENTS"
SELECTION_ENV = "UTR_SELECTION"
WORKER_ENV = "PYTEST_XDIST_WORKER"
MAX_TEXT = 8_000


class EntryIndex:
    """Finds the most specific registry entry for a collected path / node id."""

    def __init__(self, entries: list[dict[str, Any]], root: Path) -> None:
        self.by_file: dict[Path, list[tuple[str, str]]] = {}
        self.by_dir: dict[Path, str] = {}
        for entry in entries:
            file_part, _, suffix = str(entry["path"]).partition("::")
            target = (root / file_part).resolve()
            if target.is_dir():
                self.by_dir[target] = entry["id"]
            else:
                self.by_file.setdefault(target, []).append((suffix, entry["id"]))
        for options in self.by_file.values():
            options.sort(key=lambda o: -len(o[0]))

    def find(self, path: Path, nodeid: str) -> str | None:
        suffix = nodeid.partition("::")[2]
        for wanted, entry_id in self.by_file.get(path, []):
            if not wanted or suffix == wanted or suffix.startswith((wanted + "::", wanted + "[")):
                return entry_id
        for parent in path.parents:
            if parent in self.by_dir:
                return self.by_dir[parent]
        return None


class EventStream:
    """Appends one JSON object per line; each line is a single write()."""

    def __init__(self, path: str, worker: str | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.tag = {"worker": worker} if worker else {}

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields, **self.tag}, default=str) + "\n"
        os.write(self.fd, line.encode("utf-8", "replace"))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n... (truncated)"


def _message(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    lines = [ln for ln in report.longreprtext.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class RunnerPlugin:
    """Hooks that turn a pytest session into the runner's event stream."""

    def __init__(self, config: pytest.Config, stream: EventStream, spec: dict[str, Any]) -> None:
        self.stream = stream
        self.index = EntryIndex(spec["entries"], Path(spec["root"]))
        self.worker = os.environ.get(WORKER_ENV)
        self.selected = set(spec["selected"])
        self.order = {entry_id: i for i, entry_id in enumerate(spec["selected"])}
        self.check_registry = bool(spec.get("check_registry", True))
        self.strict = self.check_registry and bool(spec.get("strict"))
        self.root = config.rootpath
        self.touched: set[str | None] = set()
        self.entries: dict[str, str | None] = {}
        self.resolved: dict[Path, Path] = {}

    def entry_for(self, path: Path, nodeid: str) -> str | None:
        """Cached per node id, and paths resolved once per file: this runs for every test."""
        if nodeid not in self.entries:
            if path not in self.resolved:
                self.resolved[path] = path.resolve()
            self.entries[nodeid] = self.index.find(self.resolved[path], nodeid)
        return self.entries[nodeid]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed or report.skipped:
            path = self.root / report.nodeid.split("::")[0]
            entry = self.entry_for(path, report.nodeid)
            self.touched.add(entry)
            self.stream.emit(
                "collect_" + report.outcome,
                nodeid=report.nodeid,
                entry=entry,
                message=_message(report),
                longrepr=_clip(report.longreprtext),
            )

    def _split(
        self, items: list[pytest.Item]
    ) -> tuple[list[pytest.Item], list[pytest.Item], list[str]]:
        """(selected, deselected, unregistered node ids); duplicates collected once."""
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        unregistered: list[str] = []
        for item in {item.nodeid: item for item in items}.values():
            entry = self.entry_for(item.path, item.nodeid)
            self.touched.add(entry)
            if entry is None:
                unregistered.append(item.nodeid)
            (keep if entry in self.selected else drop).append(item)
        return keep, drop, unregistered

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep, drop, unregistered = self._split(items)
        # the registry's run order (tier 1 first, then by MRR); file order within an entry
        keep.sort(key=lambda item: self.order.get(self.entry_for(item.path, item.nodeid), 0))
        items[:] = keep
        if drop:
            config.hook.pytest_deselected(items=drop)
        self.stream.emit("unregistered", nodeids=unregistered)
        if self.check_registry:
            self._stop_on_unmatched()
        if self.strict and unregistered:
            self.stream.emit("strict_unregistered")
            pytest.exit("collected tests are not registered (--strict)", returncode=4)

    def _stop_on_unmatched(self) -> None:
        unmatched = sorted(e for e in self.selected if e not in self.touched)
        if unmatched:
            self.stream.emit("unmatched", entries=unmatched)
            pytest.exit(f"registry entries match no collected test: {unmatched}", returncode=4)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        tests = [
            {"nodeid": i.nodeid, "entry": self.entry_for(i.path, i.nodeid)} for i in session.items
        ]
        self.stream.emit("collected", tests=tests)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.stream.emit("start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        fields: dict[str, Any] = {
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "duration": report.duration,
        }
        if report.failed or report.skipped:
            fields["message"] = _message(report)
        if report.failed:
            fields["longrepr"] = _clip(report.longreprtext)
        if hasattr(report, "wasxfail"):
            fields["wasxfail"] = str(report.wasxfail)
        if report.failed and (report.capstdout or report.capstderr):
            fields["output"] = _clip(report.capstdout + report.capstderr)
        self.stream.emit("report", **fields)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.stream.emit("finish", nodeid=nodeid)

    def pytest_internalerror(self, excrepr: object) -> None:
        if not self.worker:  # xdist hands a worker's internal error to the controller
            self.stream.emit("internal_error", message=_clip(str(excrepr)))

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        if not self.worker:  # a worker's end is not the session's
            self.stream.emit("session_finish", exitstatus=int(exitstatus))


class ControllerPlugin:
    """The xdist controller's events: workers report tests; this reports the workers."""

    def __init__(self, stream: EventStream, spec: dict[str, Any]) -> None:
        self.stream = stream
        self.root = Path(spec["root"])
        self.index = EntryIndex(spec["entries"], self.root)
        self.groups = {e["id"]: e["group"] for e in spec["entries"] if e.get("group")}

    def group_of(self, nodeid: str) -> str | None:
        entry = self.index.find((self.root / nodeid.partition("::")[0]).resolve(), nodeid)
        return self.groups.get(entry or "")

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Our own scheduler, through xdist's public hook: xdist's `loadgroup` relies on
        renaming node ids, which pytest 9.2 no longer lets it do."""
        if not self.groups:
            return None
        from runner.xdist_groups import GroupScheduling  # noqa: PLC0415 - xdist is present

        return GroupScheduling(config, log, self.group_of)

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport) -> None:
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        self.stream.emit("worker_crashed", nodeid=crashitem, worker=str(worker))

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        if error is not None:
            self.stream.emit("worker_down", worker=str(node.gateway.id), error=str(error))

    def pytest_internalerror(self, excrepr: object) -> None:
        self.stream.emit("internal_error", message=_clip(str(excrepr)))

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.stream.emit("session_finish", exitstatus=int(exitstatus))


def _is_controller(config: pytest.Config) -> bool:
    distributed = getattr(config.option, "dist", "no") != "no"
    return distributed and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    events, spec_path = os.environ.get(EVENTS_ENV), os.environ.get(SELECTION_ENV)
    if not events or not spec_path:
        return
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if _is_controller(config):
        controller = ControllerPlugin(EventStream(events), spec)
        config.pluginmanager.register(controller, "utr-controller")
        return
    stream = EventStream(events, os.environ.get(WORKER_ENV))
    config.pluginmanager.register(RunnerPlugin(config, stream, spec), "unified-test-runner")
