"""Writing report files: whole or not at all, through links and into pipes, with the
user's umask.

A regular file is written beside its target and renamed over it, so a reader never sees
half a report. A symbolic link is followed (the file it points to is replaced, the link
stays); a FIFO, a device or a terminal is written into directly, since it cannot be
replaced. A new file gets the mode the user's umask gives, an existing one keeps its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from runner import signals
from runner.errors import UsageError


def check_distinct(paths: Iterable[tuple[str, Path | None]]) -> None:
    """Two reports aimed at one file would overwrite each other: refuse before running."""
    seen: dict[str, str] = {}
    for option, path in paths:
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen and not _is_stream(str(path)):
            raise UsageError(f"{seen[key]} and {option} both write {path}: give each its own file")
        seen[key] = option


def _is_stream(path: str) -> bool:
    """An existing path (links followed) that is not a regular file or a directory."""
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
    return False


def write_text(path: Path, text: str, *, append: bool = False) -> None:
    """Write `text` to `path` (see the module's docstring); OSError if it cannot be."""
    data = text.encode("utf-8")
    if _is_stream(str(path)):
        _write_stream(path, data)
        return
    if append:
        with Path(path).open("ab") as handle:
            handle.write(data)
        return
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace(target, data)


STREAM_SECONDS = 30.0  # how long a FIFO's reader may keep a report waiting


def _write_stream(path: Path, data: bytes) -> None:
    """Into a FIFO or a device, never blocking for good: a FIFO nobody reads is an error
    at once (ENXIO), one whose reader stops reading after STREAM_SECONDS."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a FIFO no process reads from") from None
        raise
    try:
        deadline = time.monotonic() + STREAM_SECONDS
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [fd], [], 0.1)
            if ready:
                view = view[os.write(fd, view[: 1 << 16]) :]
            elif time.monotonic() > deadline or signals.insistent():
                raise OSError(errno.ETIMEDOUT, "the reader stopped reading")
    finally:
        os.close(fd)


def _replace(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if target.exists():
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
