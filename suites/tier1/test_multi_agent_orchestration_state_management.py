"""Multi-agent orchestration with state management ($22K MRR): the product's core answer path.

The supervisor routes by intent, delegates to sub-agents in parallel, moves every agent
through legal states that anyone can observe, aggregates their results, and survives a
failing or stalled sub-agent.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from apex.backend.state import LEGAL, AgentState
from apex.client import ApexClient, Endpoints, Tokens, ask, connect, receive

pytestmark = pytest.mark.anyio


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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("How can I reduce my latency?", {"optimization"}),
        ("Show my token usage", {"data"}),
        (
            "Give me a summary report of my spend and how to optimize it",
            {"data", "reporting", "optimization"},
        ),
    ],
)
async def test_supervisor_routes_by_intent(
    endpoints: Endpoints, content: str, expected: set[str]
) -> None:
    _, frames = await _conversation(endpoints, content)
    thinking = next(f for f in frames if f["type"] == "agent_thinking")
    assert set(thinking["payload"]["agents"]) == expected
    assert _agents_seen(frames) == expected


async def test_delegation_is_parallel_and_results_are_aggregated(endpoints: Endpoints) -> None:
    _, frames = await _conversation(endpoints, "usage report, and optimize my spend")
    report = next(f["payload"] for f in frames if f["type"] == "final_report")
    sections = report["sections"]
    assert {s["agent"] for s in sections} == {"data", "reporting", "optimization"}
    serial = sum(s["duration_ms"] for s in sections)
    parallel = max(s["duration_ms"] for s in sections)
    wall = frames[-1]["payload"]["duration_ms"]
    assert parallel < 0.6 * serial  # each section ran alongside the others
    assert wall < serial
    for section in sections:
        assert section["summary"] in report["text"]


async def test_state_transitions_are_observable_and_legal(endpoints: Endpoints) -> None:
    tokens, frames = await _conversation(endpoints, "optimize my usage")
    run_id = frames[-1]["payload"]["run_id"]
    async with ApexClient(endpoints) as api:
        runs = (
            await api.call("GET", f"{endpoints.backend}/api/runs/{run_id}", headers=tokens.header)
        )["runs"]
    assert {r["agent"] for r in runs} == {"supervisor", "data", "optimization"}
    for run in runs:
        states = [AgentState(s) for s in run["transitions"]]
        assert states[0] is AgentState.PENDING and states[-1] is AgentState.COMPLETED
        assert all(b in LEGAL[a] for a, b in itertools.pairwise(states))
        assert run["state"] == "completed" and run["finished_at"] >= run["started_at"]


@pytest.mark.usefixtures("faults")
async def test_failing_sub_agent_gives_agent_error_and_others_finish(endpoints: Endpoints) -> None:
    _, frames = await _conversation(
        endpoints, "usage report and optimize it", options={"faults": {"data": "fail"}}
    )
    errors = [f["payload"] for f in frames if f["type"] == "agent_error"]
    assert [(e["agent"], e["state"]) for e in errors] == [("data", "failed")]
    assert "injected fault" in errors[0]["error"]
    final = frames[-1]["payload"]
    assert frames[-1]["type"] == "agent_completed"
    assert final["agents"] == {
        "data": "failed",
        "reporting": "completed",
        "optimization": "completed",
    }


@pytest.mark.usefixtures("faults")
async def test_slow_sub_agent_hits_its_timeout(endpoints: Endpoints) -> None:
    _, frames = await _conversation(
        endpoints,
        "optimize my usage",
        options={"faults": {"optimization": "slow"}, "agent_timeout": 0.4},
    )
    error = next(f["payload"] for f in frames if f["type"] == "agent_error")
    assert (error["agent"], error["state"]) == ("optimization", "timed_out")
    assert frames[-1]["payload"]["agents"]["data"] == "completed"
    assert frames[-1]["payload"]["duration_ms"] < 2000


@pytest.mark.usefixtures("faults")
async def test_every_sub_agent_failing_ends_in_agent_error(endpoints: Endpoints) -> None:
    _, frames = await _conversation(
        endpoints, "optimize", options={"faults": {"optimization": "fail"}}
    )
    assert frames[-1]["type"] == "agent_error"
    assert frames[-1]["payload"]["agent"] == "supervisor"
    assert frames[-1]["payload"]["state"] == "failed"
