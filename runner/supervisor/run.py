"""Run a selection: a pytest child, a fresh one for the rest after a crash, then retries.

Every child of a run shares its working directory and its deadline (the level timeout).
When a test takes its process down, that test is an error and the tests not yet run get
a new child (never the crasher again), up to `max_restarts` times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import signals
from runner.child.protocol import make_spec
from runner.errors import RegistryError
from runner.model import Entry, Registry
from runner.results import FAILING, ChildRun, EntryResult, RunResult, Status, TestResult
from runner.select import Selection, level_timeout
from runner.supervisor import workdir as workdirs
from runner.supervisor.entries import RunFacts, entry_results
from runner.supervisor.events import EventLog, Interruption
from runner.supervisor.process import ChildExit, ChildSpec, run_child
from runner.supervisor.retry import retry_failures
from runner.supervisor.workers import xdist_args

EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    extra_args: tuple[str, ...] = ()
    timeout: float | None = None
    grace: float = 5.0
    strict: bool = False
    retry: bool = True
    workers: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    max_restarts: int = 5  # fresh children after crashes (and xdist worker replacements)
    environment: str | None = None  # the --env profile's name
    carried: frozenset[str] = frozenset()  # entries under a muted quarantine: cannot stop a run


@dataclass(frozen=True, kw_only=True)
class _Child:
    log: EventLog
    exit: ChildExit
    facts: ChildRun
    results: list[TestResult]

    @property
    def crashed_in(self) -> set[str]:
        """The tests that took a process down: never run again."""
        return {n for n, _ in self.facts.crashed} | set(self.facts.running_at_death)

    @property
    def crashed(self) -> bool:
        """Died in the middle of its session, with tests it never started."""
        return not self.exit.stopped and self.log.collected and not self.log.session_finished


def run_selection(
    registry: Registry,
    selection: Selection,
    options: RunOptions,
    on_event: EventHandler | None = None,
) -> RunResult:
    """Execute the runnable part of `selection`; pending entries stay pending."""
    timeout = options.timeout or level_timeout(registry, selection.level)
    run = _Run(
        registry=registry,
        selection=selection,
        options=options,
        on_event=on_event,
        workdir=workdirs.make_workdir(registry.root),
        tmpdir=workdirs.make_tmpdir(),
        deadline=time.monotonic() + timeout,
        timeout=timeout,
    )
    try:
        return _tidy(_run_children(run), run.workdir)
    except BaseException:
        workdirs.remove(run.workdir)
        raise
    finally:
        workdirs.remove(run.tmpdir)


def _run_children(run: _Run) -> RunResult:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.monotonic()
    if signals.requested():  # stopped before anything started: nothing ran, all is reported
        return _result(run, EventLog(), [], started_at, clock)
    first = run.once(_targets(run.registry, run.selection, run.options.strict), None, "run", 1)
    tests = {t.nodeid: t for t in first.results}
    _resume(run, first, tests)
    if run.options.retry and not any(c.exit.stopped for c in run.children):
        crashers = {n for c in run.children for n in c.crashed_in}
        retried = retry_failures(
            run.registry, list(tests.values()), run.rerun, run.left(), crashers
        )
        tests = {t.nodeid: t for t in retried}
    return _result(run, first.log, list(tests.values()), started_at, clock)


def _resume(run: _Run, child: _Child, tests: dict[str, TestResult]) -> None:
    """After a crash, a fresh child for the tests the dead one never started."""
    restarts = 0
    while child.crashed and restarts < run.options.max_restarts and run.left() > 0:
        rest = [n for n in child.log.not_started() if tests[n].status is Status.NOT_RUN]
        if not rest or signals.requested():
            return
        restarts += 1
        child = run.once(_files(rest), rest, "resume", 1)
        tests.update({t.nodeid: t for t in child.results if t.nodeid in tests})


def _result(
    run: _Run, first: EventLog, tests: list[TestResult], started_at: str, clock: float
) -> RunResult:
    stopped = run.children[0].exit.stopped if run.children else signals.requested()
    environment = run.options.environment
    facts = RunFacts(first=first, stopped=stopped, timeout=run.timeout, environment=environment)
    signalled = (c.exit.stopped for c in run.children if c.exit.interrupted)
    return RunResult(
        level=run.selection.level,
        started_at=started_at,
        duration=time.monotonic() - clock,
        entries=entry_results(run.selection, tests, facts),
        unregistered=tuple(first.unregistered),
        warnings=_warnings(run, first),
        children=tuple(c.facts for c in run.children),
        interrupted_by=next(signalled, "") or signals.requested(),
        timeout=run.timeout,
        log_file=str(run.workdir / "pytest-1.log") if run.children else "",
    )


def _tidy(result: RunResult, workdir: Path) -> RunResult:
    """Keep pytest's own output only when something went wrong: it is where to look."""
    troubled = (
        result.interrupted
        or any(c.returncode not in (0, None) or c.stopped for c in result.children)
        or any(e.status in FAILING for e in result.entries)
    )
    if not troubled:
        workdirs.remove(workdir)
        return replace(result, log_file="")
    workdirs.keep_logs_only(workdir)
    return result


def _targets(registry: Registry, selection: Selection, strict: bool) -> tuple[str, ...]:
    """What pytest is asked to collect. A whole level, or --strict: the suite roots (so
    unregistered tests are seen) plus entries outside them. A narrowed selection (ids,
    patterns, tiers, a change, a shard, a budget): only its entries' files, so that one
    entry does not pay for collecting every suite."""
    entries = selection.runnable
    whole = {e.id for e in registry.tests if e.level in selection.levels and not e.pending}
    if not strict and {e.id for e in entries} != whole:
        return _files([e.file_part for e in entries])
    roots = [r for r in registry.suite_roots if (registry.root / r).is_dir()]
    outside = [e.file_part for e in entries if not any(_under(e.file_part, r) for r in roots)]
    return tuple(dict.fromkeys([*roots, *outside]))


def _files(nodeids: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.split("::", 1)[0] for n in nodeids))


def _under(path: str, root: str) -> bool:
    return Path(path).is_relative_to(Path(root))


@dataclass(kw_only=True)
class _Run:
    """What every child of one run shares."""

    registry: Registry
    selection: Selection
    options: RunOptions
    workdir: Path
    tmpdir: Path  # the pytest processes' TMPDIR
    on_event: EventHandler | None
    deadline: float
    timeout: float
    children: list[_Child] = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def once(
        self, targets: tuple[str, ...], only: list[str] | None, purpose: str, attempt: int
    ) -> _Child:
        number = len(self.children) + 1
        log = EventLog()
        handle = self._handler(log, attempt)
        for made in (self.workdir, self.tmpdir):  # a test may have removed either
            made.mkdir(parents=True, exist_ok=True)
        exit_ = run_child(self._spec(targets, only, purpose, number), handle, log.done)
        if number == 1:
            _raise_registry_problems(self.registry, log)
        facts = log.facts(attempt, purpose, exit_.returncode, exit_.stopped)
        facts = replace(facts, log_tail=_tail(self.workdir / f"pytest-{number}.log", facts))
        child = _Child(
            log=log,
            exit=exit_,
            facts=facts,
            results=log.finish(_interruption(log, exit_, self.timeout), attempt),
        )
        self.children.append(child)
        return child

    def _handler(self, log: EventLog, attempt: int) -> EventHandler:
        def handle(event: dict[str, Any]) -> None:
            log.apply(event)
            if self.on_event is not None:
                self.on_event({**event, "attempt": attempt})

        return handle

    def rerun(self, nodeids: tuple[str, ...], timeout: float, attempt: int) -> list[TestResult]:
        if signals.requested():
            return []
        return self.once(_files(list(nodeids)), list(nodeids), "retry", attempt).results

    def _spec(
        self, targets: tuple[str, ...], only: list[str] | None, purpose: str, number: int
    ) -> ChildSpec:
        # reruns of the few tests that failed run in one process: no workers to start
        workers = self.options.workers if purpose != "retry" else None
        xdist = xdist_args(workers, self.selection.runnable, self.options.max_restarts)
        return ChildSpec(
            root=self.registry.root,
            targets=targets,
            timeout=max(self.left(), 0.0),
            grace=self.options.grace,
            env=(("TMPDIR", str(self.tmpdir)), *self.options.env),  # a profile's may win
            extra_args=("--continue-on-collection-errors", *xdist, *self.options.extra_args),
            spec_file=self._write_spec(only, number),
            events_file=self.workdir / f"events-{number}.jsonl",
            log_file=self.workdir / f"pytest-{number}.log",
        )

    def _write_spec(self, only: list[str] | None, number: int) -> Path:
        """Registry checks belong to the first child: the others run parts of its tests."""
        path = self.workdir / f"selection-{number}.json"
        spec = make_spec(
            root=str(self.registry.root),
            events=str(self.workdir / f"events-{number}.jsonl"),
            entries=[
                {"id": e.id, "path": e.path, "group": e.group}
                for e in self.registry.tests
                if not e.pending
            ],
            selected=[e.id for e in self.selection.runnable],
            only=only,
            check_registry=number == 1,
            strict=self.options.strict,
        )
        path.write_text(json.dumps(spec), encoding="utf-8")
        return path


def _tail(log_file: Path, facts: ChildRun) -> str:
    """pytest's last words, where it did not end as a session should (what it printed then
    is the only account of why)."""
    clean = facts.unconfigured and facts.returncode == facts.pytest_status
    if clean or facts.stopped or facts.returncode is None:
        return ""
    try:
        lines = log_file.read_bytes()[-4000:].decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    words = [ln.strip() for ln in lines if ln.strip()]
    return words[-1][:300] if words else ""


def _raise_registry_problems(registry: Registry, log: EventLog) -> None:
    if log.unmatched:
        entry = registry.entry(log.unmatched[0])
        raise RegistryError(
            f"entry {entry.id!r}: path {entry.path!r} matches no collected test",
            file=str(registry.path),
            line=entry.line,
        )
    if log.strict_unregistered:
        raise RegistryError(
            f"{len(log.unregistered)} collected tests are not registered (--strict), "
            f"first: {log.unregistered[0]}",
            file=str(registry.path),
        )


def _interruption(log: EventLog, exit_: ChildExit, timeout: float) -> Interruption | None:
    if exit_.timed_out:
        return Interruption(
            running=Status.TIMED_OUT,
            waiting=Status.NOT_RUN,
            reason=f"timed out: the level timeout of {timeout:g} s was reached",
        )
    if exit_.interrupted:
        return Interruption(
            running=Status.NOT_RUN,
            waiting=Status.NOT_RUN,
            reason=f"not run: the run was interrupted by {signals.describe(exit_.stopped)}",
        )
    if not log.session_finished and exit_.stopped != "lingered":
        return Interruption(
            running=Status.ERROR,
            waiting=Status.NOT_RUN,
            reason=f"the pytest process died ({death(exit_.returncode)}) before this test finished",
        )
    return None


def death(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _warnings(run: _Run, log: EventLog) -> tuple[str, ...]:
    notes = []
    if log.unregistered:
        notes.append(f"{len(log.unregistered)} collected tests are not registered")
    selected = {e.id for e in run.selection.entries}
    for entry_id, problems in log.collect_problems.items():
        if entry_id not in selected and any(p["event"] == "collect_failed" for p in problems):
            notes.append(f"collection error outside the selection: {problems[0]['nodeid']}")
    if any(c.exit.stopped == "lingered" for c in run.children):
        notes.append(
            "pytest finished but its process did not exit (a non-daemon thread or a child "
            "it waits for?): stopped after the grace period; the results stand"
        )
    return tuple(notes)


def run_staged(
    registry: Registry,
    selection: Selection,
    options: RunOptions,
    on_event: EventHandler | None = None,
) -> RunResult:
    """Tiers as stages, tier 1 first; after a tier with a failure the rest do not run."""
    results: list[RunResult] = []
    tiers = sorted({e.tier for e in selection.runnable})
    for position, tier in enumerate(tiers):
        stage = replace(selection, entries=tuple(e for e in selection.entries if e.tier == tier))
        results.append(run_selection(registry, stage, options, on_event))
        failed = any(
            r.status in FAILING and r.entry_id not in options.carried for r in results[-1].entries
        )
        if failed or results[-1].interrupted:
            skipped = [e for e in selection.entries if e.tier in tiers[position + 1 :]]
            reason = f"tier {tier} failed" if failed else "the run was interrupted"
            results.append(
                _not_run(results[-1], skipped, f"not run: {reason} (--stop-after-failing-tier)")
            )
            break
    return combine(results)


def _not_run(last: RunResult, entries: list[Entry], note: str) -> RunResult:
    return replace(
        last,
        duration=0.0,
        warnings=(),
        unregistered=(),
        children=(),
        problems=(),
        entries=tuple(
            EntryResult(entry_id=e.id, status=Status.NOT_RUN, note=note) for e in entries
        ),
    )


def combine(results: list[RunResult]) -> RunResult:
    """One run out of several (stages or shards): entries in order, facts kept."""
    first = results[0]
    return replace(
        first,
        duration=sum(r.duration for r in results),
        entries=tuple(e for r in results for e in r.entries),
        unregistered=tuple(dict.fromkeys(u for r in results for u in r.unregistered)),
        warnings=tuple(dict.fromkeys(w for r in results for w in r.warnings)),
        children=tuple(c for r in results for c in r.children),
        problems=tuple(p for r in results for p in r.problems),
        interrupted_by=next((r.interrupted_by for r in results if r.interrupted_by), ""),
    )
