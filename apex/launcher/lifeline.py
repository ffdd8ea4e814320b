"""A launched process dies with the launcher, even one killed with SIGKILL.

Services run in sessions of their own (so a signal to the launcher's group does not reach
them half-way), which also means nothing stops them when the launcher is killed outright.
On Linux each child asks the kernel for SIGTERM when its parent goes (PR_SET_PDEATHSIG),
set between fork and exec so that it holds from the child's first instruction.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded before any fork: the child only calls into it


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen, or None where the kernel has no such call."""
    libc = _LIBC
    if libc is None:
        return None

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return arm
