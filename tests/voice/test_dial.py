"""An agent works a callback: the gateway places the call over SIP and bridges it to the agent's browser.

Real parts: a throwaway redis-server, the gateway's SIP stack and desk in this process, SIPp as the far end (it
answers and echoes RTP, or says 486 Busy), the consoles' `RedisBackend`, and an aiortc peer as the agent's
browser. The bot's engines are fakes: on a call an agent placed the bot never speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue
from tests.unit.fakes import FakeDialogue, FakeRecognizer, FakeSynthesizer, LoudVad
from voice_gateway.app import Gateway
from voice_gateway.call_store import CallStore
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.console.backend import ActionRefused, CallAction, CallbackAction
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import SkillQueues
from voice_gateway.session import SpeechEngines
from voice_gateway.stack import free_port, redis_process
from voice_gateway.testing.console_peer import ConsolePeer, tone, tone_level
from voice_gateway.vad import Endpointer

AGENT = ConsoleUser(1, "agent-dial", Role.AGENT, tuple(HandoffQueue))
AGENT_HZ = 660.0
NUMBER = "13812345678"

BUSY = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="busy">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"""


@dataclass
class Line:
    gateway: Gateway
    backend: RedisBackend
    queues: SkillQueues
    redis: Redis
    sipp_port: int

    async def record(self, call_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(f"hotline:call:{call_id}")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def until(self, call_id: str, field: str, value: str, timeout_s: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while (record := await self.record(call_id)).get(field) != value:
            assert time.monotonic() < deadline, f"{call_id}: {field} {record.get(field)!r}, not {value!r}"
            await asyncio.sleep(0.1)
        return record

    async def state(self, callback_id: str) -> str:
        return next(c["state"] for c in await self.queues.callbacks() if c["id"] == callback_id)


def gateway_settings(sipp_port: int | None, gateway_id: str) -> GatewaySettings:
    sip = {"HOTLINE_SIP_TCP": "0"} | (
        {"HOTLINE_SIP_OUTBOUND": f"sip:{{number}}@127.0.0.1:{sipp_port}"} if sipp_port else {}
    )
    return GatewaySettings(port=free_port(), sip_port=free_port(), gateway_id=gateway_id, sip=sip, no_input_s=30)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    process, url = redis_process(Settings.from_env())
    process.start()
    yield url
    process.stop()


@contextlib.asynccontextmanager
async def serving(redis_url: str, outbound: bool) -> AsyncIterator[Line]:
    """A gateway with a desk and SIP (UDP), dialling out to SIPp's port when `outbound`."""
    sipp_port = free_port()
    config = gateway_settings(sipp_port if outbound else None, f"gw-dial-{secrets.token_hex(3)}")
    settings = replace(Settings.from_env(), redis_url=redis_url, gateway=config)
    speech = SpeechEngines(FakeRecognizer(), FakeSynthesizer(), lambda rate: Endpointer(LoudVad(), rate))
    redis = Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=2)
    queues = SkillQueues(redis, config.gateway_id, b"k" * 32)
    gateway = Gateway(settings, speech, FakeDialogue(), CallStore(redis, config.gateway_id), queues=queues)
    async with gateway.serving():
        yield Line(gateway, RedisBackend(redis, queues), queues, redis, sipp_port)
    await redis.aclose()


@pytest.fixture
async def line(redis_url: str) -> AsyncIterator[Line]:
    async with serving(redis_url, outbound=True) as running:
        yield running


def sipp(line: Line, folder: Path, *scenario: str) -> subprocess.Popen:
    """SIPp answering one call on the gateway's outbound port; its messages in folder/messages.log."""
    command = ["sipp", *scenario, "-i", "127.0.0.1", "-p", str(line.sipp_port), "-mp", str(free_port()), "-m", "1"]
    command += ["-trace_msg", "-message_file", str(folder / "messages.log")]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def sipp_done(process: subprocess.Popen, timeout_s: float = 15.0) -> int:
    return await asyncio.to_thread(process.wait, timeout_s)


async def test_an_agent_dials_a_callback_hears_the_far_end_and_hangs_up(line: Line, tmp_path: Path) -> None:
    far_end = sipp(line, tmp_path, "-sn", "uas", "-rtp_echo")
    agent = ConsolePeer()
    try:
        await asyncio.sleep(0.5)  # SIPp listening
        entry = await line.queues.add_callback("call-0105-0840", HandoffQueue.CARD, NUMBER)
        answer = await line.backend.callback(AGENT, entry["id"], CallbackAction.DIAL, await agent.offer())
        await agent.answered(answer)
        call_id = answer["call_id"]
        assert call_id == f"callback-{entry['id']}"
        record = await line.until(call_id, "console", "agent")
        assert record["agent"] == AGENT.name and record["queue"] == "card" and record["transport"] == "sip"
        assert await line.state(entry["id"]) == "dialling"
        messages = (tmp_path / "messages.log").read_text()
        assert f"INVITE sip:{NUMBER}@127.0.0.1:{line.sipp_port} SIP/2.0" in messages
        assert "m=audio" in messages and "PCMU/8000" in messages and "\nACK sip:" in messages
        await asyncio.sleep(1.0)  # ICE and DTLS

        said = time.monotonic()
        agent.say(tone(AGENT_HZ, 1.5))
        await asyncio.sleep(2.5)
        assert tone_level(agent.audio_since(said), AGENT_HZ) > 0.3, "the agent did not hear the far end (its echo)"
        bot_words = line.gateway.speech.synthesizer.said  # type: ignore[attr-defined]
        assert bot_words == [], f"the bot spoke on a call an agent placed: {bot_words}"

        await line.backend.act(AGENT, CallAction.HANGUP, call_id, {})
        assert await sipp_done(far_end) == 0, far_end.stderr.read().decode()[-800:] if far_end.stderr else ""
        assert "BYE sip:" in (tmp_path / "messages.log").read_text()
        await line.until(call_id, "console", "ended")
        deadline = time.monotonic() + 5
        while await line.state(entry["id"]) != "done":
            assert time.monotonic() < deadline, "the callback is not done after its call"
            await asyncio.sleep(0.1)
    finally:
        await agent.close()
        if far_end.poll() is None:
            far_end.kill()


async def test_a_busy_callee_answers_502_and_the_callback_waits_again(line: Line, tmp_path: Path) -> None:
    (tmp_path / "busy.xml").write_text(BUSY)
    far_end = sipp(line, tmp_path, "-sf", "busy.xml")
    agent = ConsolePeer()
    try:
        await asyncio.sleep(0.5)
        entry = await line.queues.add_callback("call-0105-0902", HandoffQueue.GENERAL, NUMBER)
        with pytest.raises(ActionRefused) as refused:
            await line.backend.callback(AGENT, entry["id"], CallbackAction.DIAL, await agent.offer())
        assert refused.value.status == 502 and refused.value.message == "回拨未接通：对方忙"
        assert await line.state(entry["id"]) == "waiting"
        assert await sipp_done(far_end) == 0  # our ACK of the 486 reached it
        assert line.gateway.switchboard.held == 0 and not line.gateway.switchboard.calls
    finally:
        await agent.close()
        if far_end.poll() is None:
            far_end.kill()


async def test_without_an_outbound_line_dialling_is_refused(redis_url: str) -> None:
    async with serving(redis_url, outbound=False) as line:
        agent = ConsolePeer()
        try:
            entry = await line.queues.add_callback("call-0105-0911", HandoffQueue.GENERAL, NUMBER)
            with pytest.raises(ActionRefused) as refused:
                await line.backend.callback(AGENT, entry["id"], CallbackAction.DIAL, await agent.offer())
            assert refused.value.status == 409 and "没有配置外呼线路" in refused.value.message
            assert await line.state(entry["id"]) == "waiting"
        finally:
            await agent.close()
