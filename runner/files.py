"""Writing report files: whole or not at all, through links and into pipes, with the
user's umask.

A regular file is written beside its target and renamed over it, so a reader never sees
half a report. A symbolic link is followed (the file it points to is replaced, the link
stays); a FIFO, a device or a terminal is written into directly, since it cannot be
replaced. A new file gets the mode the user's umask gives, an existing one keeps its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

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
    if append or _is_stream(str(path)):
        with Path(path).open("ab" if append else "wb") as handle:
            handle.write(data)
        return
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace(target, data)


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
