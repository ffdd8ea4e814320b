"""The backend and its supervisor: routing, state machine, persistence, faults."""

from __future__ import annotations

import pytest

from apex.backend.agents import route
from apex.backend.state import AgentState, IllegalTransition, StateMachine
from apex.client import ApexClient, Endpoints, ask, connect, receive

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("content", "agents"),
    [
        ("what is my usage cost", ["data"]),
        ("please optimize latency", ["optimization"]),
        ("weekly report on spend", ["data", "reporting"]),
        ("hello", ["data"]),
    ],
)
def test_routing_by_intent(content: str, agents: list[str]) -> None:
    assert route(content) == agents


def test_state_machine_refuses_illegal_transitions() -> None:
    machine = StateMachine()
    with pytest.raises(IllegalTransition):
        machine.to(AgentState.COMPLETED)
    machine.to(AgentState.RUNNING)
    machine.to(AgentState.TIMED_OUT)
    assert machine.finished
    with pytest.raises(IllegalTransition):
        machine.to(AgentState.RUNNING)


async def test_a_failing_and_a_slow_sub_agent_do_not_stop_the_others(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user()
        async with await connect(endpoints, tokens.access) as ws:
            await receive(ws)
            frames = await ask(
                ws,
                "report my usage cost and optimize it",
                options={"faults": {"data": "fail", "optimization": "slow"}, "agent_timeout": 0.3},
            )
        errors = {
            f["payload"]["agent"]: f["payload"]["state"]
            for f in frames
            if f["type"] == "agent_error"
        }
        assert errors == {"data": "failed", "optimization": "timed_out"}
        final = frames[-1]
        assert final["type"] == "agent_completed"
        assert final["payload"]["agents"]["reporting"] == "completed"
        thread = final["payload"]["thread_id"]
        messages = await api.messages(tokens, thread)
    assert [m["role"] for m in messages] == ["user", "assistant"]


async def test_threads_are_private(endpoints: Endpoints) -> None:
    async with ApexClient(endpoints) as api:
        _, alice = await api.new_user("alice")
        _, bob = await api.new_user("bob")
        async with await connect(endpoints, alice.access) as ws:
            await receive(ws)
            thread = (await ask(ws, "usage"))[-1]["payload"]["thread_id"]
        resp = await api.http.get(
            f"{endpoints.backend}/api/threads/{thread}/messages", headers=bob.header
        )
    assert resp.status_code == 404
