"""Standard output and error that nothing outside the runner can break.

A run's verdict and its reports matter more than what it prints: stdout piped into a
`head` that has exited, a full disk, a descriptor closed before the runner started must
not stop the run, lose a report, or change the exit code. A stream that fails is pointed
at /dev/null from then on (so the interpreter's last flush cannot fail either), and
printing goes on into nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TextIO


class Forgiving(io.TextIOBase):
    """A text stream whose writes never raise; after the first failure they are dropped."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._give_up()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._give_up()

    def isatty(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return not self.broken and self._stream.isatty()
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"

    def _give_up(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def protect() -> None:
    """Make sys.stdout and sys.stderr forgiving (a closed one becomes /dev/null)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process
        if not isinstance(stream, Forgiving):
            setattr(sys, name, Forgiving(stream))
