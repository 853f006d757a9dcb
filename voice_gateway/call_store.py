"""Call records and the live event stream in Redis, for supervisors, agents and the consoles.

Keys: `hotline:call:<id>` (hash: state, transport, started, ended, reason, detail), `hotline:call:<id>:turns`
(list of JSON turns), `hotline:calls:active` (set); calls waiting for a person are in the skill queues
(voice_gateway/queueing.py). What the consoles follow goes on the `live_events` stream (types "call", "turn",
"partial"). Every change is also published on the call's own channel `hotline:call:<id>:events` (a page following one
call subscribes to it; a dashboard following every call subscribes to the pattern `EVENTS_PATTERN`). Caller
text is masked before it is stored: ID numbers, phone numbers and passwords never reach Redis in clear.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from hotline_domain.contract import Handoff
from hotline_domain.privacy import redact, redact_data, redact_partial
from voice_gateway import live_events
from voice_gateway.queueing import SkillQueues

EVENTS_PATTERN = "hotline:call:*:events"


def events_channel(call_id: str) -> str:
    """The channel one call's live events are published on."""
    return f"hotline:call:{call_id}:events"


ACTIVE = "hotline:calls:active"
GAPS_KEPT = 20_000  # today's turn gaps kept for the dashboard's p95
RECORD_TTL_S = 7 * 24 * 3600


class CallStore:
    """One gateway's view of the call records in Redis (shared by every gateway process)."""

    def __init__(self, redis: Redis, gateway: str = "") -> None:
        self.redis = redis
        self.gateway = gateway  # this process's id: the consoles send a call's commands to the gateway that has it

    async def console_state(self, call_id: str, state: str, **fields: str) -> None:
        """The call as the consoles see it changed: bot, queued, agent or ended (and who has it)."""
        key = f"hotline:call:{call_id}"
        await self.redis.hset(key, mapping={"console": state, **fields})
        record = await self.record(call_id)
        await live_events.publish(self.redis, "call", call_summary(call_id, record))

    async def _publish(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        message = json.dumps({"call": call_id, "event": kind, **data}, ensure_ascii=False)
        await self.redis.publish(events_channel(call_id), message)

    async def started(self, call_id: str, transport: str) -> None:
        key = f"hotline:call:{call_id}"
        started = {"state": "listening", "console": "bot", "transport": transport, "started": time.time()}
        await self.redis.hset(key, mapping={**started, "gateway": self.gateway})
        await self.redis.expire(key, RECORD_TTL_S)
        await self.redis.sadd(ACTIVE, call_id)
        await self.redis.hincrby(stats_key(), "calls", 1)
        await self._publish(call_id, "started", {"transport": transport})
        await live_events.publish(self.redis, "call", call_summary(call_id, await self.record(call_id)))

    async def state(self, call_id: str, state: str) -> None:
        await self.redis.hset(f"hotline:call:{call_id}", "state", state)
        await self._publish(call_id, "state", {"state": state})

    async def turn(self, call_id: str, turn: dict[str, Any]) -> None:
        """One exchange: caller text (masked), confidence, intent, bot text, stage timings in ms."""
        clean = redact_data(turn)
        key = f"hotline:call:{call_id}:turns"
        await self.redis.rpush(key, json.dumps(clean, ensure_ascii=False))
        await self.redis.expire(key, RECORD_TTL_S)
        await self._publish(call_id, "turn", clean)
        for line in turn_lines(clean):
            await live_events.publish(self.redis, "turn", {"call_id": call_id, **line})

    async def turn_gap(self, call_id: str, gap_ms: float, voice_ms: float | None = None) -> None:
        """How long the caller waited for an answer (the dashboard's turn gap p95 of today), and of that how long
        the voice took after the dialogue answered (the call's own list: `hotline bench` reads it)."""
        key = stats_key() + ":gaps"
        await self.redis.rpush(key, round(gap_ms))
        await self.redis.ltrim(key, -GAPS_KEPT, -1)
        await self.redis.expire(key, 2 * 24 * 3600)
        if voice_ms is not None:
            await self.redis.rpush(f"hotline:call:{call_id}:voice", round(voice_ms, 1))
            await self.redis.expire(f"hotline:call:{call_id}:voice", RECORD_TTL_S)

    async def partial(self, call_id: str, text: str) -> None:
        """What a streaming recogniser has heard so far of the caller's current turn: published, not stored."""
        masked = redact_partial(text)
        await self._publish(call_id, "partial", {"text": masked})
        await live_events.publish(self.redis, "partial", {"call_id": call_id, "text": masked})

    async def handed_off(
        self,
        call_id: str,
        handoff: Handoff,
        card: dict[str, Any] | None = None,
        priority: bool = False,
        queues: SkillQueues | None = None,
    ) -> int:
        """Queue the call for a person in its skill's queue (voice_gateway/queueing.py); returns its position in
        the queue (1 = next). `card` is the context card the agent sees, `priority` the band (65+, or a repeat)."""
        payload = redact_data(handoff.to_payload()[Handoff.KEY])
        entry = json.dumps({"call": call_id, "at": time.time(), **payload}, ensure_ascii=False)
        queues = queues or SkillQueues(self.redis, self.gateway)
        position = await queues.enqueue(call_id, handoff.queue, redact_data(card or {"handoff": payload}), priority)
        await self.redis.hset(f"hotline:call:{call_id}", mapping={"state": "on_hold", "handoff": entry})
        await self._publish(call_id, "handoff", {"position": position, **payload})
        await self.console_state(call_id, "queued", queue=handoff.queue.value)
        return int(position)

    async def ended(self, call_id: str, reason: str, detail: str = "") -> None:
        """The call is over: it leaves the active set (the session takes it out of its queue: `SkillQueues.leave`)."""
        await self.redis.hset(
            f"hotline:call:{call_id}",
            mapping={"state": "ended", "ended": time.time(), "reason": reason, "detail": redact(detail)},
        )
        await self.redis.hset(f"hotline:call:{call_id}", "console", "ended")
        removed = await self.redis.srem(ACTIVE, call_id)
        record = await self.record(call_id)
        if removed and reason == "completed" and not record.get("handoff") and not record.get("last_agent"):
            await self.redis.hincrby(stats_key(), "bot_resolved", 1)  # the bot alone saw the caller through
        await self._publish(call_id, "ended", {"reason": reason, "detail": redact(detail)})
        await live_events.publish(self.redis, "call", call_summary(call_id, record))

    async def turns(self, call_id: str) -> list[dict[str, Any]]:
        return [json.loads(t) for t in await self.redis.lrange(f"hotline:call:{call_id}:turns", 0, -1)]

    async def record(self, call_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(f"hotline:call:{call_id}")
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }


def stats_key(day: float | None = None) -> str:
    """Today's figures (calls, bot_resolved, handed_over, abandoned, wait_total_s, waits), local date."""
    return "hotline:stats:" + time.strftime("%Y-%m-%d", time.localtime(day))


def call_summary(call_id: str, record: dict[str, str]) -> dict[str, Any]:
    """A call as the consoles list it (`GET /api/calls` without its turns)."""
    started = float(record.get("started") or 0)
    return {
        "call_id": call_id,
        "gateway": record.get("gateway", ""),
        "state": record.get("console", "bot"),
        "queue": record.get("queue") or None,
        "agent": record.get("agent") or None,
        "last_agent": record.get("last_agent") or None,  # who had it last (their page shows the wrap-up)
        "transport": record.get("transport", ""),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)) if started else None,
        "started": started,
    }


def turn_lines(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored turn as the consoles' transcript lines: what the caller said (`heard`), what the bot answered
    (`answer`, which also carries the intent understood from the caller's words of the same `seq`)."""
    seq = turn.get("seq")
    if turn.get("kind") == "heard" and turn.get("caller"):
        return [{"seq": seq, "speaker": "caller", "text": turn["caller"], "confidence": turn.get("confidence")}]
    if turn.get("kind") == "answer":
        intent = turn.get("intent")
        return [{"seq": seq, "speaker": "bot", "text": turn.get("bot", ""), "intent": intent}]
    return []
