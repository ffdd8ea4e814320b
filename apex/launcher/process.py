"""One service process: started on an inherited socket, watched, restarted, stopped.

It is forked by the stack's fork server (apex.launcher.forkserver) when there is one that
is alive, else started as a fresh interpreter (`python -m apex.serve`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Protocol

from apex.launcher.forkserver import ForkServer
from apex.launcher.lifeline import die_with_parent

STOP_GRACE = 3.0


class Running(Protocol):
    """What a started service is to the launcher: a Popen, or a forked service."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ServiceProcess:
    def __init__(self, name: str, sock: socket.socket, env: dict[str, str], logdir: Path) -> None:
        self.name, self.sock, self.env = name, sock, env
        self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"{name}.log"
        self.proc: Running | None = None
        self.restarts = 0
        self.server: ForkServer | None = None
        self.others: list[int] = []  # the other services' sockets: a fork closes them

    def start(self) -> None:
        fd = self.sock.fileno()
        if self.server is not None and self.server.alive():
            self.proc = self.server.spawn(self.name, fd, self.others, self.log_path)
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apex.serve", self.name, "--fd", str(fd)],
                pass_fds=(fd,),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a single prctl call
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> None:
        self.terminate()
        self.reap()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM to its group); `reap` waits. Split so a stack can ask
        every service at once and wait for them together."""
        if self.proc is not None:
            _signal(self.proc.pid, signal.SIGTERM)

    def reap(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            _signal(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _signal(self.proc.pid, signal.SIGKILL)  # anything it left in its group

    def log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_path.open("r", encoding="utf-8", errors="replace") as handle:
                return "".join(deque(handle, maxlen=lines)).rstrip()
        except OSError:
            return ""


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
