"""The human agents' queues in Redis, one per service domain, shared by every gateway process (docs/consoles.md).

    queues = SkillQueues(redis, gateway="gw-1", key=recording_key)
    position = await queues.enqueue(call_id, HandoffQueue.CARD, card, priority=False)   # 1 = next
    entry = await queues.claim(call_id, "agent1")   # atomic: one agent wins, the others get None

A queue is the zset `hotline:queue:<skill>` scored band * 1e10 + the epoch second the call (re)joined: band 0 is
priority (a caller of 65 or more, or the same caller calling again within 24 h), band 1 everyone else, so a
priority caller who joins later is still ahead. Each waiting call has its entry hash `hotline:queue:entry:<id>`
(skill, at, since, priority, gateway, card). Handling times of the last hour (`hotline:handled:<skill>`) and the
agents signed in (`hotline:agents`) give the estimated wait. Callback requests (`hotline:callbacks`) keep the
number sealed with AES-GCM under a key derived from the recording key: Redis, the events and the logs only ever
see it masked (138****5678). Every change is published on the live stream (`queue`, `callback` events).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue
from hotline_domain.privacy import mask_landline, mask_phone
from voice_gateway import live_events

BAND = 1e10  # score = band * BAND + epoch seconds
HANDLED_WINDOW_S = 3600.0
ENTRY_TTL_S = 24 * 3600
STATS_TTL_S = 400 * 24 * 3600
AGENTS = "hotline:agents"
AGENT_STALE_S = 45.0  # an agent whose console has not been seen this long is away (a closed laptop, a crash)
CALLBACKS = "hotline:callbacks"
AVAILABLE = "available"  # an agent's status that can take the next call
SIGNED_IN = frozenset({"available", "busy", "wrapup"})  # statuses of agents at their desk (handling calls)
CALLBACK_STATES = frozenset({"waiting", "dialling", "done"})
_CALLBACK_INFO = b"hotline callback number v1"

# claim: the call leaves its queue and the entry is marked taken in one step; only the first agent finds it there
_CLAIM = """
local skill = redis.call('HGET', KEYS[1], 'skill')
if not skill then return false end
if redis.call('ZREM', ARGV[4] .. skill, ARGV[1]) == 0 then return false end
local waited = tonumber(ARGV[3]) - tonumber(redis.call('HGET', KEYS[1], 'since'))
redis.call('HSET', KEYS[1], 'agent', ARGV[2], 'claimed', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'waits', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'wait_total_s', string.format('%.3f', waited))
redis.call('EXPIRE', KEYS[2], ARGV[5])
return redis.call('HGETALL', KEYS[1])
"""

# requeue: back in its queue ahead of everyone (an agent's browser dropped mid-call)
_REQUEUE = """
local skill = redis.call('HGET', KEYS[1], 'skill')
if not skill then return false end
local queue = ARGV[3] .. skill
local front = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
local score = tonumber(ARGV[2])
if front[2] and tonumber(front[2]) <= score then score = tonumber(front[2]) - 1 end
redis.call('ZADD', queue, score, ARGV[1])
redis.call('HSET', KEYS[1], 'since', ARGV[2], 'agent', '')
return skill
"""


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def mask_number(number: str) -> str:
    """A callback number as a person may see it: 138****5678, 0592-***4567, else all but the last four hidden."""
    if len(number) == 11 and number.startswith("1"):
        return mask_phone(number)
    if number.startswith("0") and len(number) >= 10:
        return mask_landline(number)
    return "*" * max(0, len(number) - 4) + number[-4:]


class SkillQueues:
    """The queues, agents, handling times, callbacks and daily stats, as any gateway or console sees them."""

    def __init__(self, redis: Redis, gateway: str = "", key: bytes | None = None) -> None:
        self.redis = redis
        self.gateway = gateway
        self._aead = (
            AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CALLBACK_INFO).derive(key))
            if key
            else None
        )

    @property
    def can_seal(self) -> bool:
        """A callback can be registered (the number needs the recording key to be kept)."""
        return self._aead is not None

    # --- keys ---
    @staticmethod
    def queue_key(skill: HandoffQueue | str) -> str:
        return f"hotline:queue:{HandoffQueue(skill).value}"

    @staticmethod
    def entry_key(call_id: str) -> str:
        return f"hotline:queue:entry:{call_id}"

    @staticmethod
    def stats_key(at: float | None = None) -> str:
        return "hotline:stats:" + time.strftime("%Y-%m-%d", time.localtime(time.time() if at is None else at))

    # --- a caller waiting ---
    async def enqueue(self, call_id: str, skill: HandoffQueue, card: dict[str, Any], priority: bool) -> int:
        """The call joins `skill`'s queue (again: it keeps its place); returns its position, 1 = next."""
        skill = HandoffQueue(skill)
        now = time.time()
        score = (0 if priority else 1) * BAND + now
        added = await self.redis.zadd(self.queue_key(skill), {call_id: score}, nx=True)
        if added:
            entry = {
                "skill": skill.value,
                "at": now,
                "since": now,
                "priority": int(priority),
                "gateway": self.gateway,
                "card": json.dumps(card, ensure_ascii=False),
                "agent": "",
            }
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.entry_key(call_id), mapping=entry)
                pipe.expire(self.entry_key(call_id), ENTRY_TTL_S)
                pipe.hincrby(self.stats_key(now), "handed_over", 1)
                pipe.expire(self.stats_key(now), STATS_TTL_S)
                await pipe.execute()
        await self._changed(skill)
        return await self.position(call_id) or 1

    async def position(self, call_id: str) -> int | None:
        """1-based place in its queue, or None when it is not waiting (claimed, gone, never queued)."""
        skill = _text(await self.redis.hget(self.entry_key(call_id), "skill"))
        if not skill:
            return None
        rank = await self.redis.zrank(self.queue_key(skill), call_id)
        return None if rank is None else int(rank) + 1

    async def skill_of(self, call_id: str) -> HandoffQueue | None:
        skill = _text(await self.redis.hget(self.entry_key(call_id), "skill"))
        return HandoffQueue(skill) if skill else None

    async def claim(self, call_id: str, agent: str) -> dict[str, Any] | None:
        """An agent takes the call: the entry (card decoded), or None if it is gone or another agent was first."""
        now = time.time()
        raw = await self.redis.register_script(_CLAIM)(
            keys=[self.entry_key(call_id), self.stats_key(now)],
            args=[call_id, agent, repr(now), "hotline:queue:", STATS_TTL_S],
        )
        if not raw:
            return None
        entry = self._entry(dict(zip(map(_text, raw[::2]), map(_text, raw[1::2]), strict=True)))
        await self._changed(entry["skill"])
        return {"call_id": call_id, **entry}

    async def requeue(self, call_id: str) -> None:
        """Back at the very front of its queue (its agent's browser dropped mid-call)."""
        requeue = self.redis.register_script(_REQUEUE)
        skill = await requeue(keys=[self.entry_key(call_id)], args=[call_id, repr(time.time()), "hotline:queue:"])
        if skill:
            await self._changed(_text(skill))

    async def leave(self, call_id: str, abandoned: bool) -> None:
        """The call stops waiting (hung up: `abandoned`, counted once; a callback taken; the bot has it again)."""
        skill = _text(await self.redis.hget(self.entry_key(call_id), "skill"))
        if not skill:
            return
        removed = await self.redis.zrem(self.queue_key(skill), call_id)
        if removed and abandoned:
            await self.redis.hincrby(self.stats_key(), "abandoned", 1)
            await self.redis.expire(self.stats_key(), STATS_TTL_S)
        if removed:
            await self.redis.delete(self.entry_key(call_id))
            await self._changed(skill)

    # --- agents and the estimate ---
    async def handled(self, skill: HandoffQueue, call_id: str, seconds: float) -> None:
        """An agent finished a call of `skill` after `seconds`: the estimate learns from the last hour."""
        now = time.time()
        queue = HandoffQueue(skill).value
        times, secs = f"hotline:handled:{queue}", f"hotline:handled:{queue}:s"
        old = [_text(m) for m in await self.redis.zrangebyscore(times, "-inf", now - HANDLED_WINDOW_S)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(times, {call_id: now})
            pipe.hset(secs, call_id, repr(float(seconds)))
            if old:
                pipe.zrem(times, *old)
                pipe.hdel(secs, *old)
            pipe.expire(times, int(HANDLED_WINDOW_S * 2))
            pipe.expire(secs, int(HANDLED_WINDOW_S * 2))
            await pipe.execute()

    async def set_agent(self, name: str, status: str, skills: tuple[HandoffQueue, ...]) -> None:
        """An agent's status ("available", "busy", "wrapup", "away", "offline") and the queues they serve."""
        agent = {"status": status, "skills": [HandoffQueue(s).value for s in skills], "seen": time.time()}
        await self.redis.hset(AGENTS, name, json.dumps(agent))
        for skill in agent["skills"]:
            await self._changed(skill)

    async def seen(self, name: str) -> None:
        """The agent's console is open (it says so every few seconds while it is): their status holds."""
        raw = await self.redis.hget(AGENTS, name)
        if raw:
            agent = {**json.loads(raw), "seen": time.time()}
            await self.redis.hset(AGENTS, name, json.dumps(agent))

    async def _agents(self) -> list[dict[str, Any]]:
        """The agents whose console was seen lately (the others count as away, whatever they last chose)."""
        agents = []
        now = time.time()
        for raw in (await self.redis.hgetall(AGENTS)).values():
            try:
                agent = json.loads(raw)
            except ValueError:
                continue
            if now - float(agent.get("seen", 0)) <= AGENT_STALE_S:
                agents.append(agent)
        return agents

    async def agents_available(self, skill: HandoffQueue) -> int:
        """Agents of `skill` free to take the next call now."""
        queue = HandoffQueue(skill).value
        return sum(1 for a in await self._agents() if a.get("status") == AVAILABLE and queue in a.get("skills", []))

    async def estimated_wait_s(self, skill: HandoffQueue, position: int | None = None) -> float | None:
        """How long the caller at `position` (default: one joining now) may wait, from the last hour's mean
        handling time and the agents signed in for `skill`; None when there is nothing honest to say (no call
        handled in the last hour, or no agent of that skill signed in)."""
        queue = HandoffQueue(skill).value
        now = time.time()
        members = await self.redis.zrangebyscore(f"hotline:handled:{queue}", now - HANDLED_WINDOW_S, "+inf")
        seconds = await self.redis.hmget(f"hotline:handled:{queue}:s", members) if members else []
        handled = [float(s) for s in seconds if s is not None]
        agents = [a for a in await self._agents() if queue in a.get("skills", [])]
        staffed = sum(1 for a in agents if a.get("status") in SIGNED_IN)
        available = sum(1 for a in agents if a.get("status") == AVAILABLE)
        if not handled or not staffed:
            return None
        if position is None:
            position = int(await self.redis.zcard(self.queue_key(queue))) + 1
        ahead = max(0, position - 1)
        if available > ahead:
            return 0.0
        return (ahead + 1 - available) * (sum(handled) / len(handled)) / staffed

    # --- what the consoles show ---
    async def snapshot(self) -> dict[str, Any]:
        """Every queue (waiting, longest wait, agents free, estimate, the calls in order) and the callbacks."""
        now = time.time()
        queues: dict[str, Any] = {}
        for skill in HandoffQueue:
            calls = []
            for member in await self.redis.zrange(self.queue_key(skill), 0, -1):
                call_id = _text(member)
                fields = await self.redis.hmget(self.entry_key(call_id), ["since", "priority"])
                since = float(_text(fields[0]) or now)
                calls.append(
                    {"call_id": call_id, "waited_s": round(now - since, 1), "priority": _text(fields[1]) == "1"}
                )
            queues[skill.value] = {
                "waiting": len(calls),
                "longest_wait_s": max((c["waited_s"] for c in calls), default=0.0),
                "agents_available": await self.agents_available(skill),
                "estimated_wait_s": await self.estimated_wait_s(skill),
                "calls": calls,
            }
        return {"queues": queues, "callbacks": await self.callbacks()}

    async def _changed(self, skill: HandoffQueue | str) -> None:
        queue = HandoffQueue(skill).value
        now = time.time()
        front = await self.redis.zrange(self.queue_key(queue), 0, -1)
        longest = 0.0
        for member in front:
            since = _text(await self.redis.hget(self.entry_key(_text(member)), "since"))
            if since:
                longest = max(longest, now - float(since))
        data = {"queue": queue, "waiting": len(front), "longest_wait_s": round(longest, 1)}
        await live_events.publish(self.redis, "queue", data)

    @staticmethod
    def _entry(fields: dict[str, str]) -> dict[str, Any]:
        return {
            "skill": fields.get("skill", ""),
            "at": float(fields.get("at") or 0),
            "since": float(fields.get("since") or 0),
            "priority": fields.get("priority") == "1",
            "gateway": fields.get("gateway", ""),
            "agent": fields.get("agent", ""),
            "card": json.loads(fields.get("card") or "{}"),
        }

    # --- callbacks ---
    async def add_callback(self, call_id: str, skill: HandoffQueue, number: str) -> dict[str, Any]:
        """A caller asked to be called back on `number` (kept sealed); returns the entry as the consoles see it."""
        if self._aead is None:
            raise RuntimeError("no recording key: a callback number cannot be kept")
        callback_id = "cb-" + secrets.token_hex(6)
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, number.encode(), callback_id.encode())
        entry = {
            "id": callback_id,
            "call_id": call_id,
            "queue": HandoffQueue(skill).value,
            "number_masked": mask_number(number),
            "number_sealed": base64.b64encode(sealed).decode(),
            "at": time.time(),
            "state": "waiting",
            "gateway": self.gateway,  # the one that dials it (it has the key to open the number)
        }
        await self.redis.hset(CALLBACKS, callback_id, json.dumps(entry, ensure_ascii=False))
        shown = _shown(entry)
        await live_events.publish(self.redis, "callback", shown)
        return shown

    async def _callback(self, callback_id: str) -> dict[str, Any]:
        raw = await self.redis.hget(CALLBACKS, callback_id)
        if raw is None:
            raise KeyError(callback_id)
        return json.loads(raw)

    async def callbacks(self) -> list[dict[str, Any]]:
        """Every callback request, oldest first, the number only masked."""
        entries = [json.loads(raw) for raw in (await self.redis.hgetall(CALLBACKS)).values()]
        return [_shown(e) for e in sorted(entries, key=lambda e: e.get("at", 0))]

    async def callback_number(self, callback_id: str) -> str:
        """The number in clear, for the gateway placing the call only (never log or store it)."""
        if self._aead is None:
            raise RuntimeError("no recording key: a callback number cannot be opened")
        sealed = base64.b64decode((await self._callback(callback_id))["number_sealed"])
        return self._aead.decrypt(sealed[:12], sealed[12:], callback_id.encode()).decode()

    async def set_callback_state(self, callback_id: str, state: str) -> None:
        """waiting -> dialling -> done."""
        if state not in CALLBACK_STATES:
            raise ValueError(f"callback state must be one of {sorted(CALLBACK_STATES)}")
        entry = await self._callback(callback_id)
        entry["state"] = state
        await self.redis.hset(CALLBACKS, callback_id, json.dumps(entry, ensure_ascii=False))
        await live_events.publish(self.redis, "callback", _shown(entry))


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "number_sealed"}
