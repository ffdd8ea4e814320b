"""The only module that starts processes: pytest in a child, in its own process group.

Events are read from a file the child's plugin appends to, so progress and results
survive whatever happens to the child. On timeout or Ctrl-C the whole group is sent
SIGTERM, then SIGKILL after a grace period; nothing it started is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import prewarm
from runner.errors import RunBrokenError

POLL_SECONDS = 0.02
EventHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """How to start one pytest child."""

    root: Path
    targets: tuple[str, ...]
    extra_args: tuple[str, ...]
    spec_file: Path
    events_file: Path
    log_file: Path
    timeout: float
    grace: float = 5.0
    env: tuple[tuple[str, str], ...] = ()  # set for the child (an environment profile)


@dataclass(frozen=True, kw_only=True)
class ChildExit:
    """How the child ended."""

    returncode: int | None
    timed_out: bool
    interrupted: bool
    duration: float


def pytest_argv(spec: ChildSpec) -> list[str]:
    """An argument list (never a shell string); targets follow `--` so none is an option."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "runner.plugin",
        *spec.extra_args,
        "--",
        *spec.targets,
    ]


def child_env(spec: ChildSpec) -> dict[str, str]:
    """The parent's environment plus where to find the plugin and write events."""
    env = prewarm.base_env(dict(spec.env))
    env["UTR_EVENTS"] = str(spec.events_file)
    env["UTR_SELECTION"] = str(spec.spec_file)
    return env


def run_child(spec: ChildSpec, on_event: EventHandler) -> ChildExit:
    """Run pytest, feeding each event to `on_event` as it arrives."""
    spec.events_file.touch()
    started = time.monotonic()
    with spec.log_file.open("wb") as log:
        proc = _spawn(spec, log)
        with _EventTail(spec.events_file, on_event) as tail:
            timed_out, interrupted = _supervise(proc, spec, tail, started)
            tail.drain()
    return ChildExit(
        returncode=proc.returncode,
        timed_out=timed_out,
        interrupted=interrupted,
        duration=time.monotonic() - started,
    )


def _spawn(spec: ChildSpec, log: Any) -> subprocess.Popen[bytes]:
    argv, env = pytest_argv(spec), child_env(spec)
    ready = prewarm.take(spec.root, env)  # a child already past pytest's imports
    if ready is not None and prewarm.launch(ready, argv[3:], env, spec.log_file):
        return ready
    try:
        return subprocess.Popen(
            argv,
            cwd=spec.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise RunBrokenError(f"cannot start pytest: {exc}") from None


def _supervise(
    proc: subprocess.Popen[bytes], spec: ChildSpec, tail: _EventTail, started: float
) -> tuple[bool, bool]:
    deadline = started + spec.timeout
    with _StopRequest() as stop:
        while proc.poll() is None:
            tail.drain()
            if stop.requested:
                stop_group(proc, spec.grace)
                return False, True
            if time.monotonic() >= deadline:
                stop_group(proc, spec.grace)
                return True, False
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(POLL_SECONDS)  # returns as soon as the child ends
    _kill_leftovers(proc.pid)
    return False, stop.requested


class _StopRequest:
    """Turns SIGINT / SIGTERM into a flag while the child runs.

    A KeyboardInterrupt raised in the middle of reading events could drop lines
    already read; a flag checked between reads cannot.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after `grace`."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _kill_leftovers(proc.pid)
    proc.wait()


def _kill_leftovers(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _EventTail:
    """Reads complete JSON lines appended to a file; a torn last line waits for more."""

    def __init__(self, path: Path, on_event: EventHandler) -> None:
        self.path = path
        self.on_event = on_event
        self.buffer = b""

    def __enter__(self) -> _EventTail:
        self.handle = self.path.open("rb")
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def drain(self) -> None:
        chunk = self.handle.read()
        if not chunk:
            return
        *lines, self.buffer = (self.buffer + chunk).split(b"\n")
        for line in lines:
            self._deliver(line)

    def _deliver(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return  # a line torn by a crash carries nothing we can trust
        if isinstance(event, dict):
            self.on_event(event)
