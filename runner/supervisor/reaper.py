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
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 2.0
KILL_ROUNDS = 20
QUIET_ROUNDS = 2  # scans in a row that find nothing: one can miss a process mid-fork


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
        self.groups: set[int] = set()  # the process groups of what was seen, but ours

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
                self._note(proc)

    def _note(self, proc: psutil.Process) -> None:
        self.seen.setdefault(proc.pid, proc)
        with contextlib.suppress(OSError):
            self.groups.add(os.getpgid(proc.pid))
        self.groups.discard(os.getpgrp())

    def stop(self, child_pid: int) -> int:
        """Stop what is left of the run: SIGTERM and a grace period, then SIGKILL round after
        round, to each process and to its process group, until two rounds in a row find
        nothing (a process may fork a successor when it is told to stop, or keep forking:
        a scan can miss one mid-fork, its group's signal cannot); returns how many
        processes were still alive."""
        import psutil  # noqa: PLC0415

        alive = self._left(child_pid)
        self._signal(alive, signal.SIGTERM)
        psutil.wait_procs(alive, timeout=LEFTOVER_GRACE)
        quiet = 0
        for _ in range(KILL_ROUNDS):
            stubborn = self._left(child_pid)
            busy = stubborn or any(_group_alive(g) for g in self.groups)
            quiet = 0 if busy else quiet + 1
            if quiet == QUIET_ROUNDS:
                break
            self._signal(stubborn, signal.SIGKILL)
            psutil.wait_procs(stubborn, timeout=0.5) if stubborn else time.sleep(0.01)
        return len(alive)

    def _signal(self, procs: list[psutil.Process], sig: signal.Signals) -> None:
        """`sig` to each process and to every group seen (never our own)."""
        import psutil  # noqa: PLC0415

        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        for group in self.groups:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)

    def _left(self, child_pid: int) -> list[psutil.Process]:
        """Every process of the run still alive: what was seen below the child, and the
        orphans that came back to us, with everything below them."""
        import psutil  # noqa: PLC0415

        self.follow(child_pid)
        adopted = self._adopted(child_pid)
        psutil.wait_procs(adopted, timeout=0)  # reap the adopted ones that ended
        for proc in adopted:
            self._note(proc)
            for below in self._children(proc, recursive=True):
                self._note(below)
        return [p for pid, p in self.seen.items() if pid != child_pid and _alive(p)]

    def _adopted(self, child_pid: int) -> list[psutil.Process]:
        """Our children that were not there before the child started, but the child itself."""
        return [p for p in self._children(self.me) if p.pid not in {*self.before, child_pid}]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _alive(proc: psutil.Process) -> bool:
    import psutil  # noqa: PLC0415

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
