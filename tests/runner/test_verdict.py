"""The verdict, as a pure function of the registry, the results and the facts of each child."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runner.model import Gate
from runner.results import ChildRun, EntryResult, RunContext, RunResult, Status, TestResult
from runner.verdict import final_exit, judge
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(
    make_entry("a", tier=1, mrr=60),
    make_entry("b", tier=2, mrr=40),
    gates={"all": Gate(name="all", require_all=True)},
)
CLEAN = ChildRun(
    attempt=1,
    returncode=0,
    pytest_status=0,
    session_started=True,
    session_finished=True,
    collected=True,
    unconfigured=True,
    ran=2,
)


def _run(*statuses: Status, child: ChildRun = CLEAN, interrupted_by: str = "") -> RunResult:
    entries = tuple(EntryResult(entry_id=i, status=s) for i, s in zip("ab", statuses, strict=False))
    return RunResult(
        level="unit",
        started_at="",
        duration=0.0,
        entries=entries,
        children=(child,),
        interrupted_by=interrupted_by,
    )


def _code(run: RunResult, gate: str | None = None) -> int:
    return judge(REGISTRY, run, gate).exit_code


def test_green_only_when_every_entry_passed_and_pytest_agrees() -> None:
    assert _code(_run(Status.PASSED, Status.FLAKY)) == 0
    assert judge(REGISTRY, _run(Status.PASSED, Status.PASSED)).reasons == ()


@pytest.mark.parametrize("status", [Status.NOT_RUN, Status.SKIPPED, Status.PARTIAL])
def test_an_entry_that_did_not_verify_is_never_green(status: Status) -> None:
    outcome = judge(REGISTRY, _run(Status.PASSED, status))
    assert outcome.exit_code == 3
    assert "b (" in outcome.reasons[0].text and "$40 MRR" in outcome.reasons[0].text


def test_an_entry_the_runner_left_out_on_purpose_does_not_count() -> None:
    run = _run(Status.PASSED)
    left = EntryResult(entry_id="b", status=Status.NOT_RUN, left_out="budget")
    assert _code(replace(run, entries=(*run.entries, left))) == 0


def test_precedence_signal_then_broken_then_failed_then_unverified_then_gate() -> None:
    died = ChildRun(attempt=1, returncode=-9, session_started=True, collected=True)
    for name, code in (("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)):
        assert _code(_run(Status.FAILED, Status.NOT_RUN, child=died, interrupted_by=name)) == code
    assert _code(_run(Status.FAILED, Status.NOT_RUN, child=died)) == 5
    assert _code(_run(Status.FAILED, Status.NOT_RUN)) == 1
    assert _code(_run(Status.PASSED, Status.NOT_RUN), "all") == 3
    assert _code(_run(Status.PASSED, Status.FAILED), "all") == 1
    assert _code(_run(Status.PASSED, Status.PASSED), "all") == 0


def test_pytest_saying_failure_wins_over_green_events() -> None:
    failed_session = replace(CLEAN, returncode=1, pytest_status=1)
    outcome = judge(REGISTRY, _run(Status.PASSED, Status.PASSED, child=failed_session))
    assert outcome.exit_code == 1
    assert "no test event failed" in outcome.reasons[0].text
    agreed = replace(failed_session, failures=1)  # the failure it reports is in the events
    assert _code(_run(Status.FLAKY, Status.PASSED, child=agreed)) == 0


@pytest.mark.parametrize(
    ("child", "words"),
    [
        ({"returncode": 4}, "refused its arguments (exit 4)"),
        ({"returncode": 3}, "internal error (exit 3)"),
        ({"returncode": 2, "exit_request": "KeyboardInterrupt: stop"}, "interrupted (exit 2)"),
        ({"returncode": 7}, "exited with code 7"),
        ({"session_finished": False, "returncode": 0}, "before its session finished"),
        (
            {"session_finished": False, "returncode": -11, "died_in": "t::x"},
            "killed by signal 11 while running t::x",
        ),
        ({"internal_errors": ("Traceback\nboom",)}, "pytest internal error: boom"),
        ({"crashed": (("t::x", "gw1"),)}, "worker gw1 died while running t::x"),
    ],
)
def test_a_broken_child_is_exit_5(child: dict[str, Any], words: str) -> None:
    code = child.get("returncode", 0)
    facts = replace(CLEAN, **{"pytest_status": code if code >= 0 else None, **child})
    outcome = judge(REGISTRY, _run(Status.PASSED, Status.PASSED, child=facts))
    assert outcome.exit_code == 5
    assert any(words in text for text in outcome.broken), outcome.broken


@pytest.mark.parametrize(
    ("child", "words"),
    [
        ({"returncode": 5, "pytest_status": 5}, "no tests collected (exit 5), though 2 tests ran"),
        ({"returncode": 5, "pytest_status": 0}, "process exited 5 though its session ended with 0"),
        ({"returncode": 0, "pytest_status": 1}, "process exited 0 though its session ended with 1"),
        ({"returncode": 1, "unconfigured": False}, "crashed at the end of its session"),
        ({"returncode": 1, "pytest_status": 1, "ran": 0}, "without running or failing a test"),
    ],
)
def test_the_worse_of_process_and_session_wins(child: dict[str, Any], words: str) -> None:
    outcome = judge(REGISTRY, _run(Status.PASSED, Status.PASSED, child=replace(CLEAN, **child)))
    assert outcome.exit_code == 5
    assert any(words in text for text in outcome.broken), outcome.broken


def test_pytest_exit_is_broken_only_when_it_kept_tests_from_running() -> None:
    asked = replace(CLEAN, exit_request="Exit: bye")
    assert _code(_run(Status.PASSED, Status.PASSED, child=asked)) == 0
    assert _code(_run(Status.PASSED, Status.NOT_RUN, child=asked)) == 5


def test_a_child_the_runner_stopped_is_not_broken() -> None:
    stopped = ChildRun(attempt=1, returncode=-15, stopped="timeout", collected=True)
    assert _code(_run(Status.TIMED_OUT, Status.NOT_RUN, child=stopped)) == 1
    lingered = replace(CLEAN, returncode=-15, stopped="lingered")
    assert _code(_run(Status.PASSED, Status.PASSED, child=lingered)) == 0


def test_flaky_is_a_finding_when_detecting_flakes() -> None:
    flaky = TestResult(nodeid="t::x", entry_id="a", status=Status.FLAKY)
    run = _run(Status.FLAKY, Status.PASSED)
    run = replace(run, entries=(replace(run.entries[0], tests=(flaky,)), run.entries[1]))
    assert judge(REGISTRY, run).exit_code == 0
    rounds = replace(run, context=RunContext(detect_flakes=3))
    assert judge(REGISTRY, rounds).exit_code == 1


def test_a_report_that_could_not_be_written_breaks_the_run() -> None:
    assert final_exit(judge(REGISTRY, _run(Status.PASSED, Status.PASSED)), []) == 0
    assert final_exit(judge(REGISTRY, _run(Status.PASSED, Status.PASSED)), ["r.json"]) == 5
    stopped = _run(Status.PASSED, Status.NOT_RUN, interrupted_by="SIGINT")
    assert final_exit(judge(REGISTRY, stopped), ["r.json"]) == 130
