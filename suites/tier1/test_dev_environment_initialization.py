"""Dev environment initialization ($20K MRR): the launcher every developer starts the day with.

Services start in dependency order and report healthy and ready consistently, the
environment configures them, a killed service comes back by itself, a port clash or a
missing Redis is a clear one-line error, and shutdown leaves no process or port behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from apex.launcher import LaunchError, Stack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("idp", "auth", "backend", "gateway")


def _launch(extra_env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "apex.launcher"],
        cwd=ROOT,
        env={**os.environ, **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _contract(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    for line in proc.stdout:
        if line.startswith("ready in "):
            return lines
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            lines[key] = value
    raise AssertionError(
        f"launcher never became ready: {proc.stderr.read() if proc.stderr else ''}"
    )


def test_launcher_applies_the_environment_and_stops_cleanly() -> None:
    env = {
        "APEX_DEMO_EMAIL": "dev@apex.test",
        "APEX_DEMO_PASSWORD": "a-long-dev-password",
        "APEX_ACCESS_TOKEN_TTL": "123",
    }
    with _launch(env) as proc:
        urls = _contract(proc)
        assert list(urls)[:4] == [
            "REDIS_URL",
            "APEX_AUTH_URL",
            "APEX_BACKEND_URL",
            "APEX_GATEWAY_URL",
        ]
        login = httpx.post(
            f"{urls['APEX_AUTH_URL']}/auth/login",
            json={"email": "dev@apex.test", "password": "a-long-dev-password"},
        )
        assert login.status_code == 200 and login.json()["expires_in"] == 123
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in urls.values()]
    assert all(_port_free(p) for p in ports)


def test_health_and_readiness_agree_for_every_service(local_stack: Stack) -> None:
    for name in SERVICES:
        svc = local_stack.services[name]
        health = httpx.get(f"{svc.url}/health").json()
        ready = httpx.get(f"{svc.url}/health/ready")
        assert health["status"] == "ok" and health["service"] == name
        assert ready.status_code == 200 and ready.json()["service"] == name
        assert all(ready.json()["checks"].values())


def test_killed_service_is_detected_and_restarted(local_stack: Stack) -> None:
    gateway = local_stack.services["gateway"]
    old = gateway.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert local_stack.wait_restarted("gateway", old), "the gateway was not restarted"
    assert gateway.restarts >= 1
    assert gateway.url == f"http://127.0.0.1:{gateway.port}"  # same port as before


def test_port_clash_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with _launch({"APEX_BACKEND_PORT": str(port)}) as proc:
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"backend: cannot listen on 127.0.0.1:{port}: address already in use" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (StackConfig(redis_url="redis://127.0.0.1:9/0", redis_wait=0.5), "redis: no answer at"),
        (None, "APEX_REDIS_SERVER=/nonexistent/redis-server does not exist"),
    ],
)
def test_missing_redis_is_a_clear_error(
    config: StackConfig | None, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APEX_REDIS_SERVER", "/nonexistent/redis-server")
    monkeypatch.delenv("REDIS_URL", raising=False)
    stack = Stack(config or StackConfig())
    with pytest.raises(LaunchError, match=message):
        stack.start()
    assert not stack.workdir.exists()


def test_shutdown_leaves_no_process_or_port_behind() -> None:
    stack = Stack(StackConfig())
    stack.start()
    pids = [s.pid for s in stack.services.values()]
    assert stack.redis is not None and stack.redis.proc is not None
    pids.append(stack.redis.proc.pid)
    ports = [s.port for s in stack.services.values()] + [stack.redis.port]
    stack.stop()
    assert not any(_alive(pid) for pid in pids if pid is not None)
    assert all(_port_free(p) for p in ports)
    assert not stack.workdir.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # SO_REUSEADDR as any server sets it: closed connections in TIME_WAIT do not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
