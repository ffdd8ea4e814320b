"""Where a run keeps its files: its working directory, and the temporary directory of its
pytest processes.

The working directory (events, selections, pytest's own output) goes under the
project's `.runner/logs/`, where a run that went wrong leaves pytest's output to read; the
newest LOGS_KEPT of them are kept, older ones removed. A project that cannot be written
to gets one in the system temporary directory instead.

The pytest processes get a temporary directory of their own (TMPDIR): whatever they or
the services they start leave in it (a platform killed at a timeout leaves its data
directory) is removed with it at the end of the run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

LOGS_DIR = Path(".runner") / "logs"
LOGS_KEPT = 20


def make_workdir(root: Path) -> Path:
    """A fresh working directory for one run."""
    logs = root / LOGS_DIR
    stamp = time.strftime("%Y%m%d-%H%M%S-")
    with contextlib.suppress(OSError):
        logs.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=stamp, dir=logs))
    return Path(tempfile.mkdtemp(prefix="utr-"))


def make_tmpdir() -> Path:
    """The TMPDIR of the run's pytest processes."""
    return Path(tempfile.mkdtemp(prefix="utr-tmp-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def keep_logs_only(workdir: Path) -> None:
    """What a run that went wrong leaves: pytest's own output, nothing else."""
    if not workdir.is_dir():
        return  # a test removed it, and pytest's output with it
    for path in workdir.iterdir():  # a test may have left anything here, directories too
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.suffix != ".log":
            path.unlink(missing_ok=True)
    prune(workdir.parent)


def prune(logs: Path, keep: int = LOGS_KEPT) -> None:
    """Remove all but the newest `keep` run directories under the project's logs."""
    if logs.name != LOGS_DIR.name or logs.parent.name != LOGS_DIR.parent.name:
        return  # a working directory in the system temporary directory: not ours to sort
    with contextlib.suppress(OSError):
        runs = sorted((p for p in logs.iterdir() if p.is_dir()), key=lambda p: p.name)
        for old in runs[:-keep] if keep else runs:
            shutil.rmtree(old, ignore_errors=True)
