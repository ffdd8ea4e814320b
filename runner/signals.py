"""SIGINT, SIGTERM and SIGHUP as a flag: a run stops between reads, never in the middle.

Installed first thing by the entry point, so a signal that arrives while the command line
is still being parsed is not lost either: the run sees it before it starts a process,
stops at once, and still writes its reports. A second signal skips the grace period.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[signal.Signals] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signal.Signals(signum))


def install() -> None:
    """Take over the stop signals (only the main thread may)."""
    if threading.current_thread() is threading.main_thread():
        for sig in HANDLED:
            signal.signal(sig, _on_signal)


def requested() -> str:
    """The name of the first stop signal received ('' if none)."""
    return _received[0].name if _received else ""


def insistent() -> bool:
    """A second signal: stop now, without waiting for a graceful end."""
    return len(_received) > 1


def exit_code(name: str) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + int(signal.Signals[name])


def describe(name: str) -> str:
    return "Ctrl-C (SIGINT)" if name == "SIGINT" else name
