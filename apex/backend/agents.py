"""The supervisor agent and its deterministic sub-agents.

No external LLM exists here: `Provider` is the seam where a real one plugs in, and
`DeterministicProvider` answers from templates after a fixed latency that stands in for
the network round trip of a hosted model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from apex.backend.store import Store

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

INTENTS: dict[str, tuple[str, ...]] = {
    "data": ("data", "usage", "spend", "cost", "tokens", "metrics", "bill"),
    "optimization": ("optimi", "reduce", "save", "cheaper", "latency", "faster", "cut", "lower"),
    "reporting": ("report", "summary", "summar", "overview"),
}


class Provider(Protocol):
    async def complete(self, agent: str, prompt: str) -> str: ...


@dataclass
class DeterministicProvider:
    """Template answers; `latency` models a hosted model's round trip."""

    latency: float = float(os.environ.get("APEX_PROVIDER_LATENCY", "0.1"))

    async def complete(self, agent: str, prompt: str) -> str:
        await asyncio.sleep(self.latency)
        return f"[{agent}] {prompt}"


@dataclass
class Context:
    user_id: str
    content: str
    store: Store
    provider: Provider
    faults: dict[str, str] = field(default_factory=dict)


def route(content: str) -> list[str]:
    """Sub-agents for a message, by intent keywords; data when nothing else matches."""
    text = content.lower()
    chosen = [name for name, words in INTENTS.items() if any(w in text for w in words)]
    return chosen or ["data"]


async def triage(ctx: Context) -> dict[str, Any]:
    agents = route(ctx.content)
    summary = await ctx.provider.complete("triage", f"intent: {', '.join(agents)}")
    return {"tool": "classify_intent", "agents": agents, "summary": summary}


async def data_agent(ctx: Context) -> dict[str, Any]:
    rows = await asyncio.to_thread(ctx.store.usage, ctx.user_id)
    total = round(sum(r["cost_usd"] for r in rows), 2)
    top = rows[0]["model"] if rows else "none"
    text = await ctx.provider.complete(
        "data", f"monthly AI spend is ${total:,.2f}; the largest share goes to {top}"
    )
    return {"tool": "query_usage", "rows": rows, "total_cost_usd": total, "summary": text}


async def optimization_agent(ctx: Context) -> dict[str, Any]:
    rows = await asyncio.to_thread(ctx.store.usage, ctx.user_id)
    large = next((r for r in rows if r["model"] == "gpt-large"), None)
    saving = round(0.3 * large["cost_usd"] * 0.8, 2) if large else 0.0
    text = await ctx.provider.complete(
        "optimization", f"route 30% of gpt-large calls to gpt-small to save ${saving:,.2f}"
    )
    return {"tool": "suggest_optimizations", "monthly_saving_usd": saving, "summary": text}


async def reporting_agent(ctx: Context) -> dict[str, Any]:
    threads = await asyncio.to_thread(ctx.store.threads, ctx.user_id)
    text = await ctx.provider.complete(
        "reporting", f"report covering {len(threads)} conversation(s) of this account"
    )
    return {"tool": "compose_report", "threads": len(threads), "summary": text}


SUB_AGENTS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "data": data_agent,
    "optimization": optimization_agent,
    "reporting": reporting_agent,
}
