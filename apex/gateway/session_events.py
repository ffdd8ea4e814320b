"""What the gateway does when the session store announces a change: an update goes to
every stream of that session (as `session_updated`, with a seq: it survives a
reconnect); a deleted session ends its connections (`session_ended`, then close 1008)
and forgets its streams."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from apex.gateway.connection import POLICY_VIOLATION

if TYPE_CHECKING:
    from apex.gateway.connection import Connection
    from apex.gateway.lineage import Lineage


async def session_event(
    connections: dict[str, Connection], lineages: dict[str, Lineage], event: dict[str, Any]
) -> None:
    if event["kind"] == "deleted":
        await _end_session(connections, lineages, event)
        return
    session = event["session"]
    for lineage in [ln for ln in lineages.values() if ln.sid == event["sid"]]:
        await lineage.publish(
            {
                "type": "session_updated",
                "payload": {"version": session["version"], "data": session["data"]},
            }
        )


async def _end_session(
    connections: dict[str, Connection], lineages: dict[str, Lineage], event: dict[str, Any]
) -> None:
    for conn in [c for c in connections.values() if c.claims.sid == event["sid"]]:
        await conn.send("error", code="session_ended", message=event.get("reason", ""))
        await asyncio.sleep(0)  # let the writer flush the error before the close
        await conn.close(POLICY_VIOLATION, "session ended")
    for lineage_id in [k for k, ln in lineages.items() if ln.sid == event["sid"]]:
        lineages.pop(lineage_id).cancel()
