"""The flake policy: a tier's `retries` reruns its failed tests; fail-then-pass is `flaky`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from runner.model import Registry
from runner.results import Status, TestResult

Rerun = Callable[[tuple[str, ...], float, int], list[TestResult]]
RETRYABLE = frozenset({Status.FAILED, Status.ERROR})


def merge_attempt(previous: TestResult, latest: TestResult) -> TestResult:
    """Keep every attempt. A pass after a failure is `flaky`, never plain `passed`; a retry
    that does not pass (it failed again, or it skipped, was deselected, or never ran) leaves
    the failure standing: only a pass can clear it."""
    if latest.status in (Status.PASSED, Status.XPASSED):
        status, base = Status.FLAKY, latest
    else:
        status = (
            latest.status if latest.status in RETRYABLE | {Status.TIMED_OUT} else previous.status
        )
        base = latest if latest.status in RETRYABLE | {Status.TIMED_OUT} else previous
    return replace(
        base,
        status=status,
        attempts=previous.attempts + latest.attempts,
        duration=previous.duration + latest.duration,
        message=base.message or previous.message,
        longrepr=base.longrepr or previous.longrepr,
        output=base.output or previous.output,
    )


def due_for_retry(
    registry: Registry, tests: list[TestResult], attempt: int, never: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Node ids whose tier still allows another attempt (attempt 2 is the first retry);
    never those in `never` (a test that took its process down is not a flake)."""
    return tuple(
        t.nodeid
        for t in tests
        if t.status in RETRYABLE
        and t.nodeid not in never
        and registry.by_id[t.entry_id].tier in registry.tiers
        and registry.tiers[registry.by_id[t.entry_id].tier].retries >= attempt - 1
    )


def retry_failures(
    registry: Registry,
    tests: list[TestResult],
    rerun: Rerun,
    remaining: float,
    never: set[str] | frozenset[str] = frozenset(),
) -> list[TestResult]:
    """Rerun failures per tier policy within `remaining` seconds; return merged results."""
    current = {t.nodeid: t for t in tests}
    deadline = time.monotonic() + remaining
    attempt = 1
    while True:
        attempt += 1
        todo = due_for_retry(registry, list(current.values()), attempt, frozenset(never))
        left = deadline - time.monotonic()
        if not todo or left <= 0:
            return list(current.values())
        results = rerun(todo, left, attempt)
        if not results:
            return list(current.values())  # stopped: nothing more to learn
        for result in results:
            if result.nodeid in current:
                current[result.nodeid] = merge_attempt(current[result.nodeid], result)
