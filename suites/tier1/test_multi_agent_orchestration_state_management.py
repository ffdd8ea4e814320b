"""Multi-agent orchestration with state management ($22K MRR): the product's core answer path.

The supervisor routes by intent, delegates to sub-agents in parallel, moves every agent
through legal states that anyone can observe, aggregates their results, and survives a
failing or stalled sub-agent. The expectations are written here, not read from the code.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from typing import Any

import pytest

from apex.client import ApexClient, Endpoints, Tokens, ask, connect, receive
from apex.launcher import Stack

pytestmark = pytest.mark.anyio

COMPLETED, FAILED, TIMED_OUT = (
    ["pending", "running", end] for end in ("completed", "failed", "timed_out")
)
DATA = "[data] monthly AI spend is $47.40; the largest share goes to gpt-large"
OPTIMIZATION = "[optimization] route 30% of gpt-large calls to gpt-small to save $8.64"
REPORTING = "[reporting] report covering 1 conversation(s) of this account"
ROUTES = [
    ("How can I reduce my latency?", ["optimization"]),
    ("Show my token usage", ["data"]),
    (
        "Give me a summary report of my spend and how to optimize it",
        ["data", "optimization", "reporting"],
    ),
    ("Hello there", ["data"]),  # nothing matches: data answers
    ("HOW DO I MAKE IT CHEAPER?", ["optimization"]),  # keywords match in any case
]


async def _conversation(
    endpoints: Endpoints, content: str, **extra: Any
) -> tuple[Tokens, list[dict[str, Any]]]:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("orchestration")
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        return tokens, await ask(ws, content, **extra)


def _agents_seen(frames: list[dict[str, Any]]) -> set[str]:
    return {f["payload"]["agent"] for f in frames} - {"supervisor"}


async def _runs(endpoints: Endpoints, tokens: Tokens, run_id: str) -> list[dict[str, Any]]:
    async with ApexClient(endpoints) as api:
        url = f"{endpoints.backend}/api/runs/{run_id}"
        return list((await api.call("GET", url, headers=tokens.header))["runs"])


def _payload(frames: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(f["payload"] for f in frames if f["type"] == kind)


@pytest.mark.parametrize(("content", "expected"), ROUTES)
async def test_supervisor_routes_by_intent(
    endpoints: Endpoints, content: str, expected: list[str]
) -> None:
    _, frames = await _conversation(endpoints, content)
    thinking = _payload(frames, "agent_thinking")
    assert thinking["agents"] == expected
    assert thinking["thought"] == f"[triage] intent: {', '.join(expected)}"
    assert _agents_seen(frames) == set(expected)


def _assert_ran_alongside(frames: list[dict[str, Any]]) -> None:
    """Concurrency from the order of events: every sub-agent started before any finished."""
    kinds = [(f["type"], f["payload"]["agent"]) for f in frames]
    last_start = max(
        i for i, (k, a) in enumerate(kinds) if k == "agent_started" and a != "supervisor"
    )
    assert last_start < min(i for i, (k, _) in enumerate(kinds) if k == "tool_completed")


async def test_delegation_is_parallel_and_results_are_aggregated(endpoints: Endpoints) -> None:
    _, frames = await _conversation(endpoints, "usage report, and optimize my spend")
    report = _payload(frames, "final_report")
    assert [s["agent"] for s in report["sections"]] == ["data", "optimization", "reporting"]
    assert report["text"] == "\n".join((DATA, OPTIMIZATION, REPORTING))
    assert report["failures"] == []
    _assert_ran_alongside(frames)
    serial = sum(s["duration_ms"] for s in report["sections"])
    assert frames[-1]["payload"]["duration_ms"] < serial
    streamed = [
        f for f in frames if f["type"] == "partial_result" and f["payload"]["agent"] == "supervisor"
    ]
    assert streamed == []  # the report is streamed in chunks only when asked


async def test_state_transitions_are_observable_and_legal(endpoints: Endpoints) -> None:
    tokens, frames = await _conversation(endpoints, "optimize my usage")
    supervisor = frames[-1]["payload"]["run_id"]
    runs = await _runs(endpoints, tokens, supervisor)
    assert {r["agent"]: r["transitions"] for r in runs} == {
        "supervisor": COMPLETED,
        "data": COMPLETED,
        "optimization": COMPLETED,
    }
    seen = {f["payload"]["agent"]: f["payload"]["run_id"] for f in frames}
    assert {r["agent"]: r["run_id"] for r in runs} == seen
    parents = {
        f["payload"]["parent_run_id"] for f in frames if f["payload"]["agent"] != "supervisor"
    }
    assert parents == {supervisor}
    for run in runs:
        assert (run["state"], run["error"]) == ("completed", None)
        assert run["started_at"] is not None and run["finished_at"] >= run["started_at"]


@pytest.mark.usefixtures("faults")
async def test_failing_sub_agent_gives_agent_error_and_others_finish(endpoints: Endpoints) -> None:
    message = "data agent failed (injected fault)"
    tokens, frames = await _conversation(
        endpoints, "usage report and optimize it", options={"faults": {"data": "fail"}}
    )
    errors = [f["payload"] for f in frames if f["type"] == "agent_error"]
    assert [(e["agent"], e["state"], e["error"]) for e in errors] == [("data", "failed", message)]
    assert [f["type"] for f in frames if f["payload"]["agent"] == "data"] == [
        "agent_started",
        "tool_executing",
        "agent_error",
    ]
    report = _payload(frames, "final_report")
    assert report["failures"] == [{"agent": "data", "state": "failed", "error": message}]
    assert report["text"] == "\n".join((OPTIMIZATION, REPORTING))
    assert "data" not in report["results"]
    assert frames[-1]["type"] == "agent_completed"
    assert frames[-1]["payload"]["agents"] == {
        "data": "failed",
        "reporting": "completed",
        "optimization": "completed",
    }
    runs = {r["agent"]: r for r in await _runs(endpoints, tokens, frames[-1]["payload"]["run_id"])}
    assert (runs["data"]["transitions"], runs["data"]["error"]) == (FAILED, message)


@pytest.mark.usefixtures("faults")
async def test_slow_sub_agent_hits_its_timeout(endpoints: Endpoints) -> None:
    tokens, frames = await _conversation(
        endpoints,
        "optimize my usage",
        options={"faults": {"optimization": "slow"}, "agent_timeout": 0.4},
    )
    error = _payload(frames, "agent_error")
    assert (error["agent"], error["state"], error["error"]) == (
        "optimization",
        "timed_out",
        "optimization timed out after 0.4 s",
    )
    final = frames[-1]["payload"]
    assert frames[-1]["type"] == "agent_completed"
    assert final["agents"] == {"data": "completed", "optimization": "timed_out"}
    assert 400 <= final["duration_ms"] < 1000  # the 0.4 s timeout, not the stall
    runs = {r["agent"]: r["transitions"] for r in await _runs(endpoints, tokens, final["run_id"])}
    assert runs["optimization"] == TIMED_OUT


@pytest.mark.usefixtures("faults")
async def test_every_sub_agent_failing_ends_in_agent_error(endpoints: Endpoints) -> None:
    tokens, frames = await _conversation(
        endpoints, "optimize", options={"faults": {"optimization": "fail"}}
    )
    final = frames[-1]["payload"]
    assert frames[-1]["type"] == "agent_error"
    assert (final["agent"], final["state"], final["error"]) == (
        "supervisor",
        "failed",
        "every sub-agent failed",
    )
    assert final["agents"] == {"optimization": "failed"}
    report = _payload(frames, "final_report")
    assert (report["text"], report["sections"]) == ("No agent could answer this request.", [])
    runs = {r["agent"]: r for r in await _runs(endpoints, tokens, final["run_id"])}
    assert (runs["supervisor"]["transitions"], runs["supervisor"]["error"]) == (
        FAILED,
        "every sub-agent failed",
    )


async def test_report_streams_in_chunks_when_asked(endpoints: Endpoints) -> None:
    _, frames = await _conversation(
        endpoints, "optimize my usage", options={"stream_chunk": 7, "repeat": 2}
    )
    text = _payload(frames, "final_report")["text"]
    chunks = [
        (i, f["payload"])
        for i, f in enumerate(frames)
        if f["type"] == "partial_result" and f["payload"]["agent"] == "supervisor"
    ]
    assert [c["index"] for _, c in chunks] == list(range(math.ceil(2 * len(text) / 7)))
    assert "".join(c["content"] for _, c in chunks) == text * 2
    assert all(len(c["content"]) == 7 for _, c in chunks[:-1])
    assert chunks[-1][0] < [f["type"] for f in frames].index("final_report")


OWN_USAGE = [("gpt-large", 700_000, 3601), ("gpt-small", 90_000, 333), ("embedder", 5_000, 7)]


async def test_answers_are_computed_from_the_accounts_own_usage_to_the_cent(
    endpoints: Endpoints, local_stack: Stack
) -> None:
    """An account whose usage is already recorded is not seeded: its answer is its own
    figures, rounded to the cent (36.01 + 3.33 + 0.07; 30% of the gpt-large spend at 80%
    less: 8.6424 -> 8.64)."""
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("own-usage")
        user_id = (await api.me(tokens))["user_id"]
    with contextlib.closing(sqlite3.connect(local_stack.workdir / "backend.db")) as db, db:
        db.executemany(
            "INSERT INTO usage VALUES (?, ?, ?, ?, date('now'))",
            [(user_id, model, used, cents) for model, used, cents in OWN_USAGE],
        )
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        frames = await ask(ws, "usage report, and optimize my spend")
    report = _payload(frames, "final_report")
    assert "$39.41" in report["text"] and "$8.64" in report["text"]
    results = report["results"]
    assert results["data"]["total_cost_usd"] == 39.41
    assert results["optimization"]["monthly_saving_usd"] == 8.64
    assert [r["cost_usd"] for r in results["data"]["rows"]] == [36.01, 3.33, 0.07]
