"""People on a live call, through real parts: a Twilio caller, Whisper, Rasa, Redis, the desk and WebRTC.

A gateway runs in this process ("gw-desk") beside the session's gateway process; both share the session's Redis.
The consoles' backend (`RedisBackend`, what the pages' routes call) sends each action through Redis to the desk
of the call's gateway. People's browsers are aiortc peers (`ConsolePeer`) that say known tones and record what
they hear, so each test can tell whose voice reached whom: the caller's 440 Hz, the agent's 660 Hz, the
supervisor's 880 Hz.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue
from tests.voice.conftest import VoiceGateway, first
from voice_gateway.app import Gateway, load_speech
from voice_gateway.call_store import CallStore
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.console.backend import ActionRefused, CallAction
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import SkillQueues
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import Stack, free_port
from voice_gateway.testing.console_peer import ConsolePeer, tone, tone_level
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn, read_wav

CALLER_HZ, AGENT_HZ, COACH_HZ = 440.0, 660.0, 880.0
ALL_SKILLS = tuple(HandoffQueue)
AGENT = ConsoleUser(1, "agent-desk", Role.AGENT, ALL_SKILLS)
OTHER_AGENT = ConsoleUser(2, "agent-other", Role.AGENT, ALL_SKILLS)
NO_SKILL_AGENT = ConsoleUser(3, "agent-talent", Role.AGENT, (HandoffQueue.TALENT,))
SUPERVISOR = ConsoleUser(4, "sup-desk", Role.SUPERVISOR)


@dataclass
class Desk:
    url: str
    gateway: Gateway
    backend: RedisBackend
    redis: Redis

    async def record(self, call_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(f"hotline:call:{call_id}")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def until(self, call_id: str, state: str, timeout_s: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while (record := await self.record(call_id)).get("console") != state:
            assert time.monotonic() < deadline, f"{call_id}: console state {record.get('console')!r}, not {state}"
            await asyncio.sleep(0.1)
        return record

    async def join(self, user: ConsoleUser, action: CallAction, call_id: str) -> ConsolePeer:
        peer = ConsolePeer()
        answer = await self.backend.act(user, action, call_id, await peer.offer())
        await peer.answered(answer)
        return peer


@pytest.fixture(scope="module")
async def desk(stack: Stack, speech_models_installed: None) -> AsyncIterator[Desk]:
    base = Settings.from_env()
    config = GatewaySettings(
        port=free_port(), sip_port=0, asr_engine="whisper", asr_warm=1, no_input_s=30, gateway_id="gw-desk"
    )
    settings = replace(base, redis_url=stack.redis_url, gateway=config)
    speech = await asyncio.to_thread(load_speech, config)
    redis = Redis.from_url(stack.redis_url, socket_timeout=3, socket_connect_timeout=2)
    queues = SkillQueues(redis, config.gateway_id, b"k" * 32)
    store = CallStore(redis, config.gateway_id)
    dialogue = RasaClient(stack.rasa_url, timeout=5, token=stack.rasa_token)
    gateway = Gateway(settings, speech, dialogue, store, queues=queues)
    async with gateway.serving() as port:
        yield Desk(f"ws://127.0.0.1:{port}", gateway, RedisBackend(redis, queues), redis)
    await dialogue.close()
    await redis.aclose()


class Caller(SimulatedCaller):
    """A Twilio caller who can also say a tone and tell how much of a tone it heard since a moment."""

    def say_tone(self, hz: float, seconds: float = 1.5) -> None:
        self.say_pcm(tone(hz, seconds, rate=self.rate))

    def level_since(self, since: float, hz: float) -> float:
        return tone_level(self.heard_since(since), hz, rate=self.rate)


async def queued_caller(desk: Desk, stay_s: float = 60.0) -> tuple[Caller, asyncio.Task]:
    """A caller who asks for a person and then stays on the line."""
    caller = Caller(f"{desk.url}/twilio")
    task = asyncio.create_task(caller.run([Turn(wav=first("intent", "request_human")), Turn(wait_s=stay_s)]))
    await desk.until(caller.call_id, "queued")
    return caller, task


def heard(peer: ConsolePeer, since: float, hz: float) -> float:
    return tone_level(peer.audio_since(since), hz)


async def test_an_agent_accepts_hears_the_caller_and_is_heard_and_a_supervisor_listens_and_whispers(
    desk: Desk,
) -> None:
    caller, running = await queued_caller(desk)
    agent = supervisor = None
    try:
        with pytest.raises(ActionRefused) as refused:  # not a queue of theirs
            await desk.backend.act(NO_SKILL_AGENT, CallAction.ACCEPT, caller.call_id, {})
        assert refused.value.status == 403
        agent = await desk.join(AGENT, CallAction.ACCEPT, caller.call_id)
        record = await desk.until(caller.call_id, "agent")
        assert record["agent"] == AGENT.name
        with pytest.raises(ActionRefused) as refused:  # the call is taken
            await desk.join(OTHER_AGENT, CallAction.ACCEPT, caller.call_id)
        assert refused.value.status in (403, 409)
        with pytest.raises(ActionRefused) as refused:  # another agent's call
            await desk.backend.act(OTHER_AGENT, CallAction.HANGUP, caller.call_id, {})
        assert refused.value.status == 403
        await asyncio.sleep(1.0)  # ICE and DTLS

        said = time.monotonic()
        caller.say_tone(CALLER_HZ)
        agent.say(tone(AGENT_HZ, 1.5))
        await asyncio.sleep(2.5)
        assert heard(agent, said, CALLER_HZ) > 0.3, "the agent did not hear the caller"
        assert caller.level_since(said, AGENT_HZ) > 0.3, "the caller did not hear the agent"

        supervisor = await desk.join(SUPERVISOR, CallAction.LISTEN, caller.call_id)
        await asyncio.sleep(1.0)
        said = time.monotonic()
        caller.say_tone(CALLER_HZ)
        await asyncio.sleep(2.0)
        agent.say(tone(AGENT_HZ, 1.5))
        await asyncio.sleep(2.0)
        assert heard(supervisor, said, CALLER_HZ) > 0.1 and heard(supervisor, said, AGENT_HZ) > 0.1, "listen-in"

        await supervisor.close()
        supervisor = await desk.join(SUPERVISOR, CallAction.WHISPER, caller.call_id)
        await asyncio.sleep(1.0)
        said = time.monotonic()
        supervisor.say(tone(COACH_HZ, 1.5))
        await asyncio.sleep(2.5)
        assert heard(agent, said, COACH_HZ) > 0.3, "the agent did not hear the whisper"
        assert caller.level_since(said, COACH_HZ) < 0.02, "the caller heard the whisper"
        turns = await desk.backend.card(SUPERVISOR, caller.call_id)
        assert all("880" not in str(t) for t in turns["turns"])

        await supervisor.close()
        supervisor = await desk.join(SUPERVISOR, CallAction.BARGE, caller.call_id)
        await asyncio.sleep(1.0)
        said = time.monotonic()
        supervisor.say(tone(COACH_HZ, 1.5))
        await asyncio.sleep(2.5)
        assert heard(agent, said, COACH_HZ) > 0.3 and caller.level_since(said, COACH_HZ) > 0.3, "barge"

        await desk.backend.act(SUPERVISOR, CallAction.LEAVE, caller.call_id, {})
        await desk.backend.act(AGENT, CallAction.HANGUP, caller.call_id, {})
        await desk.until(caller.call_id, "ended")
        with pytest.raises(ActionRefused) as refused:  # a supervisor action on an ended call
            await desk.join(SUPERVISOR, CallAction.LISTEN, caller.call_id)
        assert refused.value.status == 404
        wrapped = await desk.backend.act(
            AGENT, CallAction.WRAPUP, caller.call_id, {"note": "已解答补卡流程", "disposition": "resolved"}
        )
        assert wrapped["wrapup"]["disposition"] == "resolved"
    finally:
        for peer in (agent, supervisor):
            if peer is not None:
                await peer.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_returned_to_the_bot_the_caller_is_answered_with_the_context(desk: Desk) -> None:
    caller, running = await queued_caller(desk)
    agent = await desk.join(AGENT, CallAction.ACCEPT, caller.call_id)
    try:
        await desk.until(caller.call_id, "agent")
        await desk.backend.act(AGENT, CallAction.RETURN, caller.call_id, {})
        await desk.until(caller.call_id, "bot")
        before = len(await CallStore(desk.redis).turns(caller.call_id))
        caller.say_pcm(read_wav(Path(first("intent", "retirement_age")), caller.rate))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answers = [t for t in (await CallStore(desk.redis).turns(caller.call_id))[before:] if t["kind"] == "answer"]
            if answers:
                break
            await asyncio.sleep(0.2)
        assert answers and answers[0].get("intent") == "retirement_age", answers
    finally:
        await agent.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


@pytest.mark.parametrize("how", ["closed", "crashed"])
async def test_a_browser_that_drops_puts_the_caller_back_in_the_queue(desk: Desk, how: str) -> None:
    caller, running = await queued_caller(desk)
    try:
        agent = await desk.join(AGENT, CallAction.ACCEPT, caller.call_id)
        await desk.until(caller.call_id, "agent")
        await asyncio.sleep(1.0)  # connected, talking
        if how == "closed":
            await agent.close()  # the tab closed: DTLS says goodbye
        else:
            agent.freeze()  # the browser crashed or lost its network: nothing more arrives, nothing says why
        dropped = time.monotonic()
        record = await desk.until(caller.call_id, "queued", timeout_s=10)
        print(f"\nbrowser {how}: the caller was back in the queue after {time.monotonic() - dropped:.1f} s")
        assert not record.get("agent")
        assert await desk.gateway.queues.position(caller.call_id) == 1  # first in line again
        since = time.monotonic()
        await asyncio.sleep(3.0)
        assert any(t >= since for t, _ in caller.arrived), "the caller hears nothing after the drop"
        await agent.close()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_supervisor_takes_over_a_bot_call_and_the_bot_stops(desk: Desk) -> None:
    caller = Caller(f"{desk.url}/twilio")
    running = asyncio.create_task(caller.run([Turn(wait_s=30)]))
    try:
        await desk.until(caller.call_id, "bot")
        await asyncio.sleep(0.5)  # the greeting is playing
        call = desk.gateway.calls[caller.call_id]
        supervisor = await desk.join(SUPERVISOR, CallAction.TAKEOVER, caller.call_id)
        assert not call.bridge.bot_attached  # off the bridge from the next frame
        record = await desk.until(caller.call_id, "agent")
        assert record["agent"] == SUPERVISOR.name
        await asyncio.sleep(1.0)
        said = time.monotonic()
        supervisor.say(tone(COACH_HZ, 1.5))
        caller.say_tone(CALLER_HZ)
        await asyncio.sleep(2.5)
        assert caller.level_since(said, COACH_HZ) > 0.3 and heard(supervisor, said, CALLER_HZ) > 0.3
        await desk.backend.act(SUPERVISOR, CallAction.HANGUP, caller.call_id, {})
        await desk.until(caller.call_id, "ended")
        await supervisor.close()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_two_gateways_on_one_dashboard(desk: Desk, gateway: VoiceGateway) -> None:
    """A call on the session's gateway process and one here both listed; a supervisor listens to the other's."""
    here, there = Caller(f"{desk.url}/twilio"), Caller(gateway.url("/twilio"))
    running = [asyncio.create_task(c.run([Turn(wait_s=20)])) for c in (here, there)]
    try:
        await desk.until(here.call_id, "bot")
        await desk.until(there.call_id, "bot")
        listed = {c["call_id"]: c["gateway"] for c in await desk.backend.calls()}
        assert listed[here.call_id] == "gw-desk"
        assert listed[there.call_id] not in ("", "gw-desk")
        supervisor = await desk.join(SUPERVISOR, CallAction.LISTEN, there.call_id)  # carried out by the other process
        await asyncio.sleep(1.0)
        said = time.monotonic()
        there.say_tone(CALLER_HZ)
        await asyncio.sleep(2.5)
        assert heard(supervisor, said, CALLER_HZ) > 0.1
        await supervisor.close()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
