"""The agent state machine: pending -> running -> completed / failed / timed_out."""

from __future__ import annotations

import time
from enum import StrEnum


class AgentState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


LEGAL: dict[AgentState, frozenset[AgentState]] = {
    AgentState.PENDING: frozenset({AgentState.RUNNING, AgentState.FAILED}),
    AgentState.RUNNING: frozenset({AgentState.COMPLETED, AgentState.FAILED, AgentState.TIMED_OUT}),
}


class IllegalTransition(RuntimeError):
    pass


class StateMachine:
    """Refuses any transition not in LEGAL; keeps the history with timestamps."""

    def __init__(self) -> None:
        self.state = AgentState.PENDING
        self.history: list[tuple[AgentState, float]] = [(self.state, time.monotonic())]

    def to(self, new: AgentState) -> None:
        if new not in LEGAL.get(self.state, frozenset()):
            raise IllegalTransition(f"{self.state} -> {new} is not allowed")
        self.state = new
        self.history.append((new, time.monotonic()))

    @property
    def finished(self) -> bool:
        return self.state not in LEGAL
