"""The pytest plugin loaded into the child (`-p <package>.plugin --utr-spec PATH`).

It maps collected tests to registry entries, deselects what the run did not select, and
streams one JSON event per line to the events file the spec names, so the parent never
scrapes pytest's text. It imports only modules of its own package, relatively: the child
loads the package under a private name, so that nothing of the runner's checkout lands on
the import path of the tests it runs.

Under pytest-xdist every worker collects and runs its tests and writes its own events
(tagged with the worker's id; appends of whole lines interleave safely), while the
controller, which collects nothing, reports what only it sees: a worker that died and
the test it held, and the end of the session. It also schedules: tests of entries that
share a `group` go to one worker, every other test wherever a worker is free.

PYTEST_DONT_REWRITE: pytest would parse and rewrite this module's asserts in every child
(each start, where no bytecode is written); it has none whose message matters.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

import pytest

from .entryindex import EntryIndex
from .protocol import SPEC_OPTION, Event, Spec

MAX_TEXT = 8_000
NO_RUN_OPTIONS = (
    ("collectonly", "--collect-only"),
    ("setuponly", "--setup-only"),
    ("setupplan", "--setup-plan"),
)


class EventStream:
    """Appends one JSON object per line; each line is a single write()."""

    def __init__(self, path: str, worker: str | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.tag = {"worker": worker} if worker else {}

    def emit(self, event: Event, **fields: Any) -> None:
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


def _outcome(report: pytest.TestReport) -> str:
    """pytest's outcome, with an xfail told apart: `xfailed`, or `xpassed` (not strict)."""
    if not hasattr(report, "wasxfail"):
        return report.outcome
    return "xfailed" if report.skipped else "xpassed" if report.passed else report.outcome


def _python_file(path: Path, config: pytest.Config) -> bool:
    """Whether pytest collects `path` without being given it (its `python_files`)."""
    patterns = [str(p) for p in config.getini("python_files")]
    return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(str(path), p) for p in patterns)


class SessionEvents:
    """The session's own events, from the process that speaks for it (not an xdist worker;
    a worker reports only what stops it early)."""

    def __init__(self, stream: EventStream, speaks_for_session: bool) -> None:
        self.stream = stream
        self.speaks = speaks_for_session
        self.session: pytest.Session | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        if self.speaks:
            modes = [flag for name, flag in NO_RUN_OPTIONS if session.config.getoption(name)]
            self.stream.emit(Event.SESSION_START, mode=modes[0] if modes else "")

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        value = excinfo.value
        self.stream.emit(
            Event.EXIT_REQUESTED,
            kind=excinfo.typename,
            message=str(getattr(value, "msg", "") or value),
            returncode=getattr(value, "returncode", None),
        )

    def pytest_internalerror(self, excrepr: object) -> None:
        if self.speaks:  # xdist hands a worker's internal error to the controller
            self.stream.emit(Event.INTERNAL_ERROR, message=_clip(str(excrepr)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.speaks:  # read after the other plugins: one may have changed the status
            self.stream.emit(Event.SESSION_FINISH, exitstatus=int(session.exitstatus))

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        if self.speaks:
            status = None if self.session is None else int(self.session.exitstatus)
            self.stream.emit(Event.UNCONFIGURE, exitstatus=status)


class RunnerPlugin:
    """Hooks that turn a pytest session's collection and tests into the event stream."""

    def __init__(self, config: pytest.Config, stream: EventStream, spec: Spec) -> None:
        self.stream = stream
        self.index = EntryIndex(list(spec["entries"]), Path(spec["root"]))
        self.selected = set(spec["selected"])
        self.only = None if spec.get("only") is None else set(spec["only"] or ())
        self.order = {entry_id: i for i, entry_id in enumerate(spec["selected"])}
        self.check_registry = bool(spec.get("check_registry", True))
        self.strict = self.check_registry and bool(spec.get("strict"))
        self.inventory = bool(spec.get("inventory"))
        self.root = config.rootpath
        self.matched: set[str] = set()
        self.entries: dict[str, str | None] = {}
        self.resolved: dict[Path, Path] = {}
        self.kept: list[pytest.Item] = []

    def _path(self, path: Path) -> Path:
        if path not in self.resolved:
            self.resolved[path] = path.resolve()
        return self.resolved[path]

    def entry_for(self, path: Path, nodeid: str) -> str | None:
        """Cached per node id, and paths resolved once per file: this runs for every test."""
        if nodeid not in self.entries:
            matches = self.index.matching(self._path(path), nodeid)
            self.matched.update(matches)
            self.entries[nodeid] = matches[0] if matches else None
        return self.entries[nodeid]

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> Any:
        """A registered file outside `python_files` is collected, as naming it would."""
        resolved = self._path(file_path)
        if file_path.suffix != ".py" or not self.index.registered_file(resolved):
            return None
        if parent.session.isinitpath(file_path) or _python_file(file_path, parent.config):
            return None
        hook = parent.session.gethookproxy(file_path)
        return hook.pytest_pycollect_makemodule(module_path=file_path, parent=parent)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed or report.skipped:
            path = self._path(self.root / report.nodeid.split("::")[0])
            entries = self.index.inside(path) or [
                e for e in (self.index.find(path, report.nodeid),) if e
            ]
            self.matched.update(entries)
            self.stream.emit(
                Event.COLLECT_FAILED if report.failed else Event.COLLECT_SKIPPED,
                nodeid=report.nodeid,
                entries=entries,
                message=_message(report),
                longrepr=_clip(report.longreprtext),
            )

    def _wanted(self, item: pytest.Item, entry: str | None) -> bool:
        if self.inventory:
            return True
        return entry in self.selected and (self.only is None or item.nodeid in self.only)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        unregistered: list[str] = []
        for item in {item.nodeid: item for item in items}.values():  # duplicates once
            entry = self.entry_for(item.path, item.nodeid)
            if entry is None:
                unregistered.append(item.nodeid)
            (keep if self._wanted(item, entry) else drop).append(item)
        # the registry's run order (tier 1 first, then by MRR); file order within an entry
        keep.sort(key=lambda item: self.order.get(self.entries[item.nodeid] or "", 0))
        items[:] = self.kept = keep
        if drop:
            config.hook.pytest_deselected(items=drop)
        self.stream.emit(Event.UNREGISTERED, nodeids=unregistered)
        self._check(unregistered)

    def _check(self, unregistered: list[str]) -> None:
        if not self.check_registry:
            return
        unmatched = sorted(self.selected - self.matched)
        if unmatched:
            self.stream.emit(Event.UNMATCHED, entries=unmatched)
            pytest.exit(f"registry entries match no collected test: {unmatched}", returncode=4)
        if self.strict and unregistered:
            self.stream.emit(Event.STRICT_UNREGISTERED)
            pytest.exit("collected tests are not registered (--strict)", returncode=4)

    @pytest.hookimpl(tryfirst=True)  # before xdist sends a worker's collection on
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """What will run, after every other plugin had its say: what we kept and another
        plugin then dropped (-k, -m, a conftest) is reported as dropped, and a test of an
        entry the run did not select that another plugin put back does not run."""
        session.items[:] = [
            i for i in session.items if self._wanted(i, self.entry_for(i.path, i.nodeid))
        ]
        final = {item.nodeid for item in session.items}
        self.stream.emit(
            Event.COLLECTED,
            tests=[
                {"nodeid": i.nodeid, "entry": self.entries.get(i.nodeid)} for i in session.items
            ],
            dropped=[
                {"nodeid": i.nodeid, "entry": self.entries[i.nodeid]}
                for i in self.kept
                if i.nodeid not in final
            ],
            matched=sorted(self.matched),
        )

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.stream.emit(Event.START, nodeid=nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = _outcome(report)
        fields: dict[str, Any] = {"when": report.when, "outcome": outcome}
        if outcome != "passed":
            fields["message"] = str(report.wasxfail) if "xf" in outcome else _message(report)
        if report.failed:
            fields["longrepr"] = _clip(report.longreprtext)
            if report.capstdout or report.capstderr:
                fields["output"] = _clip(report.capstdout + report.capstderr)
        self.stream.emit(Event.REPORT, nodeid=report.nodeid, duration=report.duration, **fields)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.stream.emit(Event.FINISH, nodeid=nodeid)


class ControllerPlugin:
    """The xdist controller's events: workers report tests; this reports the workers."""

    def __init__(self, stream: EventStream, spec: Spec) -> None:
        self.stream = stream
        self.root = Path(spec["root"])
        self.index = EntryIndex(list(spec["entries"]), self.root)
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
        from .xdist_groups import GroupScheduling  # noqa: PLC0415 - xdist is present

        return GroupScheduling(config, log, self.group_of)

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport) -> None:
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        self.stream.emit(Event.WORKER_CRASHED, nodeid=crashitem, worker=str(worker))

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        if error is not None:
            self.stream.emit(Event.WORKER_DOWN, worker=str(node.gateway.id), error=str(error))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(SPEC_OPTION, dest="utr_spec", default=None, help="(unified-test-runner)")


def _is_controller(config: pytest.Config) -> bool:
    distributed = getattr(config.option, "dist", "no") != "no"
    return distributed and not hasattr(config, "workerinput")


def _worker(config: pytest.Config) -> str | None:
    """This process's xdist worker id; from xdist itself, not the environment, which may
    hold the id of an outer xdist run that started this one."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else None


def pytest_configure(config: pytest.Config) -> None:
    spec_path = config.getoption("utr_spec")
    if not spec_path:
        return
    spec: Spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    worker = _worker(config)
    stream = EventStream(spec["events"], worker)
    config.pluginmanager.register(SessionEvents(stream, worker is None), "utr-session")
    if _is_controller(config):
        config.pluginmanager.register(ControllerPlugin(stream, spec), "utr-controller")
        return
    config.pluginmanager.register(RunnerPlugin(config, stream, spec), "unified-test-runner")
