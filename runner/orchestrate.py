"""Run a selection: one pytest child (plus retries), events folded into entry results."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import RegistryError
from runner.events import EventLog, Interruption
from runner.execute import ChildExit, ChildSpec, run_child
from runner.model import Entry, Registry
from runner.results import FAILING, EntryResult, Status, TestResult, rollup
from runner.retry import retry_failures
from runner.select import Selection, level_timeout
from runner.workers import xdist_args

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


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Everything a report needs about one run."""

    level: str
    started_at: str
    duration: float
    entries: tuple[EntryResult, ...]
    unregistered: tuple[str, ...] = ()
    broken: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    interrupted: bool = False
    timed_out: bool = False
    pytest_exit: int | None = None
    log_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_selection(
    registry: Registry,
    selection: Selection,
    options: RunOptions,
    on_event: EventHandler | None = None,
) -> RunResult:
    """Execute the runnable part of `selection`; pending entries stay pending."""
    workdir = Path(tempfile.mkdtemp(prefix="utr-"))
    run = _Run(
        registry=registry, selection=selection, options=options, on_event=on_event, workdir=workdir
    )
    try:
        result = _execute(run)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return _tidy(result, workdir)


def _execute(run: _Run) -> RunResult:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.monotonic()
    timeout = run.options.timeout or level_timeout(run.registry, run.selection.level)
    log, exit_ = run.once(_targets(run.registry, run.selection.runnable), timeout, 1)
    tests = log.finish(_interruption(log, exit_, timeout))
    if run.options.retry and not (exit_.interrupted or exit_.timed_out):
        remaining = timeout - (time.monotonic() - clock)
        tests = retry_failures(run.registry, tests, run.rerun, remaining)
    return _run_result(run, log, exit_, tests, started_at=started_at, clock=clock)


def _tidy(result: RunResult, workdir: Path) -> RunResult:
    """Keep pytest's own output only when something went wrong: it is where to look."""
    troubled = (
        result.broken
        or result.interrupted
        or result.timed_out
        or any(e.status in FAILING for e in result.entries)
    )
    if troubled:
        for path in workdir.iterdir():
            if path.suffix != ".log":
                path.unlink()
        return result
    shutil.rmtree(workdir, ignore_errors=True)
    return replace(result, log_file="")


def _run_result(
    run: _Run,
    log: EventLog,
    exit_: ChildExit,
    tests: list[TestResult],
    *,
    started_at: str,
    clock: float,
) -> RunResult:
    entries = _entry_results(run.selection, tests, log, exit_)
    return RunResult(
        level=run.selection.level,
        started_at=started_at,
        duration=time.monotonic() - clock,
        entries=entries,
        unregistered=tuple(log.unregistered),
        broken=_broken(log, exit_, entries),
        warnings=_warnings(log, run.selection),
        interrupted=any(e.interrupted for e in run.exits),
        timed_out=any(e.timed_out for e in run.exits),
        pytest_exit=exit_.returncode,
        log_file=str(run.workdir / "pytest-1.log"),
    )


def _targets(registry: Registry, entries: tuple[Entry, ...]) -> tuple[str, ...]:
    """Suite roots (so unregistered tests are seen) plus entries outside them."""
    roots = [r for r in registry.suite_roots if (registry.root / r).is_dir()]
    outside = [e.path for e in entries if not any(_under(e.file_part, r) for r in roots)]
    return tuple(dict.fromkeys([*roots, *outside]))


def _under(path: str, root: str) -> bool:
    return Path(path).is_relative_to(Path(root))


@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every child of one run shares."""

    registry: Registry
    selection: Selection
    options: RunOptions
    workdir: Path
    on_event: EventHandler | None
    exits: list[ChildExit] = field(default_factory=list)

    def child(self, targets: tuple[str, ...], timeout: float, attempt: int) -> ChildSpec:
        # reruns of the few tests that failed run in one process: no workers to start
        workers = xdist_args(
            self.options.workers if attempt == 1 else None, self.selection.runnable
        )
        return ChildSpec(
            root=self.registry.root,
            targets=targets,
            timeout=timeout,
            grace=self.options.grace,
            env=self.options.env,
            extra_args=("--continue-on-collection-errors", *workers, *self.options.extra_args),
            spec_file=self._write_spec(attempt),
            events_file=self.workdir / f"events-{attempt}.jsonl",
            log_file=self.workdir / f"pytest-{attempt}.log",
        )

    def once(
        self, targets: tuple[str, ...], timeout: float, attempt: int
    ) -> tuple[EventLog, ChildExit]:
        spec = self.child(targets, timeout, attempt)
        log = EventLog()

        def handle(event: dict[str, Any]) -> None:
            log.apply(event)
            if self.on_event is not None:
                self.on_event({**event, "attempt": attempt})

        exit_ = run_child(spec, handle)
        self.exits.append(exit_)
        _raise_registry_problems(self.registry, log)
        return log, exit_

    def rerun(self, nodeids: tuple[str, ...], timeout: float, attempt: int) -> list[TestResult]:
        log, exit_ = self.once(nodeids, timeout, attempt)
        return log.finish(_interruption(log, exit_, timeout), attempt)

    def _write_spec(self, attempt: int) -> Path:
        """A rerun collects only the tests it retries: registry checks belong to attempt 1."""
        path = self.workdir / f"selection-{attempt}.json"
        entries = [
            {"id": e.id, "path": e.path, "group": e.group}
            for e in self.registry.tests
            if not e.pending
        ]
        spec = {
            "root": str(self.registry.root),
            "check_registry": attempt == 1,
            "strict": self.options.strict,
            "entries": entries,
            "selected": [e.id for e in self.selection.runnable],
        }
        path.write_text(json.dumps(spec), encoding="utf-8")
        return path


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
            reason="not run: the run was interrupted (Ctrl-C)",
        )
    if log.exitstatus is None:
        why = _death(exit_.returncode)
        return Interruption(
            running=Status.ERROR,
            waiting=Status.NOT_RUN,
            reason=f"the pytest process died ({why}) before this test finished",
        )
    return None


def _death(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _entry_results(
    selection: Selection, tests: list[TestResult], log: EventLog, exit_: ChildExit
) -> tuple[EntryResult, ...]:
    by_entry: dict[str, list[TestResult]] = {}
    for test in tests:
        by_entry.setdefault(test.entry_id, []).append(test)
    return tuple(
        _one_entry(e, tuple(by_entry.get(e.id, ())), log, exit_) for e in selection.entries
    )


def _one_entry(
    entry: Entry, tests: tuple[TestResult, ...], log: EventLog, exit_: ChildExit
) -> EntryResult:
    if entry.pending:
        return EntryResult(
            entry_id=entry.id, status=Status.PENDING, note="pending: registered, not written yet"
        )
    problems = log.collect_problems.get(entry.id, [])
    failed = [p for p in problems if p["event"] == "collect_failed"]
    if failed:
        return EntryResult(
            entry_id=entry.id,
            status=Status.ERROR,
            tests=tests,
            note=f"collection failed: {failed[0]['message']}",
        )
    if not tests:
        return _empty_entry(entry, problems, log, exit_)
    return rollup(entry.id, tests)


def _empty_entry(
    entry: Entry, problems: list[dict[str, Any]], log: EventLog, exit_: ChildExit
) -> EntryResult:
    if problems:
        return EntryResult(
            entry_id=entry.id,
            status=Status.SKIPPED,
            note=f"skipped at collection: {problems[0]['message']}",
        )
    if log.collected and not (exit_.timed_out or exit_.interrupted):
        return EntryResult(
            entry_id=entry.id,
            status=Status.SKIPPED,
            note="every test was deselected by the pytest arguments",
        )
    reason = _interruption(log, exit_, 0) if not log.collected else None
    note = reason.reason if reason else "not run: the run stopped before collection finished"
    return EntryResult(entry_id=entry.id, status=Status.NOT_RUN, note=note)


def _broken(log: EventLog, exit_: ChildExit, entries: tuple[EntryResult, ...]) -> tuple[str, ...]:
    reasons = [
        f"pytest internal error: {m.splitlines()[-1] if m else ''}" for m in log.internal_errors
    ]
    if log.exitstatus is None and not (exit_.timed_out or exit_.interrupted):
        reasons.append(f"the pytest process died ({_death(exit_.returncode)})")
    elif exit_.returncode in (2, 3, 4) and not exit_.interrupted:
        reasons.append(f"pytest exited with usage/internal error code {exit_.returncode}")
    reasons += [f"pytest-xdist worker {w} died while running {n}" for n, w in log.crashed.items()]
    if log.workers_down and not log.crashed:
        reasons.append(f"pytest-xdist worker died between tests: {log.workers_down[0]}")
    reasons += [
        f"{e.entry_id}: {e.note}" for e in entries if e.note.startswith("collection failed")
    ]
    return tuple(reasons)


def _warnings(log: EventLog, selection: Selection) -> tuple[str, ...]:
    notes = []
    if log.unregistered:
        notes.append(f"{len(log.unregistered)} collected tests are not registered")
    selected = {e.id for e in selection.entries}
    for entry_id, problems in log.collect_problems.items():
        if entry_id not in selected and any(p["event"] == "collect_failed" for p in problems):
            notes.append(f"collection error outside the selection: {problems[0]['nodeid']}")
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
        failed = any(r.status in FAILING for r in results[-1].entries)
        if failed or results[-1].interrupted:
            skipped = [e for e in selection.entries if e.tier in tiers[position + 1 :]]
            results.append(
                _not_run(
                    results[-1], skipped, f"not run: tier {tier} failed (--stop-after-failing-tier)"
                )
            )
            break
    return combine(results)


def _not_run(last: RunResult, entries: list[Entry], note: str) -> RunResult:
    return replace(
        last,
        duration=0.0,
        broken=(),
        warnings=(),
        unregistered=(),
        entries=tuple(
            EntryResult(entry_id=e.id, status=Status.NOT_RUN, note=note) for e in entries
        ),
    )


def combine(results: list[RunResult]) -> RunResult:
    """One run out of several (stages or shards): entries in order, flags or-ed."""
    first = results[0]
    return replace(
        first,
        duration=sum(r.duration for r in results),
        entries=tuple(e for r in results for e in r.entries),
        unregistered=tuple(dict.fromkeys(u for r in results for u in r.unregistered)),
        broken=tuple(b for r in results for b in r.broken),
        warnings=tuple(dict.fromkeys(w for r in results for w in r.warnings)),
        interrupted=any(r.interrupted for r in results),
        timed_out=any(r.timed_out for r in results),
    )
