"""PIPL, end to end: a scripted set of calls through a real recording gateway gives out ID numbers (spoken and
keyed), service passwords (spoken and keyed), a phone number and a callback number keyed on hold; then every
log file, what the consoles' pages are given, every Redis key and value (Rasa's included) and every recording,
decrypted, is searched for the clear values, in any written or spoken form. 0 hits. The recordings are also
checked to be silent while the ID number and the password were given."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from hotline_domain.keys import read_key_file
from hotline_domain.seed import DEMO_CALLERS
from tests.privacy_scan import Hit, file_contents, find, redis_contents
from tests.voice.conftest import VoiceGateway, wav
from voice_gateway.config import Settings
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import SkillQueues
from voice_gateway.recorder import SUFFIX, decrypt
from voice_gateway.stack import Stack, free_port, gateway_process
from voice_gateway.testing.ws_caller import PcmCaller, SimulatedCaller, Turn, TurnReport, read_wav

ZHANG, LI, WANG, LIU, CHEN = DEMO_CALLERS
PHONE = "13912345678"  # intent_inform_1.wav: 我手机号是幺三九，幺二三四，五六七八
CALLBACK = "13698765432"  # keyed on hold for a callback
SPOKEN_PASSWORD = "135790"  # password_135790_spoken.wav: 我的密码是一三五七九零 (ZHANG's)
SECRETS = {
    "ZHANG id": ZHANG.id_number,
    "WANG id": WANG.id_number,
    "ZHANG password": ZHANG.password,
    "WANG password": WANG.password,
    "spoken password": SPOKEN_PASSWORD,
    "phone": PHONE,
    "callback number": CALLBACK,
}


@pytest.fixture(scope="module")
def recording_gateway(stack: Stack, speech_models_installed: None) -> Iterator[VoiceGateway]:
    """A gateway of its own that records every call (Whisper, 600 ms endpointing, no SIP)."""
    port, token = free_port(), "privacy-token"
    process = gateway_process(
        Settings.from_env(), stack.redis_url, stack.rasa_url, port, token, console_port=free_port()
    )
    process.name = "gateway-privacy"
    process.log_path = process.log_path.with_name("gateway-privacy.log")
    engine = {"HOTLINE_ASR": "whisper", "HOTLINE_SIP_PORT": "0", "HOTLINE_RECORDING": "1"}
    process.env = {**(process.env or {}), **engine}
    process.start()
    yield VoiceGateway(process, port, token, stack.redis_url, stack.rasa_url, 0, 0, "")  # no SIP, consoles unused
    process.stop()


@dataclass
class Unless(Turn):
    """A turn taken only if the agent's last answer does not contain `said` (recognition of a spoken ID number
    is not reliable: if the agent did not take it, the caller keys it in, as callers do)."""

    said: str = ""


@dataclass
class Span:
    turn: Turn
    start: float  # seconds from the call's start, as the caller counts
    end: float


class TimedMixin:
    """A simulated caller that notes when it spoke or keyed each turn (the recording's timeline), and skips an
    `Unless` turn when the agent's last answer (from the call's record in Redis) says what it waits for."""

    spans: list[Span]
    skipped: list[Turn]
    redis_url: str
    call_id: str
    _t0: float

    async def run(self, turns: list[Turn], **kwargs: Any) -> Any:
        self.spans, self.skipped, self._t0 = [], [], time.monotonic()
        return await super().run(turns, **kwargs)  # type: ignore[misc]

    async def _caller_turn(self, ws: Any, turn: Turn, *args: Any) -> Any:
        if isinstance(turn, Unless) and turn.said in _last_answer(redis.Redis.from_url(self.redis_url), self.call_id):
            self.skipped.append(turn)
            return TurnReport(said="[skipped]")
        start = time.monotonic() - self._t0
        length = len(read_wav(Path(turn.wav), self.rate)) / 2 / self.rate if turn.wav else 0.15 * len(turn.keys or "")
        self.spans.append(Span(turn, start, start + length))
        return await super()._caller_turn(ws, turn, *args)  # type: ignore[misc]

    rate: int


class TimedPcmCaller(TimedMixin, PcmCaller):
    pass


class TimedTwilioCaller(TimedMixin, SimulatedCaller):
    pass


def _turns(*items: str | Turn) -> list[Turn]:
    def turn(item: str | Turn) -> Turn:
        if isinstance(item, Turn):
            return item
        return Turn(keys=item[5:]) if item.startswith("keys:") else Turn(wav=wav(item))

    return [turn(item) for item in items]


def _last_answer(r: redis.Redis, call_id: str) -> str:
    answers = [json.loads(t) for t in r.lrange(f"hotline:call:{call_id}:turns", 0, -1)]
    return next((a.get("bot") or "" for a in reversed(answers) if a.get("kind") == "answer"), "")


SECRET_WAVS = {"id_110105_yao_grouped.wav", "id_440106_yao_grouped.wav", "password_135790_spoken.wav"}


async def _recording(r: redis.Redis, call_id: str) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        saved = r.hget(f"hotline:call:{call_id}", "recording")
        if saved:
            return Path(saved.decode())
        await asyncio.sleep(0.2)
    raise AssertionError(f"no recording for {call_id}")


async def _console_views(redis_url: str) -> str:
    """What the consoles' pages are given (the same backend the routes call): every live call, the queues with
    the callbacks, and each call's context card, as JSON text."""
    client = AsyncRedis.from_url(redis_url)
    try:
        backend = RedisBackend(client, SkillQueues(client))
        calls = await backend.calls()
        supervisor = ConsoleUser(0, "privacy", Role.SUPERVISOR)
        cards = [await backend.card(supervisor, c["call_id"]) for c in calls]
        return json.dumps([calls, await backend.queue(), cards], ensure_ascii=False)
    finally:
        await client.aclose()


def _bot_said(r: redis.Redis, call_id: str) -> str:
    return " ".join(t.decode() for t in r.lrange(f"hotline:call:{call_id}:turns", 0, -1))


async def test_no_clear_personal_data_in_logs_redis_or_recordings(
    recording_gateway: VoiceGateway, stack: Stack
) -> None:
    # 1. wideband (16 kHz): the ID number spoken, the password spoken (refused) and then keyed, a phone number
    wideband = TimedPcmCaller(recording_gateway.url("/pcm"))
    wideband.redis_url = recording_gateway.redis_url
    await wideband.run(
        _turns(
            "intent_query_pension_contribution_1.wav",  # 帮我看看我社保到现在交够十五年没有？
            "id_110105_yao_grouped.wav",  # ZHANG's ID, spoken
            Unless(keys=f"{ZHANG.id_number}#", said="服务密码"),  # keyed, if it was not heard right
            "password_135790_spoken.wav",  # 我的密码是一三五七九零: refused, the keypad is asked for
            f"keys:{ZHANG.password}#",
            "intent_inform_1.wav",  # 我手机号是幺三九，幺二三四，五六七八
            "call_card_loss_4_goodbye.wav",
        )
    )
    # 2. a telephone line (Twilio, 8 kHz mu-law): the ID number spoken (misheard at 8 kHz: asked again), then
    # keyed, the password keyed, the phone number said
    phone = TimedTwilioCaller(recording_gateway.url("/twilio"))
    phone.redis_url = recording_gateway.redis_url
    await phone.run(
        _turns(
            "intent_card_progress_1.wav",
            "id_440106_yao_grouped.wav",  # WANG's ID, spoken
            Unless(keys=f"{WANG.id_number}#", said="服务密码"),
            f"keys:{WANG.password}#",
            "intent_inform_1.wav",
            "call_card_loss_4_goodbye.wav",
        )
    )
    # 3. on hold for a person: a callback number keyed and confirmed (sealed in Redis, masked on the consoles)
    waiting = TimedTwilioCaller(recording_gateway.url("/twilio"))
    waiting.redis_url = recording_gateway.redis_url
    await waiting.run(
        _turns("intent_request_human_1.wav", Turn(wait_s=1.5), "keys:1", f"keys:{CALLBACK}#", "keys:1", Turn(wait_s=4))
    )
    r = redis.Redis.from_url(recording_gateway.redis_url)
    consoles = await _console_views(recording_gateway.redis_url)
    assert "136****5432" in consoles, "the callback was not registered"
    for caller in (wideband, phone):
        print(f"{caller.call_id}: the spoken ID number was {'keyed again' if not caller.skipped else 'heard right'}")
    said = _bot_said(r, wideband.call_id)
    assert "尾号1230" in said and "请不要说出来" in said and "身份验证通过" in said, said  # heard right, then masked
    assert "身份验证通过" in _bot_said(r, phone.call_id)

    # search: the stack's logs, Redis, the recordings (decrypted)
    var = stack.settings.var_dir
    key = read_key_file(Path((recording_gateway.process.env or {})["HOTLINE_RECORDING_KEY_FILE"]))
    recordings = {call.call_id: await _recording(r, call.call_id) for call in (wideband, phone)}
    await asyncio.sleep(0.5)
    hits: list[Hit] = []
    views = [("consoles: /api/calls, /api/queue, the cards", consoles)]
    for where, text in [*file_contents(var / "log"), *redis_contents(recording_gateway.redis_url), *views]:
        hits += find(where, text, SECRETS)
    all_recordings = sorted((var / "recordings").glob(f"*{SUFFIX}"))
    assert set(recordings.values()) <= set(all_recordings)
    for path in all_recordings:
        recording = decrypt(path, key)
        hits += find(str(path), str(recording.meta) + recording.stereo.tobytes().decode(errors="replace"), SECRETS)
    assert not hits, "clear personal data:\n" + "\n".join(f"{h.where}: {h.what} in ...{h.context}..." for h in hits)

    # the recordings are silent while the ID number and the password were given, and only then
    for caller in (wideband, phone):
        recording = decrypt(recordings[caller.call_id], key)
        assert recording.complete and recording.rate == caller.rate
        for span in caller.spans:
            first, last = (round(t * recording.rate) for t in (span.start + 0.3, span.end - 0.3))
            if last <= first:
                continue
            stretch = recording.stereo[first:last]
            name = Path(span.turn.wav).name if span.turn.wav else f"keys {len(span.turn.keys or '')}"
            secret = span.turn.keys is not None or name in SECRET_WAVS
            if secret:
                assert not stretch.any(), f"{caller.call_id}: {name} at {span.start:.1f} s is in the recording"
            elif name != "call_card_loss_4_goodbye.wav":  # the goodbye may meet the hang-up
                level = float(np.sqrt(np.mean(stretch[:, 0].astype(np.float64) ** 2)))
                assert level > 100, f"{caller.call_id}: {name} at {span.start:.1f} s missing from the recording"
