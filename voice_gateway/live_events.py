"""The hotline's live events, one Redis stream for every gateway process: what the consoles follow.

    await publish(redis, "turn", {"call_id": ..., "speaker": "caller", "text": ...})
    async for event_id, kind, data in follow(redis, last_id):  # None: from now on
        ...

The stream's ids are the pages' SSE ids: a page that reconnects resumes right after the last event it saw (as long
as the stream still holds it; it keeps about `MAXLEN` events). Data is JSON and already masked by whoever
publishes it: nothing here sees a clear number.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

STREAM = "hotline:events"
MAXLEN = 10_000
BLOCK_MS = 1_000  # a follower wakes this often with nothing new (so a closed page is noticed)


async def publish(redis: Redis, kind: str, data: dict[str, Any]) -> str:
    """Append one event; returns its id."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    event_id = await redis.xadd(STREAM, {"type": kind, "data": raw}, maxlen=MAXLEN, approximate=True)
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def follow(redis: Redis, last_id: str | None = None) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """Events after `last_id` (None or an id the stream cannot parse: from now on), as `(id, type, data)`."""
    cursor = last_id if last_id and _valid(last_id) else "$"
    if cursor == "$":
        newest = await redis.xrevrange(STREAM, count=1)
        cursor = _text(newest[0][0]) if newest else "0-0"
    while True:
        batches = await redis.xread({STREAM: cursor}, block=BLOCK_MS, count=100)
        for _, entries in batches or []:
            for raw_id, fields in entries:
                cursor = _text(raw_id)
                values = {_text(k): _text(v) for k, v in fields.items()}
                try:
                    data = json.loads(values.get("data", "{}"))
                except ValueError:
                    continue
                yield cursor, values.get("type", "message"), data


def _valid(event_id: str) -> bool:
    head, _, tail = event_id.partition("-")
    return head.isdigit() and (tail == "" or tail.isdigit())
