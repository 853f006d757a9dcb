"""The dialogue's processes failing under a real gateway: Rasa killed (and back), the action server killed, the
business database gone. The caller hears an apology and reaches a person, /healthz and /readyz say what is down,
and once the part is back new calls are answered by the bot again.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import redis

from hotline_domain.seed import DEMO_CALLERS
from tests.conftest import Caller
from tests.dialogue.test_conversations import spoken_digits
from tests.dialogue.test_resilience import table_offline
from tests.voice.conftest import VoiceGateway, first
from voice_gateway.stack import Stack
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn

WANG = DEMO_CALLERS[2]


def _get(gateway: VoiceGateway, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _until(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.2)


def _handoff(gateway: VoiceGateway, call_id: str) -> dict | None:
    entry = redis.Redis.from_url(gateway.redis_url).hget(f"hotline:call:{call_id}", "handoff")
    return json.loads(entry) if entry else None


async def test_rasa_killed_mid_call_apology_and_a_person_then_back(gateway: VoiceGateway, stack: Stack) -> None:
    caller = SimulatedCaller(gateway.url())
    rasa = stack.process("rasa")
    call = asyncio.create_task(caller.run([Turn(wait_s=1.0), Turn(wav=first("intent", "retirement_age"))]))
    try:
        while not caller.heard:
            await asyncio.sleep(0.05)
        assert rasa.proc is not None
        rasa.proc.kill()  # the greeting has been answered; the next turn finds no dialogue
        report = await call
        asked = report.turns[1]
        # the turn gap includes the end-of-turn silence (600 ms) and recognition: the failure itself is instant
        assert asked.turn_gap_ms is not None and asked.turn_gap_ms < 3000, asked
        assert asked.agent_audio_s > 2.0, "the apology and the transfer were heard"
        handoff = _handoff(gateway, caller.call_id)
        assert handoff is not None and handoff["reason"] == "dialogue_unavailable"
        await _until(lambda: not _get(gateway, "/healthz")[1]["dependencies"]["dialogue"]["up"])
        status, ready = _get(gateway, "/readyz")
        assert status == 503 and "dialogue down" in ready["why"]
    finally:
        await asyncio.to_thread(stack.restart, "rasa")
    await _until(lambda: _get(gateway, "/readyz")[0] == 200, timeout_s=15)
    again = SimulatedCaller(gateway.url())
    report = await again.run([Turn(wav=first("intent", "retirement_age"))])
    assert report.turns[0].agent_audio_s > 1.0 and _handoff(gateway, again.call_id) is None, "the bot is back"


async def test_the_action_server_killed_gets_an_apology_not_silence(gateway: VoiceGateway, stack: Stack) -> None:
    actions = stack.process("actions")
    assert actions.proc is not None
    actions.proc.kill()
    try:
        caller = SimulatedCaller(gateway.url())
        report = await caller.run([Turn(wav=first("intent", "card_loss_report"))])
        [asked] = report.turns
        assert asked.turn_gap_ms is not None and asked.turn_gap_ms < 3000, asked
        assert asked.agent_audio_s > 2.0, "an apology, not silence"
        handoff = _handoff(gateway, caller.call_id)
        assert handoff is not None and handoff["reason"] == "dialogue_unavailable", handoff
    finally:
        await asyncio.to_thread(stack.restart, "actions")


async def test_the_database_gone_mid_call_gets_an_apology_and_a_person(
    gateway: VoiceGateway, stack: Stack, caller: Caller
) -> None:
    assert stack.settings.db_url is not None
    await caller.say("查一下我的养老保险交了多少年")  # a verified text call first: the action server opens its database
    await caller.say(f"身份证号是{spoken_digits(WANG.id_number)}")
    await caller.keys(WANG.password + "#")
    phone = SimulatedCaller(gateway.url())
    turns = [
        Turn(wav=first("intent", "card_progress")),
        Turn(keys=f"{WANG.id_number}#"),
        Turn(keys=f"{WANG.password}#"),
    ]
    with table_offline(stack.settings.db_url, "card_orders"):  # gone when the verified caller's order is read
        report = await phone.run(turns)
    answer = report.turns[2]
    assert answer.agent_audio_s > 2.0, "an apology, not silence"
    handoff = _handoff(gateway, phone.call_id)
    assert handoff is not None and handoff["reason"] == "backend_error", handoff
