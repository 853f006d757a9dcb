"""The consoles' backend on a real Redis: today's figures, the live calls with their transcript, who sees which
events, wrap-up rights, presence. No gateway: the call records are written by the real CallStore."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from hotline_domain.contract import Handoff, HandoffQueue, HandoffReason
from voice_gateway.call_store import CallStore
from voice_gateway.config import Settings
from voice_gateway.console.backend import ActionRefused, AgentStatus, CallAction
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import SkillQueues
from voice_gateway.stack import redis_process

AGENT = ConsoleUser(1, "a1", Role.AGENT, (HandoffQueue.CARD,))
OTHER = ConsoleUser(2, "a2", Role.AGENT, (HandoffQueue.EMPLOYMENT,))
SUPERVISOR = ConsoleUser(3, "s1", Role.SUPERVISOR)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    process, url = redis_process(Settings.from_env())
    process.start()
    yield url
    process.stop()


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[tuple[CallStore, SkillQueues, RedisBackend]]:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    queues = SkillQueues(redis, "gw-t", key=secrets.token_bytes(32))
    yield CallStore(redis, "gw-t"), queues, RedisBackend(redis, queues, command_timeout_s=1.0)
    await redis.aclose()


async def test_todays_figures_count_calls_the_bot_alone_resolved_handovers_and_turn_gaps(parts) -> None:
    store, queues, backend = parts
    for call_id in ("c1", "c2", "c3"):
        await store.started(call_id, "twilio")
    await store.turn_gap("c1", 900)
    await store.turn_gap("c2", 1500)
    await store.ended("c1", "completed")  # the bot alone
    await store.handed_off("c2", Handoff(HandoffReason.CALLER_REQUEST, HandoffQueue.CARD), {}, False, queues)
    await store.ended("c2", "completed", "callback")  # handed over: not the bot's alone
    await store.ended("c3", "caller_hung_up")
    figures = await backend.stats()
    assert (figures["calls"], figures["bot_resolved"], figures["handed_over"]) == (3, 1, 1)
    assert figures["turn_gap_p95_ms"] >= 1400


async def test_live_calls_carry_their_transcript_and_agents_see_only_their_skills(parts) -> None:
    store, queues, backend = parts
    await store.started("c1", "sip")
    await store.turn("c1", {"kind": "heard", "seq": 1, "caller": "我社保卡丢了", "confidence": 0.9})
    await store.turn("c1", {"kind": "answer", "seq": 1, "bot": "请说身份证号", "intent": "card_loss_report"})
    await store.handed_off("c1", Handoff(HandoffReason.CALLER_REQUEST, HandoffQueue.CARD), {}, False, queues)
    [call] = await backend.calls()
    assert call["gateway"] == "gw-t" and call["state"] == "queued" and call["queue"] == "card"
    assert call["turns"][0] == {
        "seq": 1,
        "speaker": "caller",
        "text": "我社保卡丢了",
        "confidence": 0.9,
        "intent": "card_loss_report",
    }
    card = await backend.card(AGENT, "c1")
    assert card["reason_label"] == "来电人要求转人工" and card["intent_path"] == ["card_loss_report"]
    with pytest.raises(ActionRefused) as refused:
        await backend.card(OTHER, "c1")
    assert refused.value.status == 403
    with pytest.raises(ActionRefused) as refused:  # no gateway answers for gw-t: the agent is told, not left hanging
        await backend.act(AGENT, CallAction.ACCEPT, "c1", {"sdp": "v=0", "type": "offer"})
    assert refused.value.status == 504


async def test_an_agents_events_are_their_queues_and_calls_and_their_page_keeps_them_present(parts) -> None:
    store, queues, backend = parts
    await backend.set_status(AGENT, AgentStatus.AVAILABLE, AGENT.skills)
    mine, theirs = backend.events(AGENT, None), backend.events(OTHER, None)
    first, other_first = asyncio.ensure_future(anext(mine)), asyncio.ensure_future(anext(theirs))
    await asyncio.sleep(0.2)
    await store.started("c1", "sip")  # a bot call: no agent's business
    await store.handed_off("c1", Handoff(HandoffReason.CALLER_REQUEST, HandoffQueue.CARD), {}, False, queues)
    _, kind, data = await asyncio.wait_for(first, 3)
    assert kind in ("queue", "call") and (kind == "queue" or data["state"] == "queued")
    _, kind, _ = await asyncio.wait_for(other_first, 3)
    assert kind == "queue"  # the queue figures, not another skill's call
    await mine.aclose()
    await theirs.aclose()
    assert await queues.agents_available(HandoffQueue.CARD) == 1


async def test_a_wrap_up_belongs_to_the_agent_who_last_had_the_call(parts) -> None:
    store, _, backend = parts
    await store.started("c1", "sip")
    await store.console_state("c1", "agent", agent="a1", last_agent="a1", queue="card")
    await store.console_state("c1", "bot", agent="")
    await store.ended("c1", "completed")
    with pytest.raises(ActionRefused) as refused:
        await backend.act(OTHER, CallAction.WRAPUP, "c1", {"note": "x", "disposition": "resolved"})
    assert refused.value.status == 403
    body = {"note": "来电人身份证110105196805121230已核对", "disposition": "resolved"}
    wrapped = await backend.act(AGENT, CallAction.WRAPUP, "c1", body)
    assert "110105196805121230" not in wrapped["wrapup"]["note"]  # masked before it is stored
    with pytest.raises(ActionRefused):
        await backend.act(AGENT, CallAction.WRAPUP, "c1", {"note": "x", "disposition": "maybe"})
