"""What the parent and the pytest child say to each other: event names and the run spec.

The child's plugin appends one JSON object per line to the events file; `event` is one of
`Event`. The parent writes a `Spec` (JSON) the plugin reads at start-up. This module
imports nothing beyond the standard library: the plugin loads it inside the child.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

SPEC_OPTION = "--utr-spec"


class Event(StrEnum):
    SESSION_START = "session_start"  # mode: "" or the pytest option that runs no test
    COLLECT_FAILED = "collect_failed"  # nodeid, entries, message, longrepr
    COLLECT_SKIPPED = "collect_skipped"  # the same, for a module skipped as a whole
    COLLECTED = "collected"  # tests [{nodeid, entry}], dropped [{nodeid, entry}], matched
    UNREGISTERED = "unregistered"  # nodeids no entry registers
    UNMATCHED = "unmatched"  # selected entries that match no collected test
    STRICT_UNREGISTERED = "strict_unregistered"
    START = "start"  # nodeid
    REPORT = "report"  # nodeid, when, outcome, duration, message, longrepr, output
    FINISH = "finish"  # nodeid
    INTERNAL_ERROR = "internal_error"  # message
    EXIT_REQUESTED = "exit_requested"  # kind (Exit or KeyboardInterrupt), message, returncode
    SESSION_FINISH = "session_finish"  # exitstatus
    UNCONFIGURE = "unconfigure"  # exitstatus: pytest is done, only interpreter exit remains
    WORKER_CRASHED = "worker_crashed"  # nodeid, worker
    WORKER_DOWN = "worker_down"  # worker, error


class SpecEntry(TypedDict):
    id: str
    path: str
    group: str


class Spec(TypedDict):
    """The run as the child needs it: which entries exist, which are selected, and where
    to write events. `only`, when set, narrows the run to those node ids (a retry, or the
    rest of a run after a crash)."""

    root: str
    events: str
    entries: list[SpecEntry]
    selected: list[str]
    only: list[str] | None
    check_registry: bool
    strict: bool
    inventory: bool  # `init`: keep every test for the project's own options to judge


EventData = dict[str, Any]


def make_spec(
    *,
    root: str,
    events: str,
    entries: list[SpecEntry],
    selected: list[str] | None = None,
    only: list[str] | None = None,
    check_registry: bool = False,
    strict: bool = False,
    inventory: bool = False,
) -> Spec:
    return {
        "root": root,
        "events": events,
        "entries": entries,
        "selected": selected or [],
        "only": only,
        "check_registry": check_registry,
        "strict": strict,
        "inventory": inventory,
    }
