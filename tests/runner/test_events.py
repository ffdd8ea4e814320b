from __future__ import annotations

from runner.results import Status
from runner.supervisor.events import EventLog, Interruption


def _log() -> EventLog:
    log = EventLog()
    log.apply({"event": "collected", "tests": [{"nodeid": n, "entry": "e"} for n in "abc"]})
    for when in ("setup", "call", "teardown"):
        log.apply(
            {"event": "report", "nodeid": "a", "when": when, "outcome": "passed", "duration": 0.5}
        )
    log.apply({"event": "start", "nodeid": "a"})
    log.apply({"event": "finish", "nodeid": "a"})
    log.apply({"event": "start", "nodeid": "b"})
    log.apply({"event": "something new from a later plugin"})
    return log


def test_unfinished_tests_take_the_interruptions_statuses() -> None:
    stop = Interruption(running=Status.TIMED_OUT, waiting=Status.NOT_RUN, reason="timeout")
    results = {r.nodeid: r for r in _log().finish(stop)}
    assert results["a"].status is Status.PASSED
    assert results["a"].duration == 1.5
    assert (results["b"].status, results["b"].message) == (Status.TIMED_OUT, "timeout")
    assert results["c"].status is Status.NOT_RUN


def test_a_stream_that_just_ends_leaves_the_running_test_in_error() -> None:
    results = {r.nodeid: r for r in _log().finish(None)}
    assert results["b"].status is Status.ERROR
    assert "ended while this test was running" in results["b"].message
    assert (results["c"].status, results["c"].message) == (
        Status.NOT_RUN,
        "not run: the pytest session ended before this test ran",
    )


def test_under_dist_each_the_worst_worker_wins() -> None:
    log = EventLog()
    log.apply({"event": "collected", "tests": [{"nodeid": "t", "entry": "e"}]})
    for worker, outcome in (("gw0", "failed"), ("gw1", "passed")):
        for when in ("setup", "call", "teardown"):
            result = outcome if when == "call" else "passed"
            log.apply(
                {
                    "event": "report",
                    "nodeid": "t",
                    "when": when,
                    "outcome": result,
                    "worker": worker,
                }
            )
        log.apply({"event": "finish", "nodeid": "t", "worker": worker})
    (test,) = log.finish(None)
    assert test.status is Status.FAILED
