"""The skill queues on a real, throwaway redis-server: order, atomic claims, requeue, stats, estimate, callbacks."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.exceptions import InvalidTag
from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue
from voice_gateway.config import Settings
from voice_gateway.queueing import SkillQueues
from voice_gateway.stack import redis_process

CARD = HandoffQueue.CARD
NUMBER = "13812345678"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    process, url = redis_process(Settings.from_env())
    process.start()
    yield url
    process.stop()


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[SkillQueues]:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    yield SkillQueues(redis, "gw-test", key=secrets.token_bytes(32))
    await redis.aclose()


async def events(queues: SkillQueues, kind: str) -> list[dict]:
    stream = await queues.redis.xrange("hotline:events")
    return [json.loads(f[b"data"]) for _, f in stream if f[b"type"] == kind.encode()]


async def test_a_senior_who_joins_later_is_ahead_of_an_earlier_ordinary_caller(queues: SkillQueues) -> None:
    assert await queues.enqueue("ordinary-1", CARD, {"reason": "caller_request"}, priority=False) == 1
    assert await queues.enqueue("ordinary-2", CARD, {}, priority=False) == 2
    await asyncio.sleep(0.01)
    assert await queues.enqueue("senior", CARD, {}, priority=True) == 1
    assert [await queues.position(c) for c in ("senior", "ordinary-1", "ordinary-2")] == [1, 2, 3]
    assert await queues.enqueue("ordinary-1", CARD, {}, priority=False) == 2, "queued again: keeps its place"
    assert await queues.position("nobody") is None
    snapshot = await queues.snapshot()
    card = snapshot["queues"]["card"]
    assert card["waiting"] == 3 and [c["call_id"] for c in card["calls"]] == ["senior", "ordinary-1", "ordinary-2"]
    assert card["calls"][0]["priority"] and not card["calls"][1]["priority"]
    assert snapshot["queues"]["general"]["waiting"] == 0
    assert (await events(queues, "queue"))[-1]["waiting"] == 3
    assert await queues.redis.hget(queues.stats_key(), "handed_over") == b"3", "a retried enqueue counts once"


async def test_two_agents_claiming_at_once_only_one_wins(queues: SkillQueues) -> None:
    await queues.enqueue("call-1", CARD, {"summary": "挂失"}, priority=False)
    results = await asyncio.gather(*(queues.claim("call-1", f"agent{n}") for n in range(8)))
    won = [r for r in results if r is not None]
    assert len(won) == 1 and won[0]["card"] == {"summary": "挂失"} and won[0]["skill"] == "card"
    assert await queues.position("call-1") is None
    stats = await queues.redis.hgetall(queues.stats_key())
    assert stats[b"waits"] == b"1" and float(stats[b"wait_total_s"]) >= 0
    assert await queues.claim("gone", "agent1") is None


async def test_requeue_puts_the_call_at_the_very_front(queues: SkillQueues) -> None:
    await queues.enqueue("dropped", CARD, {}, priority=False)
    await queues.claim("dropped", "agent1")
    await queues.enqueue("senior", CARD, {}, priority=True)
    await queues.enqueue("other", CARD, {}, priority=False)
    await queues.requeue("dropped")
    assert [await queues.position(c) for c in ("dropped", "senior", "other")] == [1, 2, 3]


async def test_a_caller_hanging_up_while_waiting_is_counted_abandoned_once(queues: SkillQueues) -> None:
    await queues.enqueue("impatient", CARD, {}, priority=False)
    await queues.enqueue("served", CARD, {}, priority=False)
    await queues.leave("impatient", abandoned=True)
    await queues.leave("impatient", abandoned=True)
    await queues.claim("served", "agent1")
    await queues.leave("served", abandoned=True)  # claimed before the hang-up: not abandoned
    assert await queues.position("impatient") is None
    assert await queues.redis.hget(queues.stats_key(), "abandoned") == b"1"


async def test_the_estimate_comes_from_the_last_hours_handling_times_and_the_agents(queues: SkillQueues) -> None:
    assert await queues.estimated_wait_s(CARD) is None, "no history: nothing honest to say"
    for n, seconds in enumerate((100.0, 200.0, 300.0)):
        await queues.handled(CARD, f"old-{n}", seconds)
    assert await queues.estimated_wait_s(CARD) is None, "history, but no agent signed in"
    await queues.set_agent("agent1", "busy", (CARD, HandoffQueue.GENERAL))
    await queues.set_agent("agent2", "busy", (CARD,))
    await queues.set_agent("agent3", "available", (HandoffQueue.EMPLOYMENT,))
    for n in range(3):
        await queues.enqueue(f"w{n}", CARD, {}, priority=False)
    # a fourth caller has three ahead, both card agents busy: 4 handling times of 200 s shared by 2 agents
    assert await queues.estimated_wait_s(CARD) == pytest.approx(400.0)
    assert await queues.estimated_wait_s(CARD, position=1) == pytest.approx(100.0)
    assert await queues.agents_available(CARD) == 0
    await queues.set_agent("agent2", "available", (CARD,))
    assert await queues.agents_available(CARD) == 1
    assert await queues.estimated_wait_s(CARD, position=1) == 0.0, "a free agent: the next caller is answered now"
    await queues.redis.zadd("hotline:handled:card", {"old-0": 1.0, "old-1": 1.0, "old-2": 1.0})  # long ago
    assert await queues.estimated_wait_s(CARD) is None


async def test_a_callback_number_is_sealed_and_nowhere_in_redis_in_clear(queues: SkillQueues) -> None:
    await queues.enqueue("caller", CARD, {}, priority=False)
    entry = await queues.add_callback("caller", CARD, NUMBER)
    assert entry["number_masked"] == "138****5678" and entry["state"] == "waiting"
    assert "number_sealed" not in entry
    assert [c["id"] for c in await queues.callbacks()] == [entry["id"]]
    assert await queues.callback_number(entry["id"]) == NUMBER
    await queues.set_callback_state(entry["id"], "dialling")
    assert (await queues.callbacks())[0]["state"] == "dialling"
    with pytest.raises(ValueError):
        await queues.set_callback_state(entry["id"], "lost")
    assert (await events(queues, "callback"))[-1]["state"] == "dialling"
    assert "number_sealed" not in (await queues.snapshot())["callbacks"][0]
    dump = b""
    async for key in queues.redis.scan_iter():
        kind = (await queues.redis.type(key)).decode()
        if kind == "hash":
            dump += b"".join(k + v for k, v in (await queues.redis.hgetall(key)).items())
        elif kind == "zset":
            dump += b"".join(m for m in await queues.redis.zrange(key, 0, -1))
        elif kind == "stream":
            dump += b"".join(b"".join(f.values()) for _, f in await queues.redis.xrange(key))
        elif kind == "string":
            dump += await queues.redis.get(key) or b""
        dump += key
    assert NUMBER.encode() not in dump and b"5678" in dump
    other = SkillQueues(queues.redis, "gw-2", key=secrets.token_bytes(32))
    with pytest.raises(InvalidTag):
        await other.callback_number(entry["id"])  # another key opens nothing
