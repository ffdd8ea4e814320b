"""The whole platform: Redis, then idp, auth, backend and gateway, each on its own port."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from apex.client import Endpoints
from apex.launcher.errors import LaunchError
from apex.launcher.forkserver import ForkServer
from apex.launcher.ports import listening_socket
from apex.launcher.process import ServiceProcess
from apex.launcher.redis_server import RedisServer, find_redis_server, wait_for_redis
from apex.tls import tls

ORDER = ("idp", "auth", "backend", "gateway")
URL_VARS = {"auth": "APEX_AUTH_URL", "backend": "APEX_BACKEND_URL", "idp": "APEX_IDP_URL"}


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """What to launch; defaults come from the environment (see README)."""

    redis_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 20.0
    redis_wait: float = 3.0  # how long a given REDIS_URL may take to answer
    max_restarts: int = 3
    monitor_interval: float = 0.1
    preload: bool = True  # fork services from a process that imported them (else: exec each)

    @classmethod
    def from_env(cls) -> StackConfig:
        ports = {
            n: int(os.environ[f"APEX_{n.upper()}_PORT"])
            for n in ORDER
            if os.environ.get(f"APEX_{n.upper()}_PORT")
        }
        return cls(redis_url=os.environ.get("REDIS_URL") or None, ports=ports)


class Stack:
    """Start with `start()` or as a context manager; `stop()` leaves nothing behind."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self.workdir = Path(tempfile.mkdtemp(prefix="apex-"))
        self.redis: RedisServer | None = None
        self.redis_url = self.config.redis_url or ""
        self.services: dict[str, ServiceProcess] = {}
        self.forkserver: ForkServer | None = None
        self.demo: tuple[str, str] = ("", "")
        self.env: dict[str, str] = {}
        self.started_in = 0.0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        try:
            self._plan_redis()
            sockets = self._bind_all()
            self._preload(sockets)  # the fork server imports the services while Redis starts
            self._start_redis()
            self._spawn_services(sockets)
            self._wait_ready(self.config.ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        self._monitor = threading.Thread(target=self._watch, name="apex-monitor", daemon=True)
        self._monitor.start()

    def _plan_redis(self) -> None:
        """Our own redis-server (its port chosen now, started later), unless given one."""
        if not self.redis_url:
            binary = find_redis_server(os.environ.get("APEX_REDIS_SERVER"))
            self.redis = RedisServer(binary, self.workdir)
            self.redis_url = self.redis.url

    def _start_redis(self) -> None:
        if self.redis is None:
            wait_for_redis(self.redis_url, self.config.redis_wait)
        else:
            self.redis.start()

    def _preload(self, sockets: dict[str, socket.socket]) -> None:
        """The services, their environment, and the fork server (it imports them at once)."""
        self.services = {n: ServiceProcess(n, sockets[n], {}, self.workdir) for n in ORDER}
        env = self._service_env()
        for svc in self.services.values():
            svc.env = env
        if self.config.preload:
            fds = [s.fileno() for s in sockets.values()]
            self.forkserver = ForkServer(fds, env, self.workdir / "forkserver.log")

    def _spawn_services(self, sockets: dict[str, socket.socket]) -> None:
        fds = [s.fileno() for s in sockets.values()]
        for name in ORDER:  # dependency order; each waits for its dependencies' readiness
            svc = self.services[name]
            svc.server = self.forkserver
            svc.others = [fd for fd in fds if fd != svc.sock.fileno()]
            svc.start()

    def _bind_all(self) -> dict[str, socket.socket]:
        sockets: dict[str, socket.socket] = {}
        try:
            for name in ORDER:
                sockets[name] = listening_socket(name, self.config.ports.get(name, 0))
        except LaunchError:
            for sock in sockets.values():
                sock.close()
            raise
        return sockets

    def _service_env(self) -> dict[str, str]:
        email = os.environ.get("APEX_DEMO_EMAIL") or "demo@apex.local"
        password = os.environ.get("APEX_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        self.demo = (email, password)
        env = {
            **os.environ,
            **self.config.env,
            "REDIS_URL": self.redis_url,
            "APEX_DATA_DIR": str(self.workdir),
            "APEX_DEMO_EMAIL": email,
            "APEX_DEMO_PASSWORD": password,
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("APEX_JWT_SECRET", "APEX_SERVICE_TOKEN"):  # an empty one is no key at all
            env[key] = env.get(key) or secrets.token_urlsafe(32)
        env.update({var: self.services[n].url for n, var in URL_VARS.items()})
        env["APEX_GATEWAY_URL"] = self.gateway_ws_url
        self.env = env
        return env

    @property
    def gateway_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.services['gateway'].port}/ws"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(ORDER)
        with httpx.Client(verify=tls(), timeout=0.5) as client:
            while pending:
                pending = [n for n in pending if not self._ready(client, n)]
                if pending and time.monotonic() > deadline:
                    svc = self.services[pending[0]]
                    raise LaunchError(svc.name, f"not ready after {timeout:g} s", svc.log_tail())
                time.sleep(0.01 if pending else 0)

    def _ready(self, client: httpx.Client, name: str) -> bool:
        svc = self.services[name]
        if not svc.alive():
            raise LaunchError(
                name, f"exited with code {svc.exit_code()} while starting", svc.log_tail()
            )
        try:
            return client.get(f"{svc.url}/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 15.0) -> bool:
        """True once service `name`, which died as `old_pid`, runs again and is ready."""
        svc = self.services[name]
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=tls(), timeout=0.5) as client:
            while time.monotonic() < deadline:
                if svc.pid != old_pid and svc.alive() and self._ready(client, name):
                    return True
                time.sleep(0.05)
        return False

    def _watch(self) -> None:
        """Restart a service that dies, up to `max_restarts` times each."""
        while not self._stop.wait(self.config.monitor_interval):
            for svc in self.services.values():
                if self._stop.is_set():
                    return
                if not svc.alive() and svc.restarts < self.config.max_restarts:
                    svc.restarts += 1
                    svc.start()

    def endpoints(self) -> Endpoints:
        return Endpoints(
            auth=self.services["auth"].url,
            backend=self.services["backend"].url,
            gateway=self.gateway_ws_url,
            idp=self.services["idp"].url,
            redis=self.redis_url,
            service_secret=self.env["APEX_SERVICE_TOKEN"],
        )

    def env_lines(self) -> list[str]:
        """The shell-sourceable lines of the launcher contract (README, DESIGN)."""
        urls = {
            "REDIS_URL": self.redis_url,
            "APEX_AUTH_URL": self.services["auth"].url,
            "APEX_BACKEND_URL": self.services["backend"].url,
            "APEX_GATEWAY_URL": self.gateway_ws_url,
            "APEX_IDP_URL": self.services["idp"].url,
        }
        return [f"{k}={v}" for k, v in urls.items()]

    def stop(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        running = [self.services[n] for n in reversed(ORDER) if n in self.services]
        for svc in running:  # all at once: each takes a few hundred ms to wind down
            svc.terminate()
        for svc in running:
            svc.reap()
            svc.sock.close()
        if self.forkserver is not None:
            self.forkserver.close()
        if self.redis is not None:
            self.redis.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
