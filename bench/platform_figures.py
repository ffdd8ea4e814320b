"""The platform's figures against the seed report's budgets: cold start, agent reply,
session propagation, and the whole integration level."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from apex.client import ApexClient, ask, connect, receive
from apex.launcher import Stack, StackConfig
from bench.measure import REPO, Figure, runner_argv, side_by_side, timed


def cold_start(reps: int) -> Figure:
    """To every service ready: forked from the preloaded fork server, against exec'ing
    each service (the first version's way), alternated in one run."""

    def once(preload: bool) -> float:
        started = time.perf_counter()
        with Stack(StackConfig(preload=preload)):
            return time.perf_counter() - started

    forked, execed = side_by_side(lambda: once(True), lambda: once(False), reps)
    return Figure(
        name="launcher cold start to all services healthy",
        value=forked.median,
        baseline=execed.median,
        unit="s",
        target="< 0.75 s (first version: 1.2-1.7 s, exec per service)",
        met=forked.median < 0.75,
        detail=f"min {forked.minimum:.3f} vs {execed.minimum:.3f} s; baseline: no fork server",
    )


async def _replies(stack: Stack, count: int) -> list[float]:
    endpoints = stack.endpoints()
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("bench")
    times = []
    async with await connect(endpoints, tokens.access) as ws:
        await receive(ws)
        for _ in range(count):
            started = time.perf_counter()
            frames = await ask(ws, "what does my usage cost and how do I optimize it")
            assert frames[-1]["type"] == "agent_completed"
            times.append(time.perf_counter() - started)
    return times


async def _propagation(stack: Stack, count: int) -> list[float]:
    endpoints = stack.endpoints()
    urls = [
        endpoints.auth,
        endpoints.backend,
        endpoints.gateway.replace("ws://", "http://").removesuffix("/ws"),
    ]
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("bench")
        out = []
        for n in range(count):
            started = time.perf_counter()
            version = (await api.update_session(tokens, {"n": n}))["version"]
            while not all(
                (v or {}).get("version") == version
                for v in [await api.session_view(u, tokens.session_id) for u in urls]
            ):
                await asyncio.sleep(0.001)
            out.append(time.perf_counter() - started)
    return out


def platform(replies: int, updates: int) -> list[Figure]:
    with Stack() as stack:
        reply = asyncio.run(_replies(stack, replies))
        prop = sorted(asyncio.run(_propagation(stack, updates)))
        chain = sorted(asyncio.run(_invalidations(stack, updates)))
    return [_reply_figure(reply), _propagation_figure(prop), _invalidation_figure(chain)]


async def _invalidations(stack: Stack, count: int) -> list[float]:
    """Seconds from a price write to every service's acknowledged invalidation."""
    async with ApexClient(stack.endpoints()) as api:
        admin = await api.login(*stack.demo)
        url = f"{stack.endpoints().backend}/api/catalog/bench-model"
        acks = [
            await api.call("PUT", url, json={"price": float(n)}, headers=admin.header)
            for n in range(count)
        ]
    return [a["propagation_ms"] / 1000 for a in acks]


def _invalidation_figure(chain: list[float]) -> Figure:
    p50 = statistics.median(chain)
    p99 = p99_of(chain)
    return Figure(
        name="cache invalidation seen by every service (p99)",
        value=p99,
        baseline=p50,
        unit="s",
        target="< 50 ms p50 and < 100 ms p99",
        met=p50 < 0.05 and p99 < 0.1,
        detail=f"p50 {1000 * p50:.1f} ms (the baseline column), {len(chain)} writes",
    )


def p99_of(values: list[float]) -> float:
    """The 99th percentile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def _reply_figure(reply: list[float]) -> Figure:
    median = statistics.median(reply)
    return Figure(
        name="user message to agent_completed over WebSocket",
        value=median,
        baseline=30.0,
        unit="s",
        target="< 1 s (seed budget 30 s)",
        met=median < 1.0,
        detail=f"min {min(reply):.3f} s over {len(reply)}",
    )


def _propagation_figure(prop: list[float]) -> Figure:
    p99 = p99_of(prop)
    return Figure(
        name="session update propagation to all services (p99)",
        value=p99,
        baseline=5.0,
        unit="s",
        target="< 100 ms p99 (seed budget 5 s)",
        met=p99 < 0.1,
        detail=f"p50 {1000 * statistics.median(prop):.1f} ms, "
        f"{len(prop)} updates, until every service agrees",
    )


def integration_level() -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "run.json"
        # the suites need their pytest plugins (anyio): the user's own environment
        argv = runner_argv(
            "--level", "integration", "--json", str(report), "--no-history", "--no-record-durations"
        )
        wall = timed(argv, REPO, env=dict(os.environ))
        data = json.loads(report.read_text())
    own = sum(t["duration_s"] for e in data["tests"] for t in e["tests"])
    failed = [e["id"] for e in data["tests"] if e["status"] not in ("passed", "flaky")]
    return Figure(
        name="whole --level integration, stack start included",
        value=wall,
        baseline=own,
        unit="s",
        target="< 20 s wall",
        met=wall < 20 and data["exit_code"] == 0,
        detail=f"exit {data['exit_code']}{' (' + ', '.join(failed) + ')' if failed else ''}; "
        "the baseline is the suites' own test time",
    )
