"""Start one pytest child in its own process group and supervise it to the end.

Events are read from a file the child's plugin appends to, so progress and results
survive whatever happens to the child. On a timeout or a stop signal the whole group is
sent SIGTERM, then SIGKILL after a grace period. Once pytest has finished its session, a
process that still does not exit (a non-daemon thread, say) gets a short grace and is then
stopped: its results stand. Whatever the child started is stopped when it ends
(runner.reaper), wherever it went.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import signals
from runner.child import boot
from runner.child.protocol import SPEC_OPTION
from runner.errors import RunBrokenError
from runner.supervisor import prewarm
from runner.supervisor.reaper import Leftovers, become_subreaper, dies_with_us

POLL_SECONDS = 0.02
FOLLOW_EVERY = 10  # polls between two looks at the child's process tree
EXIT_GRACE = 5.0  # seconds a child may take to exit once pytest has finished
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

    @property
    def targets_file(self) -> Path:
        return self.spec_file.with_suffix(".args")


@dataclass(frozen=True, kw_only=True)
class ChildExit:
    """How the child ended."""

    returncode: int | None
    stopped: str  # why the runner stopped it: timeout, lingered, a signal's name; or ''
    duration: float

    @property
    def timed_out(self) -> bool:
        return self.stopped == "timeout"

    @property
    def interrupted(self) -> bool:
        return self.stopped in {s.name for s in signals.HANDLED}


def pytest_argv(spec: ChildSpec) -> list[str]:
    """An argument list (never a shell string). Targets come from a file pytest reads
    (`@file`), after `--`: none is taken for an option, and no length is too long."""
    return boot.command(
        "-p",
        boot.plugin_module(),
        f"{SPEC_OPTION}={spec.spec_file}",  # one word: no path of it counts for the rootdir
        *spec.extra_args,
        "--",
        f"@{spec.targets_file}",
    )


def run_child(spec: ChildSpec, on_event: EventHandler, finished: Callable[[], bool]) -> ChildExit:
    """Run pytest, feeding each event to `on_event` as it arrives; `finished` says when
    pytest is done with its session (from the events)."""
    spec.events_file.touch()
    spec.targets_file.write_text("".join(f"{t}\n" for t in spec.targets), encoding="utf-8")
    started = time.monotonic()
    become_subreaper()
    leftovers = Leftovers()
    with spec.log_file.open("ab") as log:
        proc = _spawn(spec, log)
        try:
            with _EventTail(spec.events_file, on_event) as tail:
                stopped = _supervise(proc, spec, tail, leftovers, finished)
                tail.drain()
        finally:
            _end(proc, leftovers)
    return ChildExit(
        returncode=proc.returncode, stopped=stopped, duration=time.monotonic() - started
    )


def _spawn(spec: ChildSpec, log: Any) -> subprocess.Popen[bytes]:
    argv, env = pytest_argv(spec), prewarm.base_env(dict(spec.env))
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
            preexec_fn=dies_with_us(),  # noqa: PLW1509 - one prctl call, no Python state
        )
    except OSError as exc:
        raise RunBrokenError(f"cannot start pytest: {exc}") from None


class _Watch:
    """Why the child should be stopped now, if it should."""

    def __init__(self, spec: ChildSpec, finished: Callable[[], bool]) -> None:
        self.deadline = time.monotonic() + spec.timeout
        self.finished = finished
        self.exit_by: float | None = None

    def reason(self) -> str:
        now = time.monotonic()
        if signals.requested():
            return signals.requested()
        if now >= self.deadline:
            return "timeout"
        if self.finished():
            self.exit_by = self.exit_by or now + EXIT_GRACE
            if now >= self.exit_by:
                return "lingered"
        return ""


def _supervise(
    proc: subprocess.Popen[bytes],
    spec: ChildSpec,
    tail: _EventTail,
    leftovers: Leftovers,
    finished: Callable[[], bool],
) -> str:
    watch = _Watch(spec, finished)
    polls = 0
    while proc.poll() is None:
        tail.drain()
        reason = watch.reason()
        if reason:
            stop_group(proc, 0.0 if signals.insistent() else spec.grace)
            return reason
        polls += 1
        if polls % FOLLOW_EVERY == 0:
            leftovers.follow(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(POLL_SECONDS)  # returns as soon as the child ends
    return ""


def _end(proc: subprocess.Popen[bytes], leftovers: Leftovers) -> None:
    """However supervision ended (an exception included), nothing of the child lives on."""
    if proc.poll() is None:
        stop_group(proc, 0.0)
    leftovers.stop(proc.pid)
    _signal_group(proc.pid, signal.SIGKILL)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after `grace`."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


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
