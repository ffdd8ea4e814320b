"""Nothing a run starts outlives it.

Killing the child's process group is not enough: a test (or the platform launcher a test
starts) may put processes in sessions of their own. On Linux the runner makes itself a
child subreaper, so such a process comes back to it when its parent dies, and follows the
child's process tree while it runs; when the child has ended, every process it left is
sent SIGTERM, then SIGKILL after a grace period, and reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 2.0


def become_subreaper() -> bool:
    """Orphans of the run's processes are re-parented to this process (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Leftovers:
    """The processes one child starts: followed while it runs, stopped when it ends."""

    def __init__(self) -> None:
        import psutil  # noqa: PLC0415 - only a run needs it; `--list` must start fast

        self.me = psutil.Process()
        self.before = {p.pid for p in self._children(self.me)}
        self.seen: dict[int, psutil.Process] = {}

    @staticmethod
    def _children(proc: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
        import psutil  # noqa: PLC0415

        try:
            return list(proc.children(recursive=recursive))
        except psutil.Error:
            return []

    def follow(self, pid: int) -> None:
        """Note every process below `pid` now (cheap enough to call a few times a second)."""
        import psutil  # noqa: PLC0415

        with contextlib.suppress(psutil.Error):
            for proc in self._children(psutil.Process(pid), recursive=True):
                self.seen.setdefault(proc.pid, proc)

    def stop(self, child_pid: int) -> int:
        """Stop what is left of the run; returns how many processes were still alive."""
        import psutil  # noqa: PLC0415

        self.follow(child_pid)
        for proc in self._adopted(
            child_pid
        ):  # orphans that came back to us, with what they started
            self.seen.setdefault(proc.pid, proc)
            for below in self._children(proc, recursive=True):
                self.seen.setdefault(below.pid, below)
        alive = [p for pid, p in self.seen.items() if pid != child_pid and _alive(p)]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, stubborn = psutil.wait_procs(alive, timeout=LEFTOVER_GRACE)
        for proc in stubborn:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(stubborn, timeout=LEFTOVER_GRACE)
        psutil.wait_procs(self._adopted(child_pid), timeout=0)  # reap the adopted ones that ended
        return len(alive)

    def _adopted(self, child_pid: int) -> list[psutil.Process]:
        """Our children that were not there before the child started, but the child itself."""
        return [p for p in self._children(self.me) if p.pid not in {*self.before, child_pid}]


def _alive(proc: psutil.Process) -> bool:
    import psutil  # noqa: PLC0415

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
