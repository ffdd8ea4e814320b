"""The live display: what it shows at each verbosity, on a terminal and off it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from runner.reports.progress import NORMAL, QUIET, VERBOSE, Progress
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(make_entry("pay", mrr=500), make_entry("cart", mrr=70))
OUTCOMES = {"t.py::ok": "passed", "t.py::bad": "failed", "u.py::one": "passed"}
OWNERS = {"t.py::ok": "pay", "t.py::bad": "pay", "u.py::one": "cart"}


def _events() -> list[dict[str, Any]]:
    tests = [{"nodeid": n, "entry": e} for n, e in OWNERS.items()]
    events: list[dict[str, Any]] = [{"event": "collected", "tests": tests}]
    for nodeid, outcome in OUTCOMES.items():
        events += [
            {"event": "start", "nodeid": nodeid},
            {"event": "report", "nodeid": nodeid, "when": "call", "outcome": outcome},
            {"event": "finish", "nodeid": nodeid},
        ]
    return events


def _shown(verbosity: int, terminal: bool) -> tuple[str, Progress]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120, no_color=True)
    with Progress(REGISTRY, console, verbosity) as progress:
        for event in _events():
            progress(event)
    return out.getvalue(), progress


def test_by_default_a_line_per_entry_and_per_failing_test() -> None:
    shown, progress = _shown(NORMAL, terminal=False)
    assert shown.splitlines() == [
        "collected 3 pytest tests",
        "FAILED  t.py::bad",
        "entry pay: failed (2 pytest tests)",
        "entry cart: passed (1 pytest test)",
    ]
    assert progress.tally.protected == 70 and progress.tally.failed == 1


def test_verbose_adds_every_test_and_quiet_shows_nothing() -> None:
    verbose, _ = _shown(VERBOSE, terminal=False)
    assert [line for line in verbose.splitlines() if line.startswith("PASSED")] == [
        "PASSED  t.py::ok",
        "PASSED  u.py::one",
    ]
    assert _shown(QUIET, terminal=False)[0] == ""


@pytest.mark.parametrize("verbosity", [NORMAL, QUIET])
def test_on_a_terminal_a_progress_bar_counts_the_tests(verbosity: int) -> None:
    shown, progress = _shown(verbosity, terminal=True)
    if verbosity == QUIET:
        assert shown == "" and progress.bar is None
        return
    assert progress.bar is not None and progress.task is not None
    task = progress.bar.tasks[progress.task]
    assert (task.completed, task.total) == (3, 3)
    assert task.fields["note"] == "1 failed · $70 protected so far"
    assert "FAILED  t.py::bad" in shown and "entry pay: failed" in shown
