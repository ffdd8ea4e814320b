"""`python -m apex.launcher` as a child of a test: output read with a deadline, always
stopped (killed if it must be), so a failing assert can never hang the test."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_WAIT_S = 30.0
STOP_WAIT_S = 20.0


class Launcher:
    def __init__(self, extra_env: dict[str, str], unset: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if k not in unset}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apex.launcher"],
            cwd=ROOT,
            env={**env, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None:
                self.stop()
        finally:
            self.reader.join(timeout=5)  # before closing: no read on a closed pipe
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError(f"the launcher ignored {sig.name} for {STOP_WAIT_S:g} s") from None

    def contract(self) -> tuple[dict[str, str], list[str], str]:
        """(KEY=value lines, # comments, the `ready in` line), or AssertionError in time."""
        deadline = time.monotonic() + LAUNCHER_WAIT_S
        urls: dict[str, str] = {}
        comments: list[str] = []
        while True:
            line = self._next(deadline)
            if line.startswith("ready in "):
                return urls, comments, line
            if line.startswith("#"):
                comments.append(line)
            elif "=" in line:
                key, _, value = line.partition("=")
                urls[key] = value

    def _next(self, deadline: float) -> str:
        try:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"not ready within {LAUNCHER_WAIT_S:g} s") from None
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"exited ({self.proc.wait(5)}) before ready: {err}")
        return line


def run_launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The launcher to its end (killed after 30 s: never a hang)."""
    return subprocess.run(
        [sys.executable, "-m", "apex.launcher", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        # SO_REUSEADDR as any server sets it: closed connections in TIME_WAIT do not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
