"""Cold start to agent response ($25K MRR): from nothing running to a user's first answer.

A new user's first minute: the platform starts, they sign up, sign in, open the live
connection, ask a question, and get a meaningful, persisted answer streamed in order,
within budget; a follow-up continues the same thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from typing import Any

import httpx
import psutil
import pytest

from apex.client import ApexClient, ApexError, Endpoints, Tokens, ask, connect, receive
from apex.launcher import Stack
from apex.tls import tls
from suites.platform import budgets

pytestmark = pytest.mark.anyio

SUB_AGENT_ORDER = [
    "agent_started",
    "tool_executing",
    "tool_completed",
    "partial_result",
    "agent_completed",
]
QUESTION = "What did my AI usage cost this month, and how do I cut it?"
FOLLOW_UP = "And how much would I save?"  # optimization only
PASSWORD = "correct horse battery"
SAMPLE_ROWS = [  # the usage every new account starts with, dearest first (written here)
    {"model": "gpt-large", "tokens": 1_200_000, "cost_usd": 36.0},
    {"model": "gpt-small", "tokens": 4_800_000, "cost_usd": 9.6},
    {"model": "embedder", "tokens": 9_000_000, "cost_usd": 1.8},
]
TOTAL_USD = 47.4  # 36.00 + 9.60 + 1.80
SAVING_USD = 8.64  # 30% of the gpt-large spend moved to a model 80% cheaper
COMPLETED_RUN = ["pending", "running", "completed"]


def _cold_start() -> tuple[Stack, float]:
    started = time.perf_counter()
    stack = Stack()
    stack.start()
    return stack, time.perf_counter() - started


async def test_cold_start_to_first_agent_response(record_property: Any) -> None:
    stack, cold = _cold_start()
    try:
        record_property("cold_start_s", round(cold, 3))
        assert cold < budgets()["cold_start_s"]
        _assert_started(stack)
        await _first_conversation(stack, record_property)
        async with ApexClient(stack.endpoints()) as api:  # the seeded demo user is an admin
            admin = await api.login(*stack.demo)
            assert (await api.me(admin))["roles"] == ["user", "admin"]
    finally:
        stack.stop()


def _assert_started(stack: Stack) -> None:
    """Once `start()` returns, every service answers ready at once (no retry), and each
    holds its own port only: a service holding another's would keep it bound past its
    owner's death."""
    with httpx.Client(verify=tls(), timeout=2) as http:
        for name, svc in stack.services.items():
            assert http.get(f"{svc.url}/health/ready").status_code == 200, name
    for name, svc in stack.services.items():
        assert svc.pid is not None
        listening = {
            c.laddr.port
            for c in psutil.Process(svc.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {svc.port}, name


async def _sign_up(api: ApexClient) -> tuple[str, str, Tokens]:
    """A brand-new account on the brand-new platform: (user_id, email, tokens)."""
    email = f"First.User-{time.monotonic_ns()}@Example.Test"
    resp = await api.http.post(
        f"{api.ep.auth}/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert resp.status_code == 201, resp.text
    user_id = resp.json()["user_id"]
    assert resp.json()["email"] == email.lower()
    tokens = await api.login(email.upper(), PASSWORD)  # addresses are case-insensitive
    me = await api.me(tokens)
    assert me == {"user_id": user_id, "email": email.lower(), "roles": ["user"]}
    return user_id, email.lower(), tokens


async def _first_conversation(stack: Stack, record_property: Any) -> None:
    endpoints = stack.endpoints()
    async with ApexClient(endpoints) as api:
        user_id, email, tokens = await _sign_up(api)
        async with await connect(endpoints, tokens.access) as ws:
            hello = await receive(ws)
            assert hello["type"] == "connection_established"
            assert hello["payload"]["user_id"] == user_id
            assert hello["payload"]["session_id"] == tokens.session_id
            started = time.perf_counter()
            frames = await ask(ws, QUESTION)
            elapsed = time.perf_counter() - started
            thread_id = frames[-1]["payload"]["thread_id"]
            follow_up = await ask(ws, FOLLOW_UP, thread_id=thread_id)
        record_property("agent_response_s", round(elapsed, 3))
        assert elapsed < budgets()["agent_response_s"]
        _assert_stream_in_order(frames)
        _assert_meaningful(frames)
        await _assert_one_thread(api, tokens, thread_id, frames, follow_up)
        await _assert_runs_reported(api, tokens, frames)
    _assert_persisted_in_sqlite(stack, thread_id, user_id)
    _assert_user_stored(stack, user_id, email)


def _assert_stream_in_order(frames: list[dict[str, Any]]) -> None:
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["agent_started", "agent_thinking"]
    assert kinds[-2:] == ["final_report", "agent_completed"]
    assert frames[-1]["payload"]["agent"] == "supervisor"
    # every relayed frame is on the resumable stream, numbered from 1 on a new connection
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    agents = frames[1]["payload"]["agents"]
    assert agents == ["data", "optimization"]
    for agent in agents:
        own = [f["type"] for f in frames if f["payload"].get("agent") == agent]
        assert own == SUB_AGENT_ORDER, f"{agent} stream out of order: {own}"


def _final_report(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return next(f["payload"] for f in frames if f["type"] == "final_report")


def _assert_meaningful(frames: list[dict[str, Any]]) -> None:
    report = _final_report(frames)
    assert report["failures"] == []
    assert report["results"]["data"]["rows"] == SAMPLE_ROWS
    assert report["results"]["data"]["total_cost_usd"] == TOTAL_USD
    assert report["results"]["optimization"]["monthly_saving_usd"] == SAVING_USD
    assert f"${TOTAL_USD:,.2f}" in report["text"] and f"${SAVING_USD:,.2f}" in report["text"]


async def _assert_one_thread(
    api: ApexClient,
    tokens: Tokens,
    thread_id: str,
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
) -> None:
    """The follow-up continued the thread: the relay passed thread_id on, the store kept it."""
    assert second[-1]["payload"]["thread_id"] == thread_id
    assert second[0]["seq"] == first[-1]["seq"] + 1
    # the sample usage is seeded once per account, not once per question
    assert _final_report(second)["results"]["optimization"]["monthly_saving_usd"] == SAVING_USD
    messages = await api.messages(tokens, thread_id)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", QUESTION),
        ("assistant", _final_report(first)["text"]),
        ("user", FOLLOW_UP),
        ("assistant", _final_report(second)["text"]),
    ]
    listed = await api.call("GET", f"{api.ep.backend}/api/threads", headers=tokens.header)
    assert [(t["id"], t["title"]) for t in listed["threads"]] == [(thread_id, QUESTION)]


async def _assert_runs_reported(
    api: ApexClient, tokens: Tokens, frames: list[dict[str, Any]]
) -> None:
    """The runs API gives the user the run tree the frames named, each run completed."""
    supervisor = frames[-1]["payload"]["run_id"]
    url = f"{api.ep.backend}/api/runs/{supervisor}"
    runs = (await api.call("GET", url, headers=tokens.header))["runs"]
    named = {f["payload"]["agent"]: f["payload"]["run_id"] for f in frames}
    assert {r["agent"]: r["run_id"] for r in runs} == named
    assert all(r["transitions"] == COMPLETED_RUN for r in runs), runs


def _assert_persisted_in_sqlite(stack: Stack, thread_id: str, user_id: str) -> None:
    with contextlib.closing(sqlite3.connect(stack.workdir / "backend.db")) as db:
        owner = db.execute("SELECT user_id FROM threads WHERE id = ?", (thread_id,)).fetchall()
        rows = db.execute(
            "SELECT r.id, r.agent, t.state FROM transitions t JOIN agent_runs r"
            " ON r.id = t.run_id WHERE r.thread_id = ? ORDER BY t.id",
            (thread_id,),
        ).fetchall()
        times = db.execute(
            "SELECT started_at, finished_at FROM agent_runs WHERE thread_id = ?", (thread_id,)
        ).fetchall()
    history: dict[str, tuple[str, list[str]]] = {}
    for run_id, agent, state in rows:
        history.setdefault(run_id, (agent, []))[1].append(state)
    assert owner == [(user_id,)]
    agents = ("supervisor", "data", "optimization", "supervisor", "optimization")
    assert sorted(history.values()) == sorted((a, COMPLETED_RUN) for a in agents)
    assert all(s is not None and f is not None and f >= s for s, f in times)


def _assert_user_stored(stack: Stack, user_id: str, email: str) -> None:
    with contextlib.closing(sqlite3.connect(stack.workdir / "auth.db")) as db:
        row = db.execute("SELECT email, hash, roles FROM users WHERE id = ?", (user_id,)).fetchone()
    assert (row[0], row[2]) == (email, "user")
    assert row[1].startswith("$argon2id$") and PASSWORD not in row[1]


async def test_sign_up_rules(endpoints: Endpoints) -> None:
    stamp = time.monotonic_ns()
    refused = [
        ("no-at-sign.example.test", PASSWORD),
        ("two@@example.test", PASSWORD),
        ("a space@example.test", PASSWORD),
        ("no-dot@example", PASSWORD),
        (f"short-{stamp}@example.test", "7-chars"),  # one below the minimum
    ]
    async with ApexClient(endpoints) as api:
        for email, password in refused:
            with pytest.raises(ApexError) as bad:
                await api.register(email, password)
            assert bad.value.status == 422, email
        email = f"Edge-{stamp}@Example.Test"
        created = await api.register(email, "8-chars!")  # exactly the minimum
        with pytest.raises(ApexError) as taken:
            await api.register(email.lower(), PASSWORD)  # the same address, other case
        assert taken.value.status == 409
        await _assert_sign_in_outcomes(api, email, created["user_id"])


async def _assert_sign_in_outcomes(api: ApexClient, email: str, user_id: str) -> None:
    tokens = await api.login(email.swapcase(), "8-chars!")
    assert (await api.me(tokens))["user_id"] == user_id
    url = f"{api.ep.auth}/auth/login"
    wrong = await api.http.post(url, json={"email": email, "password": "8-chars?"})
    unknown = await api.http.post(url, json={"email": f"x{email}", "password": "8-chars!"})
    assert wrong.status_code == unknown.status_code == 401  # indistinguishable from outside
    assert wrong.json() == unknown.json() == {"error": "invalid email or password"}


async def _ask_as(
    endpoints: Endpoints, tokens: Tokens, content: str, **extra: Any
) -> list[dict[str, Any]]:
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        return await ask(ws, content, **extra)


async def test_sample_usage_is_seeded_once_per_account(endpoints: Endpoints) -> None:
    """Data and optimization read a new account's usage at once: it is seeded once."""
    async with ApexClient(endpoints) as api:
        users = [await api.new_user("seed") for _ in range(5)]
    answers = await asyncio.gather(*(_ask_as(endpoints, t, QUESTION) for _, t in users))
    totals = [_final_report(a)["results"]["data"]["total_cost_usd"] for a in answers]
    assert totals == [TOTAL_USD] * 5


async def test_a_thread_belongs_to_its_owner(endpoints: Endpoints) -> None:
    long_question = "Show my usage" + ", and in more detail" * 6  # over the 80-char title
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice")
        _, bob = await api.new_user("bob")
        first = (await _ask_as(endpoints, alice, "Show my token usage"))[-1]["payload"]
        other = await _ask_as(endpoints, bob, long_question, thread_id=first["thread_id"])
        bob_thread = other[-1]["payload"]["thread_id"]
        assert bob_thread != first["thread_id"]  # another user's thread id starts a new one
        assert len(await api.messages(alice, first["thread_id"])) == 2  # alice's untouched
        listed = await api.call("GET", f"{endpoints.backend}/api/threads", headers=bob.header)
        assert [(t["id"], t["title"]) for t in listed["threads"]] == [
            (bob_thread, long_question[:80])
        ]
        run = await api.http.get(
            f"{endpoints.backend}/api/runs/{first['run_id']}", headers=bob.header
        )
    assert run.status_code == 404
