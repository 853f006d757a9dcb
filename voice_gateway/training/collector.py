"""The inbox collector: reads the dialogue's event stream from Redis into the inbox (inbox.py), in the
gateway process beside the consoles.

With several gateways one collector works at a time: each holds the lease `LEASE_KEY` while it reads and the
others wait for it to lapse, so a conversation's turns are judged in order by one reader. Where it stopped is
kept in `CURSOR_KEY`, so a restart goes on from there. A conversation's channel is the call's transport
(`hotline:call:<id>`), or "chat" for a text conversation. Nothing here can stop the gateway: Redis or database
errors are logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from hotline_domain.dialogue_events import STREAM, DialogueEvent
from voice_gateway.training.inbox import InboxStore

log = logging.getLogger("hotline.inbox")

LEASE_KEY = "hotline:inbox:collector"
CURSOR_KEY = "hotline:inbox:cursor"
LEASE_S = 10
BATCH = 200
BLOCK_MS = 1000
RETRY_S = 2.0
CHANNELS_CACHED = 2000
PURGE_EVERY_S = 3600


class InboxCollector:
    def __init__(self, redis: Redis, store: InboxStore, stream: str = STREAM) -> None:
        self.redis, self.store, self.stream = redis, store, stream
        self.me = secrets.token_hex(6)
        self._channels: dict[str, str] = {}
        self.collected = 0

    async def run(self) -> None:
        """Forever (until cancelled): hold the lease, read, store; old turns purged once an hour."""
        purged_at = 0.0
        while True:
            try:
                if await self._lease():
                    await self._read_once()
                    if time.monotonic() - purged_at > PURGE_EVERY_S:
                        purged_at = time.monotonic()
                        await asyncio.to_thread(self.store.purge)
                else:
                    await asyncio.sleep(LEASE_S / 2)
            except asyncio.CancelledError:
                raise
            except (RedisError, SQLAlchemyError, OSError) as exc:
                log.warning("inbox collector: %s; retrying", type(exc).__name__)
                await asyncio.sleep(RETRY_S)

    async def _lease(self) -> bool:
        if await self.redis.set(LEASE_KEY, self.me, nx=True, ex=LEASE_S):
            return True
        holder = await self.redis.get(LEASE_KEY)
        if holder in (self.me, self.me.encode()):
            await self.redis.expire(LEASE_KEY, LEASE_S)
            return True
        return False

    async def _read_once(self) -> None:
        cursor = await self.redis.get(CURSOR_KEY) or "0-0"
        answer = await self.redis.xread({self.stream: cursor}, count=BATCH, block=BLOCK_MS)
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                await self._take(fields)
                await self.redis.set(CURSOR_KEY, entry_id)

    async def _take(self, fields: dict) -> None:
        try:
            event = DialogueEvent.from_fields(fields)
        except ValueError as exc:
            log.warning("inbox collector: skipped an entry: %s", exc)
            return
        channel = await self._channel(event.sender)
        await asyncio.to_thread(self.store.add, event, channel)
        self.collected += 1

    async def _channel(self, sender: str) -> str:
        if sender not in self._channels:
            if len(self._channels) >= CHANNELS_CACHED:
                self._channels.clear()
            transport = await self.redis.hget(f"hotline:call:{sender}", "transport")
            if isinstance(transport, bytes):
                transport = transport.decode()
            self._channels[sender] = str(transport) if transport else "chat"
        return self._channels[sender]


@contextlib.asynccontextmanager
async def collecting(redis: Redis, store: InboxStore):  # type: ignore[no-untyped-def]
    """Run a collector while the block runs; it releases its lease at the end."""
    collector = InboxCollector(redis, store)
    task = asyncio.create_task(collector.run(), name="inbox-collector")
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(RedisError, OSError):
            if await redis.get(LEASE_KEY) in (collector.me, collector.me.encode()):
                await redis.delete(LEASE_KEY)
