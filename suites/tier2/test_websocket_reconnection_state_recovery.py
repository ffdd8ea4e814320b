"""WebSocket reconnection with state recovery ($8K MRR): a dropped connection loses nothing.

Frames that matter carry a `seq`; a client that reconnects and sends `resume` with its
`resume_id` and the last `seq` it saw gets everything after it, once, in order, including
what was produced while it was away, and then the live stream; the resumed connection owns
the run (busy, stop). Only the same session may resume; a resume needs the frames to still
be kept (the last 1000, fewer once acknowledged) and cannot claim frames never sent. A slow
reader holds its stream exactly 64 frames ahead. Fifty clients reconnecting at once all
recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from apex.client import ApexClient, Endpoints, Tokens, connect, gateway_http, receive
from apex.launcher import Stack
from suites.platform import eventually, extra_instance, gateway_stats
from suites.tier2.frames import Sockets, drop, resume, send, until_final

pytestmark = pytest.mark.anyio
BUFFER = 1000  # frames a stream keeps for a reconnect
HIGH_WATER = 64  # frames a stream may run ahead of a reader that stopped reading
URLSAFE_96_BITS = re.compile(r"[A-Za-z0-9_-]{16}")
# a run that lasts (one sub-agent times out after 1 s), then streams its report
SLOW_RUN = {"faults": {"optimization": "slow"}, "agent_timeout": 1.0, "stream_chunk": 1}
LONG_RUN = {"stream_chunk": 1, "repeat": 60}  # > 5000 frames
CONTENT = "usage report and how to optimize"


@pytest.fixture
async def sockets(endpoints: Endpoints) -> AsyncIterator[Sockets]:
    opened = Sockets(endpoints)
    try:
        yield opened
    finally:
        await opened.close_all()


async def _start(ws: ClientConnection, options: dict[str, Any], read: int) -> list[dict[str, Any]]:
    """Start a run and read its first `read` frames."""
    await send(ws, "user_message", content=CONTENT, options=options)
    frames = [await receive(ws) for _ in range(read)]
    assert all(f["type"] != "error" for f in frames), frames  # fail fast, not on a timeout
    return frames


def _seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


def _resumed(resume_id: str, last_seq: int, replaying: int) -> dict[str, Any]:
    payload = {"resume_id": resume_id, "last_seq": last_seq, "replaying": replaying}
    return {"type": "resumed", "payload": payload}


async def test_reconnect_resumes_in_order_exactly_once_and_the_run_goes_on(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("resume")
    ws, first = await sockets.open(tokens)
    before = await _start(ws, SLOW_RUN, 3)
    drop(ws)  # the run goes on while the client is away
    started = time.perf_counter()
    ws2, second = await sockets.open(tokens)
    resumed = await resume(ws2, first["resume_id"], before[-1]["seq"])
    took = time.perf_counter() - started
    after = await until_final(ws2)
    assert URLSAFE_96_BITS.fullmatch(first["resume_id"]) and first["last_seq"] == 0
    assert second["resume_id"] != first["resume_id"]  # every connection starts its own
    replaying = resumed["payload"]["replaying"]
    assert resumed == _resumed(first["resume_id"], 3, replaying) and took < 2
    assert _seqs(before + after) == list(range(1, len(before) + len(after) + 1))
    live = after[replaying:]  # produced after the resume: the stream went on
    timed_out = [f for f in live if f["type"] == "agent_error"]
    assert [f["payload"]["agent"] for f in timed_out] == ["optimization"]
    assert live[-1]["type"] == "agent_completed"
    chunks = [f["payload"]["index"] for f in after if "index" in f["payload"]]
    assert chunks == list(range(len(chunks))) and len(chunks) > 100


async def test_updates_made_while_away_are_delivered_on_resume(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("away")
        ws, first = await sockets.open(tokens)
        drop(ws)
        await api.update_session(tokens, {"cart": 3})
        await api.update_session(tokens, {"cart": 4})

        async def gateway_has_both() -> bool:
            view = await api.session_view(gateway_http(endpoints), tokens.session_id)
            return view is not None and view["version"] == 3

        await eventually(gateway_has_both, 5)
    ws2, _ = await sockets.open(tokens)
    assert first["last_seq"] == 0
    await send(ws2, "resume", resume_id=first["resume_id"])  # no last_seq: all that is kept
    resumed = await receive(ws2)
    replayed = [await receive(ws2), await receive(ws2)]
    assert first["session_version"] == 1 and resumed["payload"]["replaying"] == 2
    assert [(f["type"], f["seq"], f["payload"]) for f in replayed] == [
        ("session_updated", 1, {"version": 2, "data": {"user_id": first["user_id"], "cart": 3}}),
        ("session_updated", 2, {"version": 3, "data": {"user_id": first["user_id"], "cart": 4}}),
    ]


async def test_only_the_same_session_may_resume(endpoints: Endpoints, sockets: Sockets) -> None:
    async with ApexClient(endpoints) as api:
        email, alice = await api.new_user("alice")
        other_tab = await api.login(email, "correct horse battery")  # same user, new session
        _, mallory = await api.new_user("mallory")
    ws, first = await sockets.open(alice)
    stream = first["resume_id"]
    drop(ws)
    attempts = {
        "another session of the same user": (other_tab, stream, 0),
        "another user": (mallory, stream, 0),
        "an unknown stream": (alice, "no-such-stream", 0),
        "a last_seq that is not a number": (alice, stream, "0"),
        "the same session": (alice, stream, 0),
    }
    answers = {}
    for who, (tokens, resume_id, last_seq) in attempts.items():
        answer = await resume((await sockets.open(tokens))[0], resume_id, last_seq)
        answers[who] = answer["payload"].get("code", answer["type"])
    assert answers == {**dict.fromkeys(attempts, "resume_unknown"), "the same session": "resumed"}


async def _first_kept(ws: ClientConnection, resume_id: str) -> int:
    """The oldest seq the stream still keeps, once it has dropped some (`resume_gap` says)."""
    while True:
        answer = await resume(ws, resume_id, -1)  # always too old: never attaches
        assert answer["payload"]["code"] == "resume_gap", answer
        if answer["payload"]["first_available"] > 1:
            return int(answer["payload"]["first_available"])
        await asyncio.sleep(0.1)  # well within the connection's frame rate


async def _resume_at_the_oldest(
    ws: ClientConnection, resume_id: str, first: int
) -> tuple[int, dict[str, Any]]:
    """Resume from just before the oldest frame kept (it moves while the run goes on)."""
    for _ in range(50):
        answer = await resume(ws, resume_id, first - 1)
        if answer["type"] == "resumed":
            return first, answer
        first = answer["payload"]["first_available"]
        await asyncio.sleep(0.1)
    raise AssertionError("the stream never stopped moving")


async def test_resume_boundaries_and_retention(endpoints: Endpoints, sockets: Sockets) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("retention")
    ws, first = await sockets.open(tokens)
    await _start(ws, LONG_RUN, 1)
    drop(ws)  # the long run fills the buffer and more while nobody reads
    probe, _ = await sockets.open(tokens)
    kept = await _first_kept(probe, first["resume_id"])
    one_past = await resume(probe, first["resume_id"], kept - 2)  # one frame too old
    oldest, resumed = await _resume_at_the_oldest(probe, first["resume_id"], kept)
    frames = await until_final(probe, 10)
    last = frames[-1]["seq"]
    at_head, ahead = await _resume_twice(sockets, tokens, first["resume_id"], last)
    assert one_past["payload"]["code"] == "resume_gap"
    assert one_past["payload"]["first_available"] >= kept
    assert resumed["payload"]["replaying"] == BUFFER  # exactly the last 1000 were kept
    assert _seqs(frames) == list(range(oldest, last + 1)) and last > 5000
    assert frames[-1]["type"] == "agent_completed"
    assert (at_head["type"], at_head["payload"]["replaying"]) == ("resumed", 0)
    assert (ahead["type"], ahead["payload"]["code"]) == ("error", "resume_ahead")
    assert ahead["payload"]["last_seq"] == last


async def _resume_twice(
    sockets: Sockets, tokens: Tokens, resume_id: str, last: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resume exactly at the stream's end, and one past it (refused)."""
    refused, accepted = (await sockets.open(tokens))[0], (await sockets.open(tokens))[0]
    return await resume(accepted, resume_id, last), await resume(refused, resume_id, last + 1)


async def test_acked_frames_are_released_and_a_resume_at_the_head_replays_nothing(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("acked")
        ws, first = await sockets.open(tokens)
        await api.update_session(tokens, {"step": 1})
        await api.update_session(tokens, {"step": 2})
        assert _seqs([await receive(ws), await receive(ws)]) == [1, 2]
        await send(ws, "ack", seq=2)
        await send(ws, "ping", after="ack")  # answered after the ack was handled
        assert (await receive(ws))["type"] == "pong"
        drop(ws)
        ws2, _ = await sockets.open(tokens)
        too_old = await resume(ws2, first["resume_id"], 1)
        at_head = await resume(ws2, first["resume_id"], 2)
        await api.update_session(tokens, {"step": 3})
        live = await receive(ws2)
    assert (too_old["payload"]["code"], too_old["payload"]["first_available"]) == ("resume_gap", 3)
    assert (at_head["type"], at_head["payload"]["replaying"]) == ("resumed", 0)
    assert (live["type"], live["seq"], live["payload"]["data"]["step"]) == ("session_updated", 3, 3)


async def test_resuming_your_own_stream_keeps_it_resumable(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("own-stream")
        ws, first = await sockets.open(tokens)
        again = await resume(ws, first["resume_id"], 0)  # e.g. a client that re-syncs
        drop(ws)
        ws2, _ = await sockets.open(tokens)
        later = await resume(ws2, first["resume_id"], 0)
        await api.update_session(tokens, {"kept": True})
        live = await receive(ws2)
    assert (again["type"], again["payload"]["replaying"]) == ("resumed", 0)
    assert later["type"] == "resumed", later
    assert (live["type"], live["seq"]) == ("session_updated", 1)


async def _until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """Frames until one of `kind` (the live stream may come first)."""
    while (frame := await receive(ws, 5))["type"] != kind:
        pass
    return frame


async def test_the_resumed_connection_owns_the_run(endpoints: Endpoints, sockets: Sockets) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("owner")
    ws, first = await sockets.open(tokens)
    before = await _start(ws, SLOW_RUN, 2)
    drop(ws)
    ws2, _ = await sockets.open(tokens)
    await resume(ws2, first["resume_id"], before[-1]["seq"])
    await send(ws2, "user_message", content="another question")
    busy = await _until(ws2, "error")
    async with ApexClient(endpoints) as api:  # a push on the stream is not the run's end
        await api.update_session(tokens, {"mid_run": True})
    await _until(ws2, "session_updated")
    await send(ws2, "stop_agent")
    stopped = await _until(ws2, "agent_error")
    while stopped["payload"]["agent"] != "supervisor":
        stopped = await _until(ws2, "agent_error")
    await send(ws2, "stop_agent")
    no_run = await _until(ws2, "error")
    await send(ws2, "user_message", content="usage please")
    after = await until_final(ws2)
    assert busy["payload"]["code"] == "busy" and no_run["payload"]["code"] == "no_run"
    assert stopped["payload"]["error"] == "stopped by the user"
    assert after[-1]["type"] == "agent_completed"


async def test_a_takeover_outlives_the_connection_it_replaced(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    """A second connection resumes a stream whose first connection is still open (a
    half-dead tab); when that one finally closes, the stream stays with the second."""
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("takeover")
    old, first = await sockets.open(tokens)
    before = await _start(old, SLOW_RUN, 2)
    new, _ = await sockets.open(tokens)
    resumed = await resume(new, first["resume_id"], before[-1]["seq"])
    await old.close()
    after = await until_final(new, 5)
    assert resumed["type"] == "resumed"
    assert _seqs(before + after) == list(range(1, len(before) + len(after) + 1))
    assert after[-1]["type"] == "agent_completed"


SWITCH_RUN = {"stream_chunk": 1, "repeat": 3}  # hundreds of frames, fewer than BUFFER


async def _finished(api: ApexClient, tokens: Tokens, run_id: str) -> None:
    """Until the backend has finished the run (its stream to the gateway is all sent)."""
    url = f"{api.ep.backend}/api/runs/{run_id}"

    async def done() -> bool:
        runs = (await api.call("GET", url, headers=tokens.header))["runs"]
        return all(r["state"] == "completed" for r in runs)

    await eventually(done, 10)


async def test_a_connection_can_switch_streams_and_leave_the_first_resumable(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    """A stream left by a switch is unattached: its run is not held back by the switcher's
    reader (it buffers on, far past HIGH_WATER) and is resumed complete."""
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("switch")
        running, first = await sockets.open(tokens)
        before = await _start(running, SWITCH_RUN, 2)
        drop(running)
        idle, second = await sockets.open(tokens)
        drop(idle)
        switcher, _ = await sockets.open(tokens)
        await resume(switcher, first["resume_id"], before[-1]["seq"])
        await send(switcher, "resume", resume_id=second["resume_id"], last_seq=0)
        await _until(switcher, "resumed")  # now on the idle stream; the run's goes on alone
        await _finished(api, tokens, before[0]["payload"]["run_id"])  # far past HIGH_WATER
    ws, _ = await sockets.open(tokens)
    await resume(ws, first["resume_id"], before[-1]["seq"])
    after = await until_final(ws, 5)
    assert _seqs(before + after) == list(range(1, len(before) + len(after) + 1))
    assert after[-1]["type"] == "agent_completed"


MALFORMED = {
    "not JSON": ("{oops", "invalid_json"),
    "not an object": ("[1, 2]", "invalid_frame"),
    "a type that is not a string": ('{"type": 5}', "invalid_frame"),
    "no type": ('{"payload": {}}', "invalid_frame"),
    "a payload that is not an object": ('{"type": "ping", "payload": [1]}', "invalid_frame"),
    "an unknown type": ('{"type": "teleport"}', "unknown_type"),
    "no payload": ('{"type": "ping"}', "pong"),
}


async def test_malformed_frames_are_answered_and_take_no_seq(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("malformed")
        ws, _ = await sockets.open(tokens)
        answers = {}
        for name, (text, _) in MALFORMED.items():
            await ws.send(text)
            answers[name] = await receive(ws)
        local_only = await _alone(api)
        await api.update_session(tokens, {"after": "errors"})
        update = await receive(ws)
        streamed = await gateway_stats(api)
    codes = {name: a["payload"].get("code", a["type"]) for name, a in answers.items()}
    assert codes == {name: code for name, (_, code) in MALFORMED.items()}
    assert answers["no payload"]["payload"] == {}
    assert all("seq" not in a for a in answers.values())  # replies to this connection only
    assert (update["type"], update["seq"]) == ("session_updated", 1)
    assert (local_only["max_backlog"], streamed["max_backlog"]) == (0, 1)


async def test_a_session_ended_elsewhere_closes_the_stream(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("ended")
        ws, _ = await sockets.open(tokens)
        await api.logout(tokens)
        ended = await receive(ws)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws, 5)
    assert (ended["type"], ended["payload"]["code"]) == ("error", "session_ended")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008  # policy violation


async def test_a_session_store_outage_at_the_handshake_says_try_again_later(
    local_stack: Stack,
) -> None:
    redis_proc = local_stack.redis.proc if local_stack.redis else None
    assert redis_proc is not None
    async with ApexClient(local_stack.endpoints()) as api:
        _, tokens = await api.new_user("store-down")
    with _stalled(redis_proc.pid):
        async with await connect(local_stack.endpoints(), tokens.access) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await receive(ws, 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "session store unavailable")


@contextlib.contextmanager
def _stalled(pid: int) -> Iterator[None]:
    """SIGSTOP a process (alive, silent), always resumed afterwards."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_slow_reader_holds_its_stream_exactly_high_water_ahead(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        _, tokens = await api.new_user("stalled-reader")
        ws, _ = await sockets.open(tokens)
        await send(ws, "user_message", content="usage report", options=LONG_RUN)

        async def held() -> bool:
            return bool((await gateway_stats(api))["max_backlog"] >= HIGH_WATER)

        await eventually(held, 10, interval=0.02)  # nothing read: the buffers fill up
        await asyncio.sleep(0.3)  # it stays held there
        stats = await gateway_stats(api)
        frames = await until_final(ws, 10)
    assert stats["max_backlog"] == HIGH_WATER, stats
    assert _seqs(frames) == list(range(1, len(frames) + 1)) and len(frames) > 5000


async def _alone(api: ApexClient) -> dict[str, Any]:
    """The gateway's stats once this test's connection is the only one left open."""

    async def alone() -> bool:
        return bool((await gateway_stats(api))["connections"] == 1)

    await eventually(alone, 5)
    return await gateway_stats(api)


async def _client(api: ApexClient, sockets: Sockets, few: asyncio.Semaphore) -> tuple[Tokens, str]:
    async with few:  # a few sign-ups at a time: password hashing is slow on purpose
        _, tokens = await api.new_user("crowd")
    ws, first = await sockets.open(tokens)
    drop(ws)
    return tokens, first["resume_id"]


async def test_fifty_clients_reconnecting_at_once_all_recover(
    endpoints: Endpoints, sockets: Sockets
) -> None:
    async with ApexClient(endpoints) as api:
        few = asyncio.Semaphore(4)
        clients = await asyncio.gather(*(_client(api, sockets, few) for _ in range(50)))
        await asyncio.gather(*(api.update_session(t, {"while_away": True}) for t, _ in clients))
    started = time.perf_counter()
    results = await asyncio.gather(*(_recover(sockets, t, r) for t, r in clients))
    elapsed = time.perf_counter() - started
    assert results == [("resumed", "session_updated", True)] * 50
    assert elapsed < 5


async def _recover(sockets: Sockets, tokens: Tokens, resume_id: str) -> tuple[str, str, bool]:
    ws, _ = await sockets.open(tokens)
    resumed = await resume(ws, resume_id, 0)
    frame = await receive(ws)
    return resumed["type"], frame["type"], frame["payload"]["data"].get("while_away", False)


RESUME_WINDOW = 0.4  # APEX_RESUME_WINDOW of a gateway of this test's own (120 s by default)


async def test_a_stream_nobody_resumes_within_the_window_is_forgotten(
    local_stack: Stack, tmp_path: Path
) -> None:
    window = str(RESUME_WINDOW)
    with extra_instance(local_stack, "gateway", tmp_path, APEX_RESUME_WINDOW=window) as gateway:
        endpoints = replace(local_stack.endpoints(), gateway=f"ws://127.0.0.1:{gateway.port}/ws")
        async with ApexClient(endpoints) as api:
            await eventually(lambda: _answers_ready(api, gateway.url), 10)
            _, tokens = await api.new_user("window")
        sockets = Sockets(endpoints)
        try:
            ws, first = await sockets.open(tokens)
            drop(ws)
            ws, _ = await sockets.open(tokens)  # back within the window: resumed
            assert (await resume(ws, first["resume_id"], 0))["type"] == "resumed"
            drop(ws)  # away again: the window starts over
            await asyncio.sleep(RESUME_WINDOW * 1.25 + 0.2)  # past it, and past one check
            ws, _ = await sockets.open(tokens)
            late = await resume(ws, first["resume_id"], 0)
        finally:
            await sockets.close_all()
    assert (late["type"], late["payload"]["code"]) == ("error", "resume_unknown")


async def _answers_ready(api: ApexClient, url: str) -> bool:
    with contextlib.suppress(Exception):
        return (await api.http.get(f"{url}/health/ready")).status_code == 200
    return False
