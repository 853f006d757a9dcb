"""Parts failing mid-call, through a real gateway: real transports, Whisper, espeak-ng, Rasa and Redis.

The gateway runs in this process (so that a fault can be switched on for one call and its moment known) with
its own Redis, which the Redis test stops and starts again; Rasa is the session's. Each fault must reach the
caller as an apology and a person within 2 s, the call's record must say why, and the other calls carry on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from tests.voice.conftest import first, wav
from voice_gateway.app import Gateway, load_speech
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.engines import SpeechRecognizer, SpeechSynthesizer, Transcript, UtteranceRecognizer
from voice_gateway.flow import Prompts
from voice_gateway.rasa_client import RasaClient
from voice_gateway.session import SpeechEngines
from voice_gateway.speech_text import speakable
from voice_gateway.stack import ManagedProcess, Stack, free_port, redis_process
from voice_gateway.testing.ws_caller import PcmCaller, SimulatedCaller, Turn
from voice_gateway.tts import TtsError

FAULTY_RATE = 8000  # faults are switched on for the 8 kHz (Twilio) caller only; the 16 kHz (PCM) caller is healthy


@dataclass
class Faults:
    """Switches for the real engines, each for 8 kHz calls only, with the moment each fault happened."""

    tts_fails_on: str | None = None
    asr_fails: bool = False
    happened: list[tuple[str, float]] = field(default_factory=list)


class FaultySynthesizer:
    def __init__(self, real: SpeechSynthesizer, faults: Faults) -> None:
        self.real, self.faults = real, faults

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        return self.real.synthesize(text, sample_rate)

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        fails_on = self.faults.tts_fails_on
        if fails_on and fails_on in text and sample_rate == FAULTY_RATE:
            self.faults.happened.append(("tts", time.monotonic()))
            raise TtsError("injected: espeak-ng failed")
        return await self.real.synthesize_async(text, sample_rate)


class FaultyUtterance:
    def __init__(self, real: UtteranceRecognizer, faults: Faults) -> None:
        self.real, self.faults = real, faults

    def accept(self, pcm: bytes) -> str | None:
        return self.real.accept(pcm)

    def preview(self) -> None:
        self.real.preview()  # type: ignore[attr-defined]

    def finish(self) -> Transcript:
        if self.faults.asr_fails:
            self.faults.happened.append(("asr", time.monotonic()))
            raise RuntimeError("injected: the recogniser crashed")
        return self.real.finish()

    def close(self) -> None:
        self.real.close()


class FaultyRecognizer:
    def __init__(self, real: SpeechRecognizer, faults: Faults) -> None:
        self.real, self.faults, self.info = real, faults, real.info

    def utterance(self, sample_rate: int, hints: list[str] | None = None, *, digits: bool = False) -> Any:
        utterance = self.real.utterance(sample_rate, hints, digits=digits)
        return FaultyUtterance(utterance, self.faults) if sample_rate == FAULTY_RATE else utterance

    def warm_up(self, *args: Any, **kwargs: Any) -> None:
        self.real.warm_up(*args, **kwargs)


class NotingStore(CallStore):
    """The real call store, noting when each write failed (Redis down)."""

    def __init__(self, redis: Redis, faults: Faults) -> None:
        super().__init__(redis)
        self.faults = faults


def _noting(name: str) -> Any:
    async def write(self: NotingStore, *args: Any) -> Any:
        try:
            return await getattr(CallStore, name)(self, *args)
        except Exception:
            self.faults.happened.append(("redis", time.monotonic()))
            raise

    return write


for _name in ("started", "state", "turn", "partial", "handed_off", "ended"):
    setattr(NotingStore, _name, _noting(_name))


@dataclass
class Line:
    """The in-process gateway, its own Redis, and the fault switches."""

    url: str
    redis: ManagedProcess
    redis_url: str
    faults: Faults
    speech: SpeechEngines

    def record(self, call_id: str) -> dict[str, str]:
        raw = redis.Redis.from_url(self.redis_url).hgetall(f"hotline:call:{call_id}")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def ended(self, call_id: str, timeout_s: float = 5.0) -> dict[str, str]:
        """The call's record once the gateway has closed the call (the caller's hang-up reaches it a little later)."""
        deadline = time.monotonic() + timeout_s
        while (record := self.record(call_id)).get("state") != "ended" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return record

    def handoff(self, call_id: str) -> dict[str, Any] | None:
        entry = self.record(call_id).get("handoff")
        return json.loads(entry) if entry else None


@pytest.fixture(scope="module")
async def line(stack: Stack, speech_models_installed: None) -> AsyncIterator[Line]:
    base = Settings.from_env()
    redis_proc, redis_url = redis_process(base)
    redis_proc.start()
    config = GatewaySettings(port=free_port(), sip_port=0, asr_engine="whisper", asr_warm=1, no_input_s=30)
    settings = replace(base, redis_url=redis_url, gateway=config)
    faults = Faults()
    real = await asyncio.to_thread(load_speech, config)
    speech = SpeechEngines(
        FaultyRecognizer(real.recognizer, faults),
        FaultySynthesizer(real.synthesizer, faults),
        real.make_endpointer,
        real.canned,
    )
    store = NotingStore(Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1), faults)
    dialogue = RasaClient(stack.rasa_url, timeout=5, token=stack.rasa_token)
    gateway = Gateway(settings, speech, dialogue, store)
    async with gateway.serving() as port:
        line = Line(f"ws://127.0.0.1:{port}", redis_proc, redis_url, faults, real)
        yield line
    await dialogue.close()
    await store.redis.aclose()
    line.redis.stop()


class TimedCaller(SimulatedCaller):
    """A Twilio caller that notes when each frame of the agent's audio arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.arrivals: list[float] = []

    def _heard_audio(self, pcm: bytes) -> None:
        super()._heard_audio(pcm)
        if rms_dbfs(pcm) > -60:
            self.arrivals.append(time.monotonic())

    def heard_within(self, since: float) -> float:
        """How long after `since` the agent was first heard again."""
        later = [t for t in self.arrivals if t >= since]
        assert later, "the caller heard nothing after the fault"
        return later[0] - since


async def test_the_synthesiser_failing_mid_answer_gets_an_apology_and_a_person(line: Line) -> None:
    line.faults.tts_fails_on = "请问有什么可以帮您"  # the greeting's second sentence: its first has been heard
    caller = TimedCaller(f"{line.url}/twilio")
    other = PcmCaller(f"{line.url}/pcm")
    try:
        _, healthy = await asyncio.gather(
            caller.run([Turn(wait_s=4.0)]), other.run([Turn(wav=first("intent", "retirement_age"))])
        )
    finally:
        line.faults.tts_fails_on = None
    [(_, failed_at)] = [f for f in line.faults.happened if f[0] == "tts"]
    handoff = line.handoff(caller.call_id)
    assert handoff is not None and handoff["reason"] == "synthesiser_unavailable", handoff
    assert caller.heard_within(failed_at) < 2.0, "the agent was heard within 2 s of the failure"
    # what was heard: the greeting's first sentence (made before the failure), then the apology rendered ahead
    first_sentence = line.speech.synthesizer.synthesize(speakable("您好，这里是12333人社服务热线智能客服。"), 8000)
    apology = line.speech.canned[(Prompts().dialogue_down, 8000)]  # type: ignore[index]
    heard_s = len(caller.heard) / 2 / 8000
    assert heard_s > 0.9 * (len(first_sentence) + len(apology)) / 2 / 8000, heard_s
    assert healthy.turns[0].agent_audio_s > 1.0 and line.handoff(other.call_id) is None, "the other call carries on"


async def test_the_recogniser_raising_gets_an_apology_and_a_person_within_2_s(line: Line) -> None:
    line.faults.asr_fails = True
    caller = TimedCaller(f"{line.url}/twilio")
    other = PcmCaller(f"{line.url}/pcm")
    try:
        faulty, healthy = await asyncio.gather(
            caller.run([Turn(wav=wav("call_card_loss_1_request.wav"))]),
            other.run([Turn(wav=first("intent", "retirement_age"))]),
        )
    finally:
        line.faults.asr_fails = False
    handoff = line.handoff(caller.call_id)
    assert handoff is not None and handoff["reason"] == "recogniser_unavailable", handoff
    [(_, failed_at)] = [f for f in line.faults.happened if f[0] == "asr"]
    assert caller.heard_within(failed_at) < 2.0, "the apology within 2 s"
    assert faulty.turns[0].agent_audio_s > 2.0
    record = await line.ended(caller.call_id)
    assert record["state"] == "ended" and record["reason"] == "caller_hung_up", record
    assert healthy.turns[0].agent_audio_s > 1.0 and line.handoff(other.call_id) is None, "the other call carries on"


async def test_redis_stopped_mid_call_gets_an_apology_and_a_person_and_the_record_says_why(line: Line) -> None:
    caller = TimedCaller(f"{line.url}/twilio")
    port = int(line.redis_url.rsplit(":", 1)[1].split("/")[0])
    stopped: list[float] = []

    async def stop_then_restart() -> None:
        while not caller.arrivals or time.monotonic() - caller.arrivals[-1] < 0.6:  # the greeting is over
            await asyncio.sleep(0.05)
        await asyncio.to_thread(line.redis.stop)
        stopped.append(time.monotonic())
        await asyncio.sleep(6.0)
        line.redis, _ = redis_process(Settings.from_env(), port)
        await asyncio.to_thread(line.redis.start)

    outage = asyncio.create_task(stop_then_restart())
    report = await caller.run([Turn(wav=first("intent", "retirement_age"), pause_s=2.0), Turn(wait_s=3.0)])
    await outage
    [asked, _] = report.turns
    # the first write after the stop fails when the caller's words are recognised: the apology follows at once
    failed_at = min(t for kind, t in line.faults.happened if kind == "redis" and t >= stopped[0])
    assert caller.heard_within(failed_at) < 2.0, "the apology within 2 s"
    assert asked.agent_audio_s > 2.0
    deadline = time.monotonic() + 5
    while (handoff := line.handoff(caller.call_id)) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # written once Redis is back
    assert handoff is not None and handoff["reason"] == "store_unavailable", handoff
    assert (await line.ended(caller.call_id))["state"] == "ended", "the end of the call is recorded once Redis is back"
