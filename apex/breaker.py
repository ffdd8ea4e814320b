"""A circuit breaker: after `threshold` failures in a row calls fail fast for `cooldown`
seconds, then one probe decides whether to close again."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any


class BreakerState(Enum):  # states, not strings: never compared as text
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, name: str, threshold: int, cooldown: float) -> None:
        self.name, self.threshold, self.cooldown = name, threshold, cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.transitions: list[tuple[BreakerState, float]] = []

    def allow(self) -> bool:
        """May a call go through now? In half-open state only the one probe may."""
        if self.state is BreakerState.OPEN and self.retry_after() <= 0:
            self._move(BreakerState.HALF_OPEN)
            return True
        return self.state is BreakerState.CLOSED

    def retry_after(self) -> float:
        return max(0.0, self.opened_at + self.cooldown - time.monotonic())

    def success(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.opened_at = time.monotonic()
            if self.state is not BreakerState.OPEN:
                self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        self.state = state
        self.transitions.append((state, time.time()))

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "failures": self.failures,
            "retry_after_s": round(self.retry_after(), 3),
            "transitions": [s.value for s, _ in self.transitions],
        }
