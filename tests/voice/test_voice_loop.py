"""Calls through the real gateway: Mandarin audio in over each transport, Whisper, Rasa, espeak-ng audio out."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hotline_domain.seed import DEMO_CALLERS
from tests.privacy_scan import find
from tests.voice.conftest import VoiceGateway, first, wav
from voice_gateway.audio import frames, rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn, call_and_report, read_wav

CHEN = DEMO_CALLERS[4]  # no other test reports this caller's card lost


async def test_a_card_loss_call_over_twilio_media_streams(gateway: VoiceGateway) -> None:
    turns = [
        "call_card_loss_1_request.wav",
        f"keys:{CHEN.id_number}#",  # keyed: Whisper base does not read spoken ID digits at 8 kHz (docs/voice.md)
        "password_135790_spoken.wav",  # 我的密码是一三五七九零, said aloud: refused, and never stored in clear
        f"keys:{CHEN.password}#",
        "call_card_loss_3_confirm.wav",
        "call_card_loss_4_goodbye.wav",
    ]
    report = await call_and_report(gateway.url(), None, [_turn(t) for t in turns], gateway.redis_url)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    assert report["greeting_s"] > 0
    said = [t for t in report["turns"]]
    assert said[0]["intent"] == "card_loss_report" and "身份证" in said[0]["bot"]
    assert f"尾号{CHEN.id_number[-4:]}" in said[1]["bot"]
    assert "请不要说出来" in said[2]["bot"]  # the spoken password was heard as one
    assert "确认挂失吗" in said[3]["bot"]
    assert "受理编号" in said[4]["bot"]
    assert all(t["agent_audio_s"] > 1.0 and t["agent_level_dbfs"] > -40 for t in said[:5])
    assert report["ended_by"].startswith("hangup")
    r = redis.Redis.from_url(gateway.redis_url)
    record = r.hgetall(f"hotline:call:{report['call_id']}")
    assert record[b"state"] == b"ended"
    stored = b" ".join(r.lrange(f"hotline:call:{report['call_id']}:turns", 0, -1)).decode()
    heard = said[2]["recognised"] or ""
    assert "密码" in heard and "******" in heard, heard  # heard as digits after 密码, stored masked
    assert not re.search(r"[0-9一二三四五六七八九零幺洞两拐]{4}", heard), heard
    secrets = {"spoken password": "135790", "CHEN id": CHEN.id_number, "CHEN password": CHEN.password}
    assert not find("the call's turns", stored, secrets)


def _turn(item: str) -> str:
    return item if item.startswith("keys:") else wav(item)


async def test_raw_pcm_at_16_khz_understands_an_intent(gateway: VoiceGateway) -> None:
    pcm16 = _read16(first("intent", "retirement_age"))
    async with connect(gateway.url("/pcm")) as ws:
        await ws.send(json.dumps({"sampleRate": 16000, "callId": "pcm-test"}))
        heard = await _collect_agent(ws, seconds=6)  # the greeting
        assert rms_dbfs(heard) > -40
        for frame in frames(pcm16 + b"\x00" * 32000, 16000):
            await ws.send(frame)
            await asyncio.sleep(0.02)
        answer = await _collect_agent(ws, seconds=8)
        assert len(answer) / 32000 > 2 and rms_dbfs(answer) > -40
    turns = await CallStore(redis.asyncio.Redis.from_url(gateway.redis_url)).turns("pcm-pcm-test")
    assert any(t.get("kind") == "answer" and t.get("intent") == "retirement_age" for t in turns), turns


def _read16(path: str) -> bytes:
    import wave

    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000
        return w.readframes(w.getnframes())


async def _collect_agent(ws, seconds: float) -> bytes:  # type: ignore[no-untyped-def]
    heard = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await ws.recv()
                if isinstance(message, bytes):
                    heard.extend(message)
                elif heard and json.loads(message).get("type") == "hangup":
                    break
    except TimeoutError:
        pass
    return bytes(heard)


async def test_barge_in_stops_the_agent(gateway: VoiceGateway) -> None:
    caller = SimulatedCaller(gateway.url())
    report = await caller.run(
        [
            Turn(wav=first("intent", "insurance_transfer")),
            Turn(wav=first("intent", "request_human"), barge_in=True, barge_in_after_s=1.0),
        ]
    )
    barge = report.turns[1]
    assert barge.barge_in_stop_ms is not None, "no clear was sent"
    assert barge.barge_in_stop_ms < 250  # the agent holds its words at the caller's first sound
    turns = await CallStore(redis.asyncio.Redis.from_url(gateway.redis_url)).turns(caller.call_id)
    answers = [t for t in turns if t.get("kind") == "answer"]
    assert answers[-1]["intent"] == "request_human" and answers[-1]["payloads"] == ["handoff"]


async def test_a_backchannel_pauses_the_agent_which_then_carries_on(gateway: VoiceGateway) -> None:
    caller = SimulatedCaller(gateway.url())
    report = await caller.run(
        [
            Turn(wav=first("intent", "insurance_transfer")),  # a long answer
            Turn(wav=wav("backchannel_en.wav"), barge_in=True, barge_in_after_s=1.0),  # 嗯 over it
        ]
    )
    assert report.turns[1].barge_in_stop_ms is not None  # held at the first sound...
    assert report.turns[1].agent_audio_s > 3  # ...then the rest of the answer was spoken
    turns = await CallStore(redis.asyncio.Redis.from_url(gateway.redis_url)).turns(caller.call_id)
    answers = [t for t in turns if t.get("kind") == "answer"]
    assert len(answers) == 2, answers  # the greeting and the answer: 嗯 was not a turn


async def test_keypad_zero_hands_the_call_to_a_person(gateway: VoiceGateway) -> None:
    r = redis.Redis.from_url(gateway.redis_url)
    caller = SimulatedCaller(gateway.url())
    waiting = asyncio.create_task(caller.run([Turn(keys="0"), Turn(wait_s=6)]))
    key = f"hotline:call:{caller.call_id}"
    for _ in range(300):  # after the greeting (8 s) and the key 0, the call waits in the queue
        await asyncio.sleep(0.1)
        if r.hget(key, "state") == b"on_hold":
            break
    entry = {k.decode(): v.decode() for k, v in r.hgetall(f"hotline:queue:entry:{caller.call_id}").items()}
    assert entry["skill"] == "general" and json.loads(entry["card"])["reason"] == "keypad_zero", entry
    assert r.zscore("hotline:queue:general", caller.call_id) is not None
    report = await waiting
    assert report.turns[0].agent_audio_s + report.turns[1].agent_audio_s > 4  # handover words, then queue position
    turns = await CallStore(redis.asyncio.Redis.from_url(gateway.redis_url)).turns(caller.call_id)
    assert [t["payloads"] for t in turns if t.get("kind") == "answer"][-1] == ["handoff"]
    # the caller hung up while waiting: the record keeps the handover, the queue no longer holds the call
    assert json.loads(r.hget(key, "handoff"))["reason"] == "keypad_zero"
    for _ in range(30):  # the hang-up reaches the gateway a little later
        if r.zscore("hotline:queue:general", caller.call_id) is None:
            break
        await asyncio.sleep(0.1)
    assert r.zscore("hotline:queue:general", caller.call_id) is None


async def test_a_caller_who_never_speaks_is_reprompted_then_handed_over(gateway: VoiceGateway) -> None:
    caller = SimulatedCaller(gateway.url())  # the gateway under test waits 3 s for input (HOTLINE_NO_INPUT_S)
    report = await caller.run([Turn(wait_s=28)])
    assert report.turns[0].agent_audio_s > 3  # two reprompts and the handover notice were spoken
    r = redis.Redis.from_url(gateway.redis_url)
    assert json.loads(r.hget(f"hotline:call:{report.call_id}", "handoff"))["reason"] == "no_input"


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        (["not json"], 1007, "malformed JSON"),
        ([{"event": "media", "media": {"payload": "AAAA"}}], 1002, "before 'start'"),
        (
            [{"event": "start", "start": {"mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}}}],
            1003,
            "unsupported",
        ),
        (
            [
                {
                    "event": "start",
                    "streamSid": "MZ1",
                    "start": {"callSid": "CA1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
                },
                {"event": "media", "media": {"payload": "!!not base64!!"}},
            ],
            1007,
            "bad media payload",
        ),
    ],
)
async def test_bad_twilio_input_gets_a_clear_close(gateway: VoiceGateway, messages, code: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    async with connect(gateway.url()) as ws:
        for message in messages:
            await ws.send(message if isinstance(message, str) else json.dumps(message))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert closed.value.rcvd.code == code and reason in closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("first_message", "then", "code"),
    [('{"sampleRate": 11025}', None, 1003), (b"\x00\x00", None, 1002), ('{"sampleRate": 8000}', b"\x00\x00\x00", 1007)],
)
async def test_bad_pcm_input_gets_a_clear_close(gateway: VoiceGateway, first_message, then, code: int) -> None:  # type: ignore[no-untyped-def]
    async with connect(gateway.url("/pcm")) as ws:
        await ws.send(first_message)
        if then is not None:
            await ws.send(then)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert closed.value.rcvd.code == code


async def test_unauthenticated_connections_are_refused_with_a_reason(gateway: VoiceGateway) -> None:
    async with connect(gateway.url(token="")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008 and "unauthorized" in closed.value.rcvd.reason


async def test_oversized_messages_are_refused_and_other_calls_carry_on(gateway: VoiceGateway) -> None:
    async with connect(gateway.url(), max_size=None) as ws:
        await ws.send("x" * (200 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009
    report = await call_and_report(gateway.url(), None, [first("intent", "thank")], gateway.redis_url)
    assert report["greeting_s"] > 0 and report["turns"][0]["agent_audio_s"] > 0.5


async def test_a_vanished_peer_ends_its_call_and_leaks_nothing(gateway: VoiceGateway) -> None:
    ws = await connect(gateway.url())
    await ws.send(
        json.dumps(
            {
                "event": "start",
                "streamSid": "MZgone",
                "start": {"callSid": "CAgone", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
            }
        )
    )
    pcm = read_wav(first("intent", "greet"))
    for frame in list(frames(pcm, 8000))[:20]:
        await ws.send(json.dumps({"event": "media", "media": {"payload": base64.b64encode(frame[:160]).decode()}}))
    ws.transport.abort()  # no close handshake: the peer just disappears
    r = redis.Redis.from_url(gateway.redis_url)
    for _ in range(50):
        if r.hget("hotline:call:twilio-CAgone", "state") == b"ended":
            break
        await asyncio.sleep(0.1)
    assert r.hget("hotline:call:twilio-CAgone", "state") == b"ended"
    assert b"twilio-CAgone" not in r.smembers("hotline:calls:active")


async def test_hotline_call_sends_16_khz_files_over_raw_pcm(gateway: VoiceGateway) -> None:
    report = await call_and_report(gateway.url("/pcm"), None, [first("intent", "card_activation")], gateway.redis_url)
    [turn] = report["turns"]
    assert report["call_id"].startswith("pcm-")
    assert turn["intent"] == "card_activation" and "激活" in turn["bot"], turn
    assert turn["agent_audio_s"] > 3 and turn["turn_gap_ms"] is not None
