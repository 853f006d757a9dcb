"""A call's telemetry: turn times, metrics, and its record in Redis, written so that it never holds up the call.

Writes go through a bounded queue to one writer task. A Redis that is slow or down neither blocks the call's
flow nor kills it: the writer keeps what it could not write and tries again, and tells the call once (the bot
then apologises and hands the caller to a person, by the catalogue's rules). Partial transcripts are the first
to be dropped when the queue is full; they are only for the consoles' live view. A write may take
`write_timeout_s`: longer through Sentinel (redis_link.py), where a failover makes writes late for a few seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voice_gateway import metrics
from voice_gateway.call_store import CallStore

log = logging.getLogger("hotline.telemetry")
QUEUE_LIMIT = 500  # record writes waiting for Redis; past that the oldest partials, then the oldest writes, go
WRITE_TIMEOUT_S = 2.0
RETRY_S = (0.2, 0.5, 1.0, 2.0)
CLOSE_FLUSH_S = 2.0  # at hang-up, how long the call waits for its record to be written


@dataclass
class TurnTimes:
    """When the stages of the current turn happened (monotonic seconds)."""

    speech_end: float | None = None
    recognised: float | None = None
    answered: float | None = None
    first_audio: float | None = None


Write = Callable[[], Awaitable[Any]]


class CallTelemetry:
    def __init__(
        self,
        call_id: str,
        store: CallStore,
        on_store_failure: Callable[[str], None] = lambda _: None,
        *,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.call_id = call_id
        self.write_timeout_s = write_timeout_s
        self.store = store
        self.on_store_failure = on_store_failure
        self.turn = TurnTimes()
        self.heard = 0  # utterances recognised so far (the `seq` of "heard" records)
        self.lost_writes = 0
        self._queue: deque[tuple[str, Write]] = deque()
        self._more = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._failing = False

    # --- the turn's times ---
    def speech_ended(self, now: float) -> None:
        self.turn = TurnTimes(speech_end=now)

    def keys_sent(self, now: float) -> None:
        self.turn = TurnTimes(speech_end=now, recognised=now)

    def recognised(self, now: float) -> float:
        """Marks the transcript's arrival; returns how long recognition took after the caller stopped."""
        self.turn.recognised = now
        took = now - (self.turn.speech_end or now)
        metrics.STAGE.labels("recognise").observe(took)
        return took

    def answered(self, now: float) -> float:
        self.turn.answered = now
        took = now - (self.turn.recognised or now)
        if self.turn.recognised is not None:
            metrics.STAGE.labels("dialogue").observe(took)
        return took

    def first_audio(self, now: float) -> None:
        """The first frame of an answer went out: the turn gap, for answered turns only."""
        turn = self.turn
        if turn.speech_end and turn.answered and turn.first_audio is None:
            turn.first_audio = now
            metrics.TURN_GAP.observe(now - turn.speech_end)
            voice_ms = (now - turn.answered) * 1000  # the dialogue's answer to its first sound: the voice's share
            metrics.STAGE.labels("voice").observe(voice_ms / 1000)
            self.write("gap", self.store.turn_gap, self.call_id, (now - turn.speech_end) * 1000, voice_ms)

    # --- the record ---
    def start(self) -> None:
        self._writer = asyncio.ensure_future(self._write_all())

    def write(self, kind: str, method: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Queue `method(*args)`, a CallStore write (never blocks). Partials ("partial") are the first dropped."""
        if len(self._queue) >= QUEUE_LIMIT:
            partial = next((i for i, (k, _) in enumerate(self._queue) if k == "partial"), None)
            del self._queue[partial if partial is not None else 0]
            self.lost_writes += 1
            metrics.LOST_WRITES.inc()
        self._queue.append((kind, functools.partial(method, *args)))
        self._more.set()

    async def now(self, kind: str, method: Callable[..., Awaitable[Any]], *args: Any, timeout_s: float = 1.0) -> Any:
        """A write whose answer the call needs (the queue position): awaited briefly; if Redis fails, None, and
        the write is queued to be tried again like the others."""
        try:
            async with asyncio.timeout(timeout_s):
                return await method(*args)
        except Exception as exc:
            self._failed(exc)
            self.write(kind, method, *args)
            return None

    async def _write_all(self) -> None:
        attempt = 0
        while True:
            if not self._queue:
                self._more.clear()
                await self._more.wait()
                continue
            _, job = self._queue[0]
            try:
                async with asyncio.timeout(self.write_timeout_s):
                    await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1
                continue
            attempt, self._failing = 0, False
            if self._queue and self._queue[0][1] is job:
                self._queue.popleft()

    def _failed(self, exc: BaseException) -> None:
        metrics.STORE_ERRORS.inc()
        if not self._failing:
            self._failing = True
            log.warning("call %s: call record not written: %s", self.call_id, type(exc).__name__)
            self.on_store_failure(f"{type(exc).__name__}: {exc}"[:200])

    async def close(self, last: tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None = None) -> None:
        """Flush what is queued (for a little while), then stop the writer. `last` (the call's end) is written
        after the queue, or, if the writer is stuck behind a slow Redis, straight away on a connection of its own."""
        if last is not None:
            self.write("last", last[0], *last[1])
        deadline = time.monotonic() + CLOSE_FLUSH_S
        while self._queue and time.monotonic() < deadline and self._writer is not None and not self._writer.done():
            await asyncio.sleep(0.02)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait({self._writer}, timeout=0.5)  # a writer stuck in a Redis client is not waited on
        if last is not None and any(kind == "last" for kind, _ in self._queue):
            self._queue = deque(item for item in self._queue if item[0] != "last")
            try:
                async with asyncio.timeout(1.0):
                    await last[0](*last[1])
            except Exception as exc:
                self._failed(exc)
                self._queue.append(("last", functools.partial(last[0], *last[1])))  # counted as not made
        if self._queue:
            self.lost_writes += len(self._queue)
            metrics.LOST_WRITES.inc(len(self._queue))
            log.warning("call %s: %d record writes not made (Redis slow or down)", self.call_id, len(self._queue))
