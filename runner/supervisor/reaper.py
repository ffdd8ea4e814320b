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
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 2.0
KILL_ROUNDS = 20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded before any fork: a child between fork and exec only calls into it


def become_subreaper() -> bool:
    """Orphans of the run's processes are re-parented to this process (Linux only)."""
    return _LIBC is not None and int(_LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def dies_with_us() -> Callable[[], None] | None:
    """A `preexec_fn`: the child gets SIGTERM when this process dies, even by SIGKILL, when
    nothing of the runner is left to stop it (Linux only)."""
    libc = _LIBC
    if libc is None:
        return None

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return arm


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
        """Stop what is left of the run: SIGTERM and a grace period, then SIGKILL round after
        round until nothing new turns up (a process may fork a successor when it is told
        to stop, or keep forking); returns how many processes were still alive."""
        import psutil  # noqa: PLC0415

        alive = self._left(child_pid)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        psutil.wait_procs(alive, timeout=LEFTOVER_GRACE)
        for _ in range(KILL_ROUNDS):
            stubborn = self._left(child_pid)
            if not stubborn:
                break
            for proc in stubborn:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(stubborn, timeout=0.5)
        psutil.wait_procs(self._adopted(child_pid), timeout=0)  # reap the adopted ones that ended
        return len(alive)

    def _left(self, child_pid: int) -> list[psutil.Process]:
        """Every process of the run still alive: what was seen below the child, and the
        orphans that came back to us, with everything below them."""
        self.follow(child_pid)
        for proc in self._adopted(child_pid):
            self.seen.setdefault(proc.pid, proc)
            for below in self._children(proc, recursive=True):
                self.seen.setdefault(below.pid, below)
        return [p for pid, p in self.seen.items() if pid != child_pid and _alive(p)]

    def _adopted(self, child_pid: int) -> list[psutil.Process]:
        """Our children that were not there before the child started, but the child itself."""
        return [p for p in self._children(self.me) if p.pid not in {*self.before, child_pid}]


def _alive(proc: psutil.Process) -> bool:
    import psutil  # noqa: PLC0415

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
