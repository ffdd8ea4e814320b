"""The dev launcher: the printed contract, health, auto-restart, clean shutdown, errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def test_services_die_with_a_launcher_killed_outright() -> None:
    """SIGKILL leaves the launcher no time to stop anything: the services go by themselves."""
    with subprocess.Popen(
        [sys.executable, "-m", "apex.launcher"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        lines = _read_until_ready(proc)
        children = _descendants(proc.pid)
        assert len(children) >= 6  # redis, the fork server and the four services
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in children if _running(pid)], lines


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found = []
    for task in tasks.iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    found = _children(pid)
    for child in list(found):
        found += _descendants(child)
    return found


def test_services_are_forked_from_one_preloaded_server(stack: Stack) -> None:
    """One interpreter imports the services; each service is a fork of it, in a session
    of its own (so a signal to one service's group reaches no other)."""
    assert stack.forkserver is not None and stack.forkserver.alive()
    server = stack.forkserver.proc.pid
    for name, svc in stack.services.items():
        assert svc.pid is not None and svc.pid in _children(server), name
        assert os.getsid(svc.pid) == svc.pid, name


def test_a_service_is_restarted_afresh_when_the_fork_server_is_gone() -> None:
    with Stack(StackConfig(env={"APEX_FAULT_INJECTION": "1"})) as stack:
        assert stack.forkserver is not None
        gateway = stack.services["gateway"]
        old = gateway.pid
        assert old is not None
        stack.forkserver.proc.kill()  # its children follow it (PR_SET_PDEATHSIG)
        assert stack.wait_restarted("gateway", old), "the gateway was not restarted"
        assert gateway.pid not in _children(stack.forkserver.proc.pid)
        assert httpx.get(f"{gateway.url}/health/ready").status_code == 200


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
