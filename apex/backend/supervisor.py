"""The supervisor: triage, then the chosen sub-agents in parallel, each with a timeout.

Every agent run moves through the state machine and is recorded in SQLite; every step
is emitted as a WebSocket-ready event. A failing or slow sub-agent gives `agent_error`
for itself and leaves the others running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from apex.backend.agents import SUB_AGENTS, Context, Emit, Provider, triage
from apex.backend.state import AgentState, StateMachine
from apex.backend.store import Store

SUPERVISOR = "supervisor"


@dataclass
class SubResult:
    agent: str
    state: AgentState
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    duration_ms: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Request:
    user_id: str
    content: str
    thread_id: str | None = None
    faults: dict[str, str] = field(default_factory=dict)
    agent_timeout: float = 2.0
    stream_chunk: int = 0  # > 0: stream the report in chunks of this many characters
    repeat: int = 1


class Tracked:
    """An agent run: its state machine, mirrored into the store."""

    def __init__(self, store: Store, thread_id: str, agent: str, parent: str | None) -> None:
        self.store, self.agent = store, agent
        self.run_id = str(uuid.uuid4())
        self.machine = StateMachine()
        store.record_run(self.run_id, thread_id, agent, parent)

    async def to(self, state: AgentState, error: str | None = None) -> None:
        self.machine.to(state)
        await asyncio.to_thread(self.store.record_state, self.run_id, state, error)


@dataclass
class _Job:
    """One user request being handled: what every sub-agent of it shares."""

    req: Request
    ctx: Context
    emit: Emit
    thread_id: str
    parent: Tracked

    @property
    def timeout(self) -> float:
        return self.req.agent_timeout


class Supervisor:
    def __init__(self, store: Store, provider: Provider) -> None:
        self.store = store
        self.provider = provider

    async def handle(self, req: Request, emit: Emit) -> dict[str, Any]:
        started = time.monotonic()
        thread_id = await asyncio.to_thread(
            self.store.thread_for, req.user_id, req.thread_id, req.content
        )
        await asyncio.to_thread(self.store.add_message, thread_id, "user", req.content)
        run = Tracked(self.store, thread_id, SUPERVISOR, None)
        await run.to(AgentState.RUNNING)
        base = {"agent": SUPERVISOR, "run_id": run.run_id, "thread_id": thread_id}
        await emit("agent_started", {**base, "state": AgentState.RUNNING})
        ctx = Context(
            user_id=req.user_id,
            content=req.content,
            store=self.store,
            provider=self.provider,
            faults=req.faults,
        )
        plan = await triage(ctx)
        await emit("agent_thinking", {**base, "thought": plan["summary"], "agents": plan["agents"]})
        job = _Job(req=req, ctx=ctx, emit=emit, thread_id=thread_id, parent=run)
        subs = await asyncio.gather(*(self._sub(job, name) for name in plan["agents"]))
        return await self._finish(job, base, list(subs), started)

    async def _finish(
        self, job: _Job, base: dict[str, Any], subs: list[SubResult], started: float
    ) -> dict[str, Any]:
        report = aggregate(subs)
        if job.req.stream_chunk:
            await _stream_text(job, base, report["text"] * job.req.repeat)
        await job.emit("final_report", {**base, **report})
        await asyncio.to_thread(self.store.add_message, job.thread_id, "assistant", report["text"])
        ok = any(s.state is AgentState.COMPLETED for s in subs)
        error = None if ok else "every sub-agent failed"
        await job.parent.to(AgentState.COMPLETED if ok else AgentState.FAILED, error)
        final = {
            **base,
            "state": job.parent.machine.state,
            "duration_ms": _ms(started),
            "agents": {s.agent: s.state for s in subs},
        }
        await job.emit(
            "agent_completed" if ok else "agent_error", final if ok else {**final, "error": error}
        )
        return final

    async def _sub(self, job: _Job, name: str) -> SubResult:
        run = Tracked(self.store, job.thread_id, name, job.parent.run_id)
        base = {"agent": name, "run_id": run.run_id, "parent_run_id": job.parent.run_id}
        await run.to(AgentState.RUNNING)
        started = time.monotonic()
        await job.emit("agent_started", {**base, "state": AgentState.RUNNING})
        await job.emit("tool_executing", {**base, "tool": _tool(name)})
        try:
            result = await asyncio.wait_for(self._work(name, job), job.timeout)
        except TimeoutError:
            message = f"{name} timed out after {job.timeout:g} s"
            return await self._failed(job, run, AgentState.TIMED_OUT, message, started)
        except Exception as exc:
            return await self._failed(job, run, AgentState.FAILED, str(exc), started)
        await job.emit("tool_completed", {**base, "tool": result["tool"], "result": result})
        await job.emit("partial_result", {**base, "content": result["summary"]})
        await run.to(AgentState.COMPLETED)
        await job.emit("agent_completed", {**base, "state": AgentState.COMPLETED})
        return SubResult(
            agent=name, state=AgentState.COMPLETED, result=result, duration_ms=_ms(started)
        )

    async def _failed(
        self, job: _Job, run: Tracked, state: AgentState, message: str, started: float
    ) -> SubResult:
        await run.to(state, message)
        await job.emit(
            "agent_error",
            {
                "agent": run.agent,
                "run_id": run.run_id,
                "parent_run_id": job.parent.run_id,
                "state": state,
                "error": message,
            },
        )
        return SubResult(agent=run.agent, state=state, error=message, duration_ms=_ms(started))

    async def _work(self, name: str, job: _Job) -> dict[str, Any]:
        fault = job.ctx.faults.get(name)
        if fault == "fail":
            raise RuntimeError(f"{name} agent failed (injected fault)")
        if fault == "slow":
            await asyncio.sleep(job.timeout * 4)
        return await SUB_AGENTS[name](job.ctx)


async def _stream_text(job: _Job, base: dict[str, Any], text: str) -> None:
    """The answer as a model streams it: chunk by chunk, as partial results."""
    size = job.req.stream_chunk
    for index, start in enumerate(range(0, len(text), size)):
        await job.emit(
            "partial_result", {**base, "index": index, "content": text[start : start + size]}
        )


def _tool(name: str) -> str:
    return {
        "data": "query_usage",
        "optimization": "suggest_optimizations",
        "reporting": "compose_report",
    }.get(name, name)


def _ms(started: float) -> float:
    return round(1000 * (time.monotonic() - started), 1)


def aggregate(subs: list[SubResult]) -> dict[str, Any]:
    """One report from every sub-agent that completed; failures are named, not hidden."""
    sections = [
        {"agent": s.agent, "summary": s.result["summary"], "duration_ms": s.duration_ms}
        for s in subs
        if s.state is AgentState.COMPLETED
    ]
    failures = [
        {"agent": s.agent, "state": s.state, "error": s.error}
        for s in subs
        if s.state is not AgentState.COMPLETED
    ]
    text = "\n".join(s["summary"] for s in sections) or "No agent could answer this request."
    return {
        "text": text,
        "sections": sections,
        "failures": failures,
        "results": {s.agent: s.result for s in subs if s.result},
    }
