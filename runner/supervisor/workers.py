"""`--workers N|auto`: spread one pytest run over N processes with pytest-xdist.

xdist runs the workers. Entries that share a `group` run in one worker (a scheduler the
runner hands to xdist through its `pytest_xdist_make_scheduler` hook); every other test
goes wherever a worker is free. Session fixtures are per worker process, so each worker
starts its own platform stack.

A worker that dies is replaced (`--max-worker-restart`, the run's restart bound) and the
run goes on: the test it held is an error, never run again (xdist's `load` scheduler drops
it; the group scheduler, built on `loadscope`, which would re-run it, is fixed for that),
and the run exits 5. `loadgroup`, which hangs with a replacement worker in xdist 3.8, is
not used.
"""

from __future__ import annotations

import importlib.util
import os

from runner.errors import UsageError
from runner.model import Entry

AUTO = "auto"


def parse_workers(value: str | None) -> str | None:
    """None (one process) or the count to hand to `pytest -n`; 'auto' is one worker per
    CPU this process may use (its affinity, so a container's limit counts)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text != AUTO and not (text.isdigit() and int(text) >= 1):
        raise UsageError(f"--workers must be a whole number >= 1 or 'auto', not {value!r}")
    if text == AUTO:
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        text = str(len(usable) if usable is not None else os.cpu_count() or 1)
    if text == "1":
        return None
    if importlib.util.find_spec("xdist") is None:
        raise UsageError("--workers needs pytest-xdist: pip install pytest-xdist")
    return text


def xdist_args(workers: str | None, entries: tuple[Entry, ...], restarts: int) -> tuple[str, ...]:
    """The pytest arguments for `workers` (nothing when running in one process); a worker
    that dies is replaced up to `restarts` times."""
    if workers is None:
        return ()
    load = ("-p", "xdist.plugin") if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else ()
    # with a `group`, the runner's plugin supplies the scheduler (runner/xdist_groups.py)
    dist = "loadscope" if any(e.group for e in entries) else "load"
    return (*load, "-n", workers, "--dist", dist, "--max-worker-restart", str(restarts))
