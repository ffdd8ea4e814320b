"""The dev launcher: the printed contract, health, auto-restart, clean shutdown, errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from apex.launcher import LaunchError, Stack, StackConfig
from tests.conftest import REPO


def test_launcher_prints_the_contract_and_stops_cleanly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "apex.launcher"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        lines = _read_until_ready(proc)
        env = dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))
        assert set(env) >= {"REDIS_URL", "APEX_AUTH_URL", "APEX_BACKEND_URL", "APEX_GATEWAY_URL"}
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/ws", env["APEX_GATEWAY_URL"])
        for name in ("APEX_AUTH_URL", "APEX_BACKEND_URL"):
            assert httpx.get(f"{env[name]}/health/ready").json()["status"] == "ready"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    for name in ("APEX_AUTH_URL", "APEX_BACKEND_URL"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{env[name]}/health")


def _read_until_ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("ready in "):
            return lines
    raise AssertionError(f"no ready line: {lines} {proc.stderr.read() if proc.stderr else ''}")


def test_killed_service_is_restarted_on_the_same_port(stack: Stack) -> None:
    backend = stack.services["backend"]
    old_pid = backend.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert stack.wait_restarted("backend", old_pid), "the backend was not restarted"
    assert backend.pid != old_pid
    assert backend.restarts >= 1
    assert httpx.get(f"{backend.url}/health/ready").status_code == 200


def test_port_clash_names_the_service() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LaunchError, match=f"auth: cannot listen on 127.0.0.1:{port}"):
            Stack(StackConfig(ports={"auth": port})).start()


def test_missing_redis_is_a_clear_error() -> None:
    with pytest.raises(LaunchError, match=r"redis: no answer at redis://127\.0\.0\.1:1/0"):
        Stack(StackConfig(redis_url="redis://127.0.0.1:1/0", redis_wait=0.5)).start()
