"""A pytest child started before the parent knows what it will run.

A run pays twice for Python start-up: the parent's (click, the registry, the selection)
and then pytest's own interpreter and imports, one after the other. The entry point
therefore starts a child first (`runner.boot.prewarmed`), on the other core: it imports pytest
and its built-in plugins while the parent works out the run, then reads one JSON line
(pytest's arguments, the environment, the log file) and becomes that pytest run.

Nothing else changes: the child is its own process group, the parent supervises it
exactly as a freshly spawned one. When it cannot serve the run (another working
directory, an interpreter-level variable such as PYTHONPATH that differs, the child
already gone), the parent discards it and spawns pytest the usual way. A child that was
never sent a run (a usage error, an empty selection) is killed when the parent exits; it
has run nothing. If the parent dies first, the child reads the end of the pipe and leaves.
Set UTR_NO_PREWARM=1 to turn it off.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
from pathlib import Path

_pending: list[tuple[subprocess.Popen[bytes], dict[str, str]]] = []


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What every pytest child's environment is: the parent's, with `extra` (a profile's
    variables). Nothing of the runner's own: the child finds its plugin by itself."""
    return {**os.environ, **(extra or {})}


def start(env: dict[str, str]) -> None:
    """Start the child (the entry point skips commands that run no pytest)."""
    if os.environ.get("UTR_NO_PREWARM"):
        return
    from runner.child import boot  # noqa: PLC0415
    from runner.supervisor.reaper import dies_with_us  # noqa: PLC0415

    try:
        proc = subprocess.Popen(
            boot.command(entry="prewarmed"),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=dies_with_us(),  # noqa: PLW1509 - one prctl call, no Python state
        )
    except OSError:
        return
    _pending.append((proc, env))
    atexit.register(discard)


def take(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """The waiting child, if it can run pytest in `root` with `env`; at most once."""
    if not _pending:
        return None
    proc, started_with = _pending.pop()
    interpreter = {k for k in {*env, *started_with} if k.startswith("PYTHON")}
    usable = proc.poll() is None and Path.cwd().resolve() == root.resolve()
    if not usable or any(env.get(k) != started_with.get(k) for k in interpreter):
        _drop(proc)
        return None
    return proc


def launch(proc: subprocess.Popen[bytes], args: list[str], env: dict[str, str], log: Path) -> bool:
    """Hand the run to the child; False if it is gone (the caller spawns pytest itself)."""
    message = json.dumps({"args": args, "env": env, "log": str(log)}) + "\n"
    try:
        assert proc.stdin is not None
        proc.stdin.write(message.encode("utf-8"))
        proc.stdin.close()
    except (OSError, ValueError):
        _drop(proc)
        return False
    return True


def discard() -> None:
    while _pending:
        _drop(_pending.pop()[0])


def _drop(proc: subprocess.Popen[bytes]) -> None:
    """It has run nothing yet (it waits for its message), so it can simply be killed."""
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
