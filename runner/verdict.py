"""The verdict: the one place that turns a run into its outcome and exit code.

Exit 0 is a promise: every selected, runnable entry was executed and passed (or was flaky
within its tier's policy), pytest's own exit status agrees with the events, and the gate
holds. Every other run gets its code and the reasons for it, from the registry, the
entries' results, the facts about each pytest child and the gate. When several codes
hold, the first of a signal's code (130, 143, 129), 5, 1, 3, 4 wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner import signals
from runner.errors import ExitCode, UsageError
from runner.gates import GateVerdict, evaluate_gate
from runner.model import Registry
from runner.results import FAILING, ChildRun, EntryResult, RunResult, Status
from runner.summary import Summary, money, summarize

if TYPE_CHECKING:
    from runner.baseline import Comparison

PRIORITY = (
    ExitCode.RUN_BROKEN,
    ExitCode.TESTS_FAILED,
    ExitCode.EMPTY_SELECTION,
    ExitCode.GATE_FAILED,
)
UNVERIFIED = frozenset({Status.NOT_RUN, Status.SKIPPED, Status.PARTIAL})
PYTEST_ERRORS = {2: "was interrupted", 3: "had an internal error", 4: "refused its arguments"}


@dataclass(frozen=True, kw_only=True)
class Reason:
    """One reason the run is not green, with the exit code it calls for."""

    code: int
    text: str


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A finished run with its verdict: what every report renders."""

    registry: Registry
    run: RunResult
    summary: Summary
    gate: GateVerdict | None
    exit_code: int
    reasons: tuple[Reason, ...] = ()
    pytest_args: tuple[str, ...] = ()
    comparison: Comparison | None = None  # against a baseline run (runner.baseline)
    trend: tuple[tuple[str, float, float], ...] = ()  # earlier runs: (started, protected, of)

    @property
    def environment(self) -> str | None:
        """The `--env` profile the run used, if any."""
        profile = self.run.context.environment
        return str(profile["name"]) if profile is not None else None

    @property
    def broken(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.reasons if r.code == ExitCode.RUN_BROKEN)


def judge(
    registry: Registry,
    run: RunResult,
    gate_name: str | None = None,
    pytest_args: tuple[str, ...] = (),
) -> Outcome:
    """The outcome of `run` (under --detect-flakes a flaky test is the finding, not a pass)."""
    summary = summarize(registry, run.entries)
    gate = _gate(registry, run, gate_name, summary)
    flaky_fails = bool(run.context.detect_flakes)
    reasons = (*_interrupted(run), *_broken(run), *_failed(registry, run, flaky_fails))
    reasons += (*_unverified(registry, run), *_gate_reasons(gate))
    return Outcome(
        registry=registry,
        run=run,
        summary=summary,
        gate=gate,
        exit_code=exit_code(reasons),
        reasons=reasons,
        pytest_args=pytest_args,
    )


def exit_code(reasons: tuple[Reason, ...]) -> int:
    codes = {r.code for r in reasons}
    signalled = sorted(c for c in codes if c > 128)
    if signalled:
        return signalled[0]
    return next((int(c) for c in PRIORITY if c in codes), int(ExitCode.OK))


def _gate(
    registry: Registry, run: RunResult, name: str | None, summary: Summary
) -> GateVerdict | None:
    if name is None:
        return None
    if name not in registry.gates:
        known = ", ".join(sorted(registry.gates)) or "none"
        raise UsageError(f"unknown gate {name!r} (defined: {known})")
    return evaluate_gate(registry.gates[name], registry, run.entries, summary)


def _interrupted(run: RunResult) -> Iterator[Reason]:
    if run.interrupted_by:
        missing = sum(e.status is Status.NOT_RUN and not e.left_out for e in run.entries)
        yield Reason(
            code=signals.exit_code(run.interrupted_by),
            text=f"interrupted by {signals.describe(run.interrupted_by)}: "
            f"{missing} selected entries did not run",
        )


def _broken(run: RunResult) -> Iterator[Reason]:
    incomplete = any(e.status is Status.NOT_RUN and not e.left_out for e in run.entries)
    for child in run.children:
        texts = _child_broke(child, incomplete)
        yield from (Reason(code=ExitCode.RUN_BROKEN, text=t) for t in texts)
    for entry in run.entries:
        if entry.collect_error:
            yield Reason(code=ExitCode.RUN_BROKEN, text=f"{entry.entry_id}: {entry.note}")
    yield from (Reason(code=ExitCode.RUN_BROKEN, text=p) for p in run.problems)


def _child_broke(child: ChildRun, incomplete: bool) -> Iterator[str]:
    """How one pytest process broke, if it did (not when the runner stopped it)."""
    yield from (f"pytest internal error: {_last_line(m)}" for m in child.internal_errors)
    yield from (f"pytest-xdist worker {w} died while running {n}" for n, w in child.crashed)
    if child.workers_down and not child.crashed:
        yield f"a pytest-xdist worker died between tests: {child.workers_down[0]}"
    if child.stopped:  # the runner stopped it: a timeout, a signal, or it lingered
        return
    if not child.session_finished:
        yield _died(child)
        return
    if not child.unconfigured and child.returncode != 0:
        yield "pytest crashed at the end of its session" + _tail(child)
    yield from _status_broke(child, incomplete)


def _tail(child: ChildRun) -> str:
    return f": {child.log_tail}" if child.log_tail else ""


def _died(child: ChildRun) -> str:
    code = child.returncode
    if code is not None and code < 0:
        how = f"the pytest process was killed by signal {-code}"
    else:
        how = f"the pytest process exited (exit code {code})"
    if child.died_in:  # what it printed last is that test's progress, not a reason
        return f"{how} while running {child.died_in}"
    return f"{how} before its session finished{_tail(child)}"


def _status_broke(child: ChildRun, incomplete: bool) -> Iterator[str]:
    """pytest's exit status, where it says the run broke: both what the process returned
    and what the session said, when they differ (the worse of the two wins)."""
    for status in _statuses(child):
        yield from _one_status(child, status)
    said, returned = child.pytest_status, child.returncode
    if child.unconfigured and said is not None and returned is not None and said != returned:
        yield (
            f"pytest's process exited {returned} though its session ended with {said} (an "
            "error after the session, or an os._exit)" + _tail(child)
        )
    if child.exit_request and incomplete:
        yield f"the session was ended early by {child.exit_request}"


def _one_status(child: ChildRun, status: int) -> Iterator[str]:
    if status in PYTEST_ERRORS:
        detail = child.exit_request or child.log_tail
        yield f"pytest {PYTEST_ERRORS[status]} (exit {status})" + (f": {detail}" if detail else "")
    elif status == 5 and child.ran:
        yield f"pytest reported no tests collected (exit 5), though {child.ran} tests ran"
    elif status == 1 and not child.ran and not child.failures:
        yield "pytest exited 1 without running or failing a test" + _tail(child)
    elif status > 5:
        detail = f": {child.exit_request}" if child.exit_request else _tail(child)
        yield f"pytest exited with code {status}{detail}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _failed(registry: Registry, run: RunResult, flaky_fails: bool) -> Iterator[Reason]:
    bad = [e for e in run.entries if e.status in FAILING and not e.collect_error]
    if bad:
        mrr = sum(registry.by_id[e.entry_id].mrr for e in bad)
        yield Reason(
            code=ExitCode.TESTS_FAILED,
            text=f"{len(bad)} selected entries failed, errored or timed out ({money(mrr)} MRR "
            f"at risk): {_names(bad)}",
        )
    for child in run.children:
        yield from _child_failed(child, run.timeout)
    if flaky_fails:
        flaky = [t.nodeid for e in run.entries for t in e.tests if t.status is Status.FLAKY]
        if flaky:
            yield Reason(code=ExitCode.TESTS_FAILED, text=f"{len(flaky)} tests had mixed outcomes")


def _child_failed(child: ChildRun, timeout: float) -> Iterator[Reason]:
    if child.stopped == "timeout":
        where = f"while running {child.died_in}" if child.died_in else "before pytest finished"
        yield Reason(
            code=ExitCode.TESTS_FAILED, text=f"the level timeout of {timeout:g} s struck {where}"
        )
    elif child.pytest_status == 1 and child.ran and not child.failures and child.unconfigured:
        yield Reason(
            code=ExitCode.TESTS_FAILED,
            text="pytest exited 1 (tests failed) though no test event failed: a plugin or "
            "conftest failed the session (a coverage threshold, say)",
        )


def _statuses(child: ChildRun) -> list[int]:
    """What the process returned (when it ended by itself) and what its session said."""
    found = {child.pytest_status} - {None}
    if child.returncode is not None and child.returncode >= 0 and not child.stopped:
        found.add(child.returncode)
    return sorted(s for s in found if s is not None)


def _unverified(registry: Registry, run: RunResult) -> Iterator[Reason]:
    missing = [e for e in run.entries if e.status in UNVERIFIED and not e.left_out]
    if missing:
        mrr = sum(registry.by_id[e.entry_id].mrr for e in missing)
        yield Reason(
            code=ExitCode.EMPTY_SELECTION,
            text=f"{len(missing)} selected entries were not verified ({money(mrr)} MRR): "
            + "; ".join(f"{e.entry_id} ({e.status}: {e.note or e.status})" for e in missing[:5])
            + ("; ..." if len(missing) > 5 else ""),
        )


def _gate_reasons(gate: GateVerdict | None) -> Iterator[Reason]:
    if gate is not None and not gate.held:
        yield Reason(
            code=ExitCode.GATE_FAILED,
            text=f"gate {gate.name!r} not met: " + "; ".join(gate.failures),
        )


def _names(entries: list[EntryResult]) -> str:
    shown = ", ".join(f"{e.entry_id} ({e.status})" for e in entries[:5])
    return shown + (", ..." if len(entries) > 5 else "")


def final_exit(outcome: Outcome, lost: list[str]) -> int:
    """The exit code once the reports are written: one that could not be is a broken run
    for CI, which reads them (the report itself cannot say so)."""
    if not lost:
        return outcome.exit_code
    text = f"{len(lost)} report(s) could not be written: {', '.join(lost)}"
    return exit_code((*outcome.reasons, Reason(code=ExitCode.RUN_BROKEN, text=text)))
