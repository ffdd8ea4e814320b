"""Services forked from one process that has already imported them (gunicorn's preload).

Each service used to be a fresh interpreter importing Starlette, uvicorn, Redis, httpx,
cryptography and its own code: about 0.5 s of CPU each, four of them on two cores. The
stack now starts one fork server, which imports all of it once, and asks it for each
service: a fork takes milliseconds. The launcher keeps what it had with a Popen: the
child's pid, its exit code, a wait with a timeout.

The protocol is JSON lines. The launcher writes `{"name", "fd", "log"}`; the server forks,
answers `{"started": name, "pid": pid}` and later `{"exited": pid, "code": code}` (the
code as subprocess reports one: negative for a signal). The server holds no threads (it
forks), reaps its children on SIGCHLD, and ends at the end of its input. Each child runs
in a session of its own, dies with the server (PR_SET_PDEATHSIG), as the server dies with
the launcher.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from apex.launcher.errors import LaunchError
from apex.launcher.lifeline import PR_SET_PDEATHSIG, die_with_parent
from apex.serve import SERVICES, lean_imports

# what uvicorn imports only when a server starts: loaded once here, not in every child
UVICORN_LAZY = (
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.lifespan.on",
    "uvicorn.loops.asyncio",
)
# what the services import only once they run (pydantic for the configuration: ~0.2 s of
# CPU each, four at once on two cores at start-up; the identity provider's JOSE library)
SERVICE_LAZY = ("apex.runtime_config", "joserfc.jwk", "joserfc.jwt")
SPAWN_TIMEOUT = 10.0


class ForkedService:
    """A service the fork server started: what the launcher needs of a Popen."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid, self.server = pid, server

    def poll(self) -> int | None:
        return self.server.exit_code(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        code = self.server.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"service {self.pid}", timeout or 0.0)
        return code


class ForkServer:
    """The launcher's side: start the server, ask it for services, learn of their exits."""

    def __init__(self, fds: list[int], env: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apex.launcher.forkserver"],
                pass_fds=fds,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a single prctl call
            )
        self._changed = threading.Condition()
        self._started: dict[str, list[int]] = {}
        self._exits: dict[int, int] = {}
        self._gone = False
        self._reader = threading.Thread(target=self._read, name="apex-forkserver", daemon=True)
        self._reader.start()

    def spawn(self, name: str, fd: int, others: list[int], log: Path) -> ForkedService:
        """Fork service `name` serving `fd` (and closing `others`, the other services')."""
        request = json.dumps({"name": name, "fd": fd, "others": others, "log": str(log)})
        with self._changed:
            asked = len(self._started.get(name, []))
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(request.encode() + b"\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                raise LaunchError(name, "the fork server is gone") from None
            self._changed.wait_for(
                lambda: self._gone or len(self._started.get(name, [])) > asked, SPAWN_TIMEOUT
            )
            if len(self._started.get(name, [])) <= asked:
                raise LaunchError(name, "the fork server did not start it")
            return ForkedService(self._started[name][-1], self)

    def alive(self) -> bool:
        return not self._gone and self.proc.poll() is None

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        """End of input: the server leaves once its children have; then reap it. One that
        forked nothing (a stack that failed before its services) need not finish importing."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with self._changed:
            if not self._started:
                self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # not one of ours
                self._note(json.loads(line))
        with self._changed:  # the server is gone, and its children with it (PDEATHSIG)
            self._gone = True
            for pids in self._started.values():
                for pid in pids:
                    self._exits.setdefault(pid, -signal.SIGTERM)
            self._changed.notify_all()

    def _note(self, message: dict[str, Any]) -> None:
        with self._changed:
            if "started" in message:
                self._started.setdefault(message["started"], []).append(message["pid"])
            else:
                self._exits[message["exited"]] = message["code"]
            self._changed.notify_all()


def main() -> None:
    """The server: import every service once, then fork one per request until the end of
    its input; then wait for the children still running."""
    _preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
    children: set[int] = set()
    private = {0, 1, wake_r, wake_w}
    pending = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
        _reap(children, block=False)
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            children.update(_fork(json.loads(line), private) for line in lines if line)
    _reap(children, block=True)


def _preload() -> None:
    """What every service imports. A module that fails to import is left to the child of
    that service, where the error lands in its own log and exit code."""
    lean_imports()
    for module in ("apex.service", "uvicorn", *UVICORN_LAZY, *SERVICES.values(), *SERVICE_LAZY):
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    with contextlib.suppress(Exception):
        importlib.import_module("apex.tls").tls()  # made once here, every child inherits it


def _reap(children: set[int], *, block: bool) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork(request: dict[str, Any], private: set[int]) -> int:
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(request, private, server)  # never returns
    _say({"started": request["name"], "pid": pid})
    return pid


def _child(request: dict[str, Any], private: set[int], server: int) -> None:
    code = 1
    try:
        _become_service(request, private, server)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _become_service(request: dict[str, Any], private: set[int], server: int) -> None:
    """In the child: a session of its own, the service's log, then the service."""
    os.setsid()
    _die_with(server)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd in (1, 2):
        os.dup2(log, fd)
    for fd in (private | set(request["others"])) - {1, 2}:  # not this service's to hold
        with contextlib.suppress(OSError):
            os.close(fd)
    os.close(log)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's stdin for good
    random.seed()  # a fork copies the parent's generator state
    _serve(request["name"], int(request["fd"]))


def _die_with(server: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != server:  # the server died before the request was armed
        os._exit(1)


def _serve(name: str, fd: int) -> None:
    from apex.serve import run_service  # noqa: PLC0415 - in the child only

    run_service(name, fd)


def _say(message: dict[str, Any], out: IO[str] = sys.stdout) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: with everything imported it took ~0.4 s a stack
