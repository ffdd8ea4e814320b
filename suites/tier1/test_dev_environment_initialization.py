"""Dev environment initialization ($20K MRR): the launcher every developer starts the day with.

Services start in dependency order and report healthy and ready consistently, the
environment configures them, a killed service comes back by itself (at most so often), a
port clash, a bad setting or a missing Redis is a clear one-line error, and shutdown (or
the launcher's death) leaves no process or port behind. Nothing here can hang: every
launcher is read with a deadline and stopped, or killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
import redis

from apex.launcher import LaunchError, Stack, StackConfig
from apex.launcher.process import ServiceProcess
from apex.tls import tls
from suites.platform import budgets
from suites.tier1.launcher_helpers import (
    Launcher,
    alive,
    closed_port,
    port_free,
    port_of,
    run_launcher,
)

SERVICES = ("idp", "auth", "backend", "gateway")
CONTRACT = ("REDIS_URL", "APEX_AUTH_URL", "APEX_BACKEND_URL", "APEX_GATEWAY_URL", "APEX_IDP_URL")
READY_CHECKS: dict[str, dict[str, bool]] = {  # what each service's readiness rests on
    "idp": {"redis": True},
    "auth": {"redis": True},
    "backend": {"redis": True, "sqlite": True, "jobs_worker": True},
    "gateway": {"redis": True, "backend": True},
}


def _own_ports(urls: dict[str, str]) -> list[int]:  # a given REDIS_URL is not ours to free
    given = "REDIS_URL" in os.environ
    return [port_of(u) for k, u in urls.items() if k != "REDIS_URL" or not given]


def _assert_contract(urls: dict[str, str], ready: str) -> None:
    assert tuple(urls) == CONTRACT
    if "REDIS_URL" not in os.environ:
        assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", urls["REDIS_URL"])
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/ws", urls["APEX_GATEWAY_URL"])
    for key in ("APEX_AUTH_URL", "APEX_BACKEND_URL", "APEX_IDP_URL"):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", urls[key]), key
    assert len({port_of(u) for u in urls.values()}) == len(CONTRACT)
    took = re.fullmatch(r"ready in (\d+\.\d\d) s", ready)
    assert took is not None and float(took[1]) < budgets()["cold_start_s"]


def _lifetimes(pair: dict[str, Any], secret: str) -> tuple[int, int]:
    """(access, refresh) lifetimes, verified with `secret`: a wrong key raises."""
    access, refresh = (
        jwt.decode(pair[k], secret, algorithms=["HS256"], issuer="apex-auth")
        for k in ("access_token", "refresh_token")
    )
    return access["exp"] - access["iat"], refresh["exp"] - refresh["iat"]


def test_launcher_applies_the_environment_and_stops_cleanly() -> None:
    secret = "a-dev-signing-key-that-is-long-enough-for-hs256"
    env = {
        "APEX_DEMO_EMAIL": "dev@apex.test",
        "APEX_DEMO_PASSWORD": "a-long-dev-password",
        "APEX_ACCESS_TOKEN_TTL": "123",
        "APEX_REFRESH_TOKEN_TTL": "456",
        "APEX_JWT_SECRET": secret,  # the developer's key wins over a generated one
    }
    with Launcher(env) as launcher:
        urls, comments, ready = launcher.contract()
        _assert_contract(urls, ready)
        assert comments == []  # a password was given: no credentials file
        login = httpx.post(
            f"{urls['APEX_AUTH_URL']}/auth/login",
            timeout=5,
            verify=tls(),
            json={"email": "dev@apex.test", "password": "a-long-dev-password"},
        )
        assert login.status_code == 200 and login.json()["expires_in"] == 123
        assert _lifetimes(login.json(), secret) == (123, 456)
        assert launcher.stop(signal.SIGINT) == 0
    assert all(port_free(p) for p in _own_ports(urls))


def test_generated_demo_credentials_are_private_and_sigterm_cleans_up() -> None:
    prefix = "# demo user credentials are in "
    with Launcher({}, unset=("APEX_DEMO_EMAIL", "APEX_DEMO_PASSWORD")) as launcher:
        urls, comments, _ = launcher.contract()
        assert len(comments) == 1 and comments[0].startswith(prefix)
        path = Path(comments[0].removeprefix(prefix))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        creds = dict(ln.partition("=")[::2] for ln in path.read_text().splitlines())
        assert creds["APEX_DEMO_EMAIL"] == "demo@apex.local"
        assert creds["APEX_DEMO_PASSWORD"] not in "\n".join([*urls.values(), *comments])
        login = httpx.post(
            f"{urls['APEX_AUTH_URL']}/auth/login",
            timeout=5,
            verify=tls(),
            json={"email": creds["APEX_DEMO_EMAIL"], "password": creds["APEX_DEMO_PASSWORD"]},
        )
        assert login.status_code == 200
        assert launcher.stop(signal.SIGTERM) == 0
    assert not path.parent.exists()  # SIGTERM, like Ctrl-C, removes the working directory


def test_killing_the_launcher_outright_takes_every_child_down() -> None:
    with Launcher({"APEX_DEMO_PASSWORD": "a-long-dev-password"}) as launcher:
        urls, _, _ = launcher.contract()
        children = psutil.Process(launcher.proc.pid).children(recursive=True)
        launcher.proc.kill()  # SIGKILL: no handler runs, only the kernel can help
        launcher.proc.wait(timeout=5)
    try:
        deadline = time.monotonic() + 10
        while any(alive(c.pid) for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children) >= len(SERVICES)
        assert not [c.pid for c in children if alive(c.pid)], "orphans outlived the launcher"
        assert all(port_free(p) for p in _own_ports(urls))
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()


def test_port_clash_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_launcher({**os.environ, "APEX_BACKEND_PORT": str(port)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"apex.launcher: backend: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_a_bad_setting_is_a_one_line_error() -> None:
    result = run_launcher({**os.environ, "APEX_AUTH_PORT": "eighty"})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("apex.launcher: ") and "'eighty'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


NAMED = ("APEX_AUTH_URL", "APEX_BACKEND_URL", "APEX_IDP_URL", "APEX_GATEWAY_URL")


def test_check_reports_each_service_of_a_deployment(local_stack: Stack) -> None:
    ep = local_stack.endpoints()
    base = {k: v for k, v in os.environ.items() if k not in NAMED}
    gw = f"http://127.0.0.1:{local_stack.services['gateway'].port}"
    everything = dict(zip(NAMED, (ep.auth, ep.backend, ep.idp, ep.gateway), strict=True))
    ok = run_launcher({**base, **everything}, "--check")
    assert (ok.returncode, ok.stdout.splitlines()) == (
        0,
        [
            f"APEX_AUTH_URL={ep.auth} ready",
            f"APEX_BACKEND_URL={ep.backend} ready",
            f"APEX_IDP_URL={ep.idp} ready",
            f"APEX_GATEWAY_URL={gw} ready",
        ],
    )
    dead = f"http://127.0.0.1:{closed_port()}"
    partial = {"APEX_AUTH_URL": ep.auth, "APEX_BACKEND_URL": dead, "APEX_GATEWAY_URL": ep.gateway}
    bad = run_launcher({**base, **partial}, "--check")
    assert bad.returncode == 1
    assert f"APEX_BACKEND_URL={dead} unreachable (ConnectError)" in bad.stdout.splitlines()
    assert "APEX_IDP_URL=- not set" in bad.stdout.splitlines()


def test_a_service_that_cannot_start_is_named_with_its_log() -> None:
    stack = Stack(StackConfig(env={"APEX_ACCESS_TOKEN_TTL": "0"}))  # auth refuses it
    with pytest.raises(LaunchError, match="exited with code 1 while starting") as failed:
        stack.start()
    text = str(failed.value)
    assert failed.value.service in SERVICES
    assert f"--- last lines of the {failed.value.service} log ---" in text
    assert "APEX_ACCESS_TOKEN_TTL must be above 0, not 0" in text
    assert not any(alive(s.pid) for s in stack.services.values() if s.pid is not None)
    assert not stack.workdir.exists()


def _kill(svc: ServiceProcess) -> int:
    pid = svc.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while svc.pid == pid and svc.alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    return pid


def test_a_service_is_restarted_at_most_max_restarts_times() -> None:
    with Stack(StackConfig(max_restarts=1, monitor_interval=0.05)) as stack:
        idp = stack.services["idp"]
        first = _kill(idp)
        assert stack.wait_restarted("idp", first, timeout=10)
        second = _kill(idp)
        watch_until = time.monotonic() + 0.5  # ten monitor intervals
        while time.monotonic() < watch_until:
            assert idp.pid == second and not idp.alive(), "restarted beyond max_restarts"
            time.sleep(0.05)
        assert idp.restarts == 1


def _registered(redis_url: str) -> dict[tuple[str, int], str]:
    """(service, pid) -> the URL each instance advertises in discovery."""
    import json  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match="discovery:*"))
        records = [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []
    finally:
        client.close()
    return {(r["service"], int(r["pid"])): r["url"] for r in records}


def test_killed_service_is_detected_and_restarted(local_stack: Stack) -> None:
    gateway = local_stack.services["gateway"]
    url, restarts = gateway.url, gateway.restarts
    old = _kill(gateway)
    assert local_stack.wait_restarted("gateway", old), "the gateway was not restarted"
    assert gateway.restarts == restarts + 1
    assert gateway.pid is not None and gateway.pid != old
    with httpx.Client(verify=tls(), timeout=2) as http:  # the pre-kill address answers again
        assert http.get(f"{url}/health").json()["service"] == "gateway"

    deadline = time.monotonic() + 5  # the new process advertises itself within a heartbeat
    while _registered(local_stack.redis_url).get(("gateway", gateway.pid)) != url:
        assert time.monotonic() < deadline, "the restarted gateway never registered"
        time.sleep(0.05)


def test_every_service_advertises_the_address_the_launcher_bound(local_stack: Stack) -> None:
    records = _registered(local_stack.redis_url)
    for name in SERVICES:
        svc = local_stack.services[name]
        assert svc.pid is not None and records.get((name, svc.pid)) == svc.url, name
        # and it holds its own port only: one holding another's keeps it bound past its owner
        listening = psutil.Process(svc.pid).net_connections("inet")
        assert {c.laddr.port for c in listening if c.status == psutil.CONN_LISTEN} == {svc.port}


def test_health_and_readiness_agree_for_every_service(local_stack: Stack) -> None:
    with httpx.Client(verify=tls(), timeout=2) as http:
        for name in SERVICES:
            url = local_stack.services[name].url
            health, ready = http.get(f"{url}/health"), http.get(f"{url}/health/ready")
            assert (health.status_code, ready.status_code) == (200, 200), name
            body = health.json()
            assert (body["status"], body["service"]) == ("ok", name) and body["uptime_s"] > 0
            expected = {"status": "ready", "service": name, "checks": READY_CHECKS[name]}
            assert ready.json() == expected


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_readiness_is_a_fast_503_while_redis_stalls(local_stack: Stack) -> None:
    if local_stack.redis is None or local_stack.redis.proc is None:
        pytest.skip("needs the Redis this session launched")
    auth = local_stack.services["auth"].url
    with httpx.Client(verify=tls(), timeout=5) as http, _paused(local_stack.redis.proc.pid):
        started = time.perf_counter()
        ready = http.get(f"{auth}/health/ready")
        took = time.perf_counter() - started
        live = http.get(f"{auth}/health")
    assert ready.status_code == 503 and took < 1.0  # each check is cut off at 0.5 s
    assert ready.json() == {"status": "not_ready", "service": "auth", "checks": {"redis": False}}
    assert live.status_code == 200  # liveness never waits on a dependency


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (StackConfig(redis_url="redis://127.0.0.1:9/0", redis_wait=0.5), "redis: no answer at"),
        (None, "redis: APEX_REDIS_SERVER=/nonexistent/redis-server does not exist"),
    ],
)
def test_missing_redis_is_a_clear_error(
    config: StackConfig | None, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APEX_REDIS_SERVER", "/nonexistent/redis-server")
    monkeypatch.delenv("REDIS_URL", raising=False)
    stack = Stack(config or StackConfig())
    started = time.monotonic()
    with pytest.raises(LaunchError, match="^" + message) as failed:
        stack.start()
    took = time.monotonic() - started
    assert failed.value.service == "redis"
    assert took < 2.0  # redis_wait, not a default minute
    if config is not None:  # and all of it: a Redis slow to answer gets its time
        assert took >= config.redis_wait
    assert not stack.workdir.exists()


def test_shutdown_leaves_no_process_or_port_behind() -> None:
    stack = Stack(StackConfig())
    stack.start()
    try:
        pids = [s.pid for s in stack.services.values()]
        assert stack.redis is not None and stack.redis.proc is not None
        pids.append(stack.redis.proc.pid)
        ports = [s.port for s in stack.services.values()] + [stack.redis.port]
    finally:
        stack.stop()
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert all(port_free(p) for p in ports)
    assert not stack.workdir.exists()
