"""Error cascade prevention and recovery ($10K MRR): one failing part must not take the rest.

When the backend fails (5xx), stalls (the gateway's timeout) or disappears from discovery,
connected clients get an `error` frame instead of a hung request; two failures in a row open
the gateway's circuit breaker (then it fails fast, without calling the backend), a 4xx answer
does not count as a failure, and after the cooldown exactly one probe decides whether it
closes again; a probe the user cancels does not wedge it. A backend stream that cannot be
read still ends in a frame the client can act on. A stalled Redis turns into quick 503s and
honest readiness, not hangs. What reached the backend is counted by a stub backend (a real
server registered in discovery), not taken from the gateway's own report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, ask, connect, gateway_http, receive
from apex.launcher import Stack
from apex.tls import tls
from suites.platform import eventually, gateway_stats
from suites.tier2.frames import send
from suites.tier2.stub_backend import (
    Reply,
    StubBackend,
    completed,
    real_backend_unhealthy,
    stub_backend,
)

pytestmark = pytest.mark.anyio
COOLDOWN_MS = 1000  # APEX_BREAKER_COOLDOWN of suites/conftest.py; two failures open it
STARTED = json.dumps({"type": "agent_started", "payload": {"agent": "supervisor"}})


@contextlib.contextmanager
def _pause(pid: int) -> Iterator[None]:
    """SIGSTOP a process (a stall: alive, silent), always resumed afterwards."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _breaker(api: ApexClient) -> dict[str, Any]:
    return dict((await gateway_stats(api))["breaker"])


async def _ask(ws: ClientConnection, content: str = "usage please") -> tuple[float, dict[str, Any]]:
    """(seconds until the run's last frame, that frame)."""
    started = time.perf_counter()
    frames = await ask(ws, content, timeout=8)
    return time.perf_counter() - started, frames[-1]


def _outcome(frame: dict[str, Any]) -> str:
    return str(frame["payload"]["code"]) if frame["type"] == "error" else str(frame["type"])


async def _cooldown(frame: dict[str, Any]) -> None:
    """Wait as long as a `circuit_open` frame says."""
    assert frame["payload"]["code"] == "circuit_open", frame
    await asyncio.sleep(frame["payload"]["retry_after_ms"] / 1000 + 0.02)


async def _trip(api: ApexClient, ws: ClientConnection, stub: StubBackend) -> dict[str, Any]:
    """5xx, 4xx, 5xx, a stalled answer: only the last two in a row open the breaker."""
    stub.script.extend([Reply(500), Reply(404, body="no such agent"), Reply(503), Reply(held=True)])
    seen: dict[str, Any] = {}
    for step in ("5xx", "4xx", "5xx again"):
        seen[step] = _outcome((await _ask(ws))[1])
        seen[f"failures after {step}"] = (await _breaker(api))["failures"]
    seen["stall took"], last = await _ask(ws)
    seen["stall"] = _outcome(last)
    opened = await _breaker(api)
    seen["state"], seen["retry_after_s"] = opened["state"], opened["retry_after_s"]
    seen["open took"], refused = await _ask(ws)
    seen["refused"], seen["retry_after_ms"] = (
        _outcome(refused),
        refused["payload"]["retry_after_ms"],
    )
    seen["calls"] = len(stub.runs)
    await _cooldown(refused)
    return seen


async def _probe(
    api: ApexClient, probe: ClientConnection, other: ClientConnection, stub: StubBackend
) -> dict[str, Any]:
    """After the cooldown one call goes through (held by the stub); the rest fail fast."""
    stub.script.append(Reply(held=True, lines=completed().lines))
    stub.released.clear()
    running = asyncio.create_task(_ask(probe))
    seen: dict[str, Any] = {}
    try:
        await stub.wait_for_runs(5)
        _, refused = await _ask(other)
        seen["other"], seen["calls"] = _outcome(refused), len(stub.runs)
        seen["other retry_after_ms"] = refused["payload"]["retry_after_ms"]
        seen["state"] = (await _breaker(api))["state"]
    finally:
        stub.released.set()
        seen["probe"] = _outcome((await asyncio.wait_for(running, 8))[1])
    seen["after"] = _outcome((await _ask(other))[1])
    return {**seen, "breaker": await _breaker(api)}


TRIPPED = {
    "5xx": "backend_unavailable",
    "failures after 5xx": 1,
    "4xx": "backend_404",
    "failures after 4xx": 0,  # the backend answered: a 4xx is the caller's problem
    "5xx again": "backend_unavailable",
    "failures after 5xx again": 1,
    "stall": "backend_unavailable",
    "state": "open",
    "refused": "circuit_open",
    "calls": 4,  # the refused call never reached the backend
}
PROBED = {
    "other": "circuit_open",  # half open: one probe only
    "other retry_after_ms": 1,  # the cooldown is over: as soon as the probe is done
    "calls": 5,
    "state": "half_open",
    "probe": "agent_completed",
    "after": "agent_completed",
}


def _check_tripped(tripped: dict[str, Any]) -> None:
    timing = ("stall took", "open took", "retry_after_ms", "retry_after_s")
    assert {k: v for k, v in tripped.items() if k not in timing} == TRIPPED
    assert 1.2 < tripped["stall took"] < 4  # the gateway's timeout (1.5 s) answered
    assert tripped["open took"] < 0.5 and 200 < tripped["retry_after_ms"] <= COOLDOWN_MS
    opened_s = tripped["retry_after_s"]
    assert 0.2 < opened_s <= COOLDOWN_MS / 1000 and opened_s == round(opened_s, 3)


def _check_probed(probed: dict[str, Any]) -> None:
    assert {k: v for k, v in probed.items() if k != "breaker"} == PROBED
    breaker = probed["breaker"]
    assert (breaker["state"], breaker["failures"], breaker["retry_after_s"]) == ("closed", 0, 0)
    assert breaker["transitions"][-3:] == ["open", "half_open", "closed"]


async def test_5xx_and_stalls_open_the_breaker_4xx_do_not(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, stub_backend(local_stack, api) as stub:
        _, tokens = await api.new_user("cascade")
        async with (
            await connect(api.ep, tokens.access) as ws,
            await connect(api.ep, tokens.access) as tab,
        ):
            await receive(ws)
            await receive(tab)
            tripped = await _trip(api, ws, stub)
            probed = await _probe(api, ws, tab, stub)
        assert (await api.me(tokens))["user_id"]  # auth never noticed
    _check_tripped(tripped)
    _check_probed(probed)


async def _stop_a_held_run(
    api: ApexClient, ws: ClientConnection, stub: StubBackend, nth: int
) -> tuple[str, str, int]:
    """Start a run the stub holds, stop it: (the stop's error, breaker state, failures)."""
    await send(ws, "user_message", content="usage please")
    await stub.wait_for_runs(nth)
    await send(ws, "stop_agent")
    stopped = await receive(ws)
    assert stopped["type"] == "agent_error", stopped
    breaker = await _breaker(api)
    return stopped["payload"]["error"], breaker["state"], breaker["failures"]


async def test_a_cancelled_probe_does_not_wedge_the_breaker(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, stub_backend(local_stack, api) as stub:
        _, tokens = await api.new_user("cancelled-probe")
        stub.script.extend([Reply(held=True), Reply(500), Reply(500), Reply(held=True)])
        stub.released.clear()
        async with await connect(api.ep, tokens.access) as ws:
            await receive(ws)
            closed_stop = await _stop_a_held_run(api, ws, stub, 1)
            await _ask(ws)
            await _ask(ws)
            await _cooldown((await _ask(ws))[1])
            stopped = await _stop_a_held_run(api, ws, stub, 4)  # the probe
            _, rearmed = await _ask(ws)  # the failed probe starts a new cooldown
            await _cooldown(rearmed)
            _, recovered = await _ask(ws)
        breaker = await _breaker(api)
    assert closed_stop == ("stopped by the user", "closed", 0)  # a user's stop is no failure
    assert stopped == ("stopped by the user", "open", 3)  # a stopped probe: a failed one
    assert rearmed["payload"]["retry_after_ms"] > COOLDOWN_MS / 2, rearmed
    assert (_outcome(recovered), len(stub.runs)) == ("agent_completed", 5)
    assert breaker["state"] == "closed"


def _final(agent: str) -> str:
    return json.dumps({"type": "agent_completed", "payload": {"agent": agent}})


UNREADABLE = {
    "not JSON": ((STARTED, "this is not json"), "backend_invalid_stream"),
    "not an object": (("[1, 2]",), "backend_invalid_stream"),
    "blank lines only": (("", "   "), "backend_incomplete_stream"),
    "an empty body": ((), "backend_incomplete_stream"),
    "no final frame": ((STARTED,), "backend_incomplete_stream"),
    "sub-agents' final frames only": (
        (_final("reporting"), _final("triage")),
        "backend_incomplete_stream",
    ),
    "blank lines between frames": (("", STARTED, " ", _final("supervisor")), "agent_completed"),
}


async def test_an_unreadable_backend_stream_ends_in_an_error_frame(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, stub_backend(local_stack, api) as stub:
        _, tokens = await api.new_user("unreadable")
        stub.script.extend(Reply(lines=lines) for lines, _ in UNREADABLE.values())
        async with await connect(api.ep, tokens.access) as ws:
            await receive(ws)
            outcomes = {name: await ask(ws, "usage please", timeout=5) for name in UNREADABLE}
            _, after = await _ask(ws)  # the connection and the breaker are fine
        breaker = await _breaker(api)
    codes = {name: _outcome(frames[-1]) for name, frames in outcomes.items()}
    assert codes == {name: expected for name, (_, expected) in UNREADABLE.items()}
    assert [f["type"] for f in outcomes["not JSON"]] == ["agent_started", "error"]
    assert (_outcome(after), breaker["state"], breaker["failures"]) == (
        "agent_completed",
        "closed",
        0,
    )


async def test_the_relay_forwards_the_run_as_sent(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api, stub_backend(local_stack, api) as stub:
        _, tokens = await api.new_user("forwarded")
        stub.script.extend([Reply(422, body="x" * 300), Reply(499, body="gone")])
        async with await connect(api.ep, tokens.access) as ws:
            await receive(ws)
            options = {"stream_chunk": 3, "repeat": 2}
            frames = await ask(
                ws, "hello there", timeout=5, thread_id="t-1", options=options, extra=1
            )
            _, gone = await _ask(ws)
        breaker = await _breaker(api)
    run = stub.runs[0]
    assert (run["method"], run["path"]) == ("POST", "/api/agent/run")
    assert run["headers"]["authorization"] == f"Bearer {tokens.access}"
    assert run["body"] == {"content": "hello there", "thread_id": "t-1", "options": options}
    error = frames[-1]["payload"]
    assert (error["code"], error["message"]) == ("backend_422", "x" * 200)
    assert (_outcome(gone), gone["payload"]["message"]) == ("backend_499", "gone")
    assert (breaker["state"], breaker["failures"]) == ("closed", 0)  # 4xx: no failures


async def test_no_backend_in_discovery_is_an_error_not_a_hang(local_stack: Stack) -> None:
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("nobody-home")
        async with await connect(api.ep, tokens.access) as ws:
            await receive(ws)
            await real_backend_unhealthy(api, True)
            try:
                await asyncio.sleep(0.3)  # the gateway's view of discovery expires
                took, refused = await _ask(ws)
                failures = (await _breaker(api))["failures"]
            finally:
                await real_backend_unhealthy(api, False)
            await asyncio.sleep(0.3)
            _, answered = await _ask(ws)
    assert (_outcome(refused), failures) == ("backend_unavailable", 1) and took < 1
    assert "ConnectError" in refused["payload"]["message"]
    assert _outcome(answered) == "agent_completed"


async def _gateway_ready(http: httpx.AsyncClient, url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return (await http.get(f"{url}/health/ready")).status_code == 200
    return False


async def test_a_stalled_backend_is_contained_and_the_connection_recovers(
    local_stack: Stack,
) -> None:
    backend = local_stack.services["backend"]
    assert backend.pid is not None
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("stalled")
        async with await connect(api.ep, tokens.access) as ws:
            await receive(ws)
            with _pause(backend.pid):
                took, stalled = await _ask(ws)
                me = await api.me(tokens)
                auth_ready = await api.http.get(f"{api.ep.auth}/health/ready", timeout=1)
            url = gateway_http(api.ep)
            await eventually(lambda: _gateway_ready(api.http, url), 10, interval=0.05)
            _, answered = await _ask(ws)  # the same connection, no new login
    assert _outcome(stalled) == "backend_unavailable" and 1.2 < took < 4
    assert me["user_id"] and auth_ready.status_code == 200  # auth is unaffected
    assert _outcome(answered) == "agent_completed"


async def test_redis_stall_gives_fast_503s_and_honest_readiness(local_stack: Stack) -> None:
    endpoints = local_stack.endpoints()
    assert local_stack.redis is not None and local_stack.redis.proc is not None
    async with httpx.AsyncClient(verify=tls(), timeout=10) as http:
        with _pause(local_stack.redis.proc.pid):
            started = time.perf_counter()
            live = await http.get(f"{endpoints.auth}/health")
            ready = await http.get(f"{endpoints.auth}/health/ready")
            probe_time = time.perf_counter() - started
            started = time.perf_counter()
            login = await http.post(
                f"{endpoints.auth}/auth/login",
                json={"email": "x@example.test", "password": "irrelevant"},
            )
            login_time = time.perf_counter() - started
        assert live.status_code == 200 and ready.status_code == 503
        assert ready.json()["checks"] == {"redis": False}
        assert probe_time < 1.5
        assert login.status_code == 503 and login.json()["retry_after_s"] == 1
        # the services' Redis timeout answers (twice: the throttle, then the user store)
        assert login_time < 2 * float(local_stack.env["APEX_REDIS_TIMEOUT"]) + 1.5, login_time
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("after-stall")
        assert (await api.me(tokens))["user_id"]
