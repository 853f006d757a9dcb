"""A caller asking for a person over the Twilio transport, through an in-process gateway with real Whisper, Rasa
and Redis: the position and an honest wait are said, hold music plays, 1 takes a callback (the number keyed,
confirmed), the callback is listed with the number masked, and the call ends with a goodbye."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from tests.voice.conftest import wav
from voice_gateway.app import Gateway, load_speech
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.calls import Call
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.flow import Prompts
from voice_gateway.queueing import SkillQueues
from voice_gateway.rasa_client import RasaClient
from voice_gateway.session import BotSession
from voice_gateway.stack import Stack, free_port, redis_process
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn

NUMBER = "13812345678"


class QueueingGateway(Gateway):
    """The gateway with its sessions given the skill queues (the recording key seals callback numbers)."""

    queues: SkillQueues

    def make_bot(self, call: Call) -> BotSession:
        bot = super().make_bot(call)
        bot.queues = self.queues
        timing = bot.flow.timing
        timing.queue_announce_s = self.config.queue_announce_s
        timing.queue_callback_offer_s = self.config.queue_callback_offer_s
        timing.queue_limit_s = self.config.queue_limit_s
        return bot


@pytest.fixture(scope="module")
async def line(stack: Stack, speech_models_installed: None) -> AsyncIterator[tuple[str, SkillQueues, CallStore]]:
    base = Settings.from_env()
    redis_proc, redis_url = redis_process(base)
    redis_proc.start()
    config = GatewaySettings(
        port=free_port(), sip_port=0, asr_engine="whisper", asr_warm=1, queue_announce_s=2.0, queue_limit_s=8.0
    )
    settings = replace(base, redis_url=redis_url, gateway=config)
    speech = await asyncio.to_thread(load_speech, config)
    redis = Redis.from_url(redis_url, socket_timeout=2)
    store = CallStore(redis, "gw-queue")
    dialogue = RasaClient(stack.rasa_url, timeout=5, token=stack.rasa_token)
    gateway = QueueingGateway(settings, speech, dialogue, store)
    gateway.queues = SkillQueues(redis, "gw-queue", key=secrets.token_bytes(32))
    async with gateway.serving() as port:
        yield f"ws://127.0.0.1:{port}", gateway.queues, store
    await dialogue.close()
    await redis.aclose()
    redis_proc.stop()


async def test_a_caller_on_hold_hears_the_queue_and_music_and_takes_a_callback(
    line: tuple[str, SkillQueues, CallStore],
) -> None:
    url, queues, store = line
    caller = SimulatedCaller(f"{url}/twilio")
    report = await caller.run(
        [
            Turn(wav=wav("intent_request_human_1.wav")),  # 帮我转一下人工客服。
            Turn(wait_s=1.5),
            Turn(keys="1"),
            Turn(keys=NUMBER + "#"),
            Turn(keys="1"),
            Turn(wait_s=4.0),
        ],
        max_wait_s=10,
    )
    _, music, *_ = report.turns
    heard = bytes(caller.heard)
    assert music.agent_audio_s > 1.0, "the hold is never silent"
    assert rms_dbfs(heard[-(8000 * 2 * 8) :]) > -50
    turns = await store.turns(caller.call_id)
    hold = [t["bot"] for t in turns if t.get("kind") == "hold"]
    prompts = Prompts()
    assert any(text.startswith("您是下一位。") for text in hold), hold
    assert any(prompts.queue_no_agent in text and prompts.callback_offer in text for text in hold), hold
    assert prompts.callback_confirm(NUMBER) in hold and prompts.callback_done in hold, hold
    [callback] = [c for c in await queues.callbacks() if c["call_id"] == caller.call_id]
    assert callback["number_masked"] == "138****5678" and callback["queue"] == "general", callback
    assert await queues.callback_number(callback["id"]) == NUMBER
    record = await store.record(caller.call_id)
    for _ in range(30):
        if (record := await store.record(caller.call_id)).get("state") == "ended":
            break
        await asyncio.sleep(0.1)
    assert record["reason"] == "completed" and record["detail"] == "callback", record
    assert await queues.position(caller.call_id) is None
    dump = b"".join([k + v for k, v in (await store.redis.hgetall("hotline:callbacks")).items()])
    assert NUMBER.encode() not in dump
