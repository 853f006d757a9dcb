"""The bot on a bridged call, with fake engines and a fake caller leg (real PCM, real time, real asyncio).

Every failure of a part must reach the caller as an apology and a person, within 2 s, never as silence.
"""

from __future__ import annotations

import time

import pytest

from hotline_domain.contract import BotTurn, Handoff, HandoffReason
from tests.unit.fakes import (
    FakeDialogue,
    FakeLeg,
    FakeRecognizer,
    FakeStore,
    FakeSynthesizer,
    LoudVad,
    eventually,
    tone,
)
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import CallFlow, CallState, EndReason, Prompts
from voice_gateway.session import BotSession, SpeechEngines
from voice_gateway.vad import Endpointer

RATE = 8000
APOLOGY = Prompts().dialogue_down


class Line:
    """One call on a switchboard with the bot attached: the test speaks into it and reads what the caller got."""

    def __init__(self, *, texts: list[str] | None = None, answers: list[BotTurn] | None = None) -> None:
        self.leg = FakeLeg(RATE)
        self.recognizer = FakeRecognizer(list(texts or []))
        self.synthesizer = FakeSynthesizer()
        self.dialogue = FakeDialogue(list(answers or []))
        self.store = FakeStore()
        canned = {(APOLOGY, RATE): tone(300, 400, RATE)}  # the apology rendered ahead: a 300 Hz tone
        self.speech = SpeechEngines(
            self.recognizer, self.synthesizer, lambda rate: Endpointer(LoudVad(), rate, end_silence_ms=200), canned
        )
        self.switchboard = Switchboard(4, self._bot)
        self.bot: BotSession | None = None
        self.call: Call | None = None

    def _bot(self, call: Call) -> BotSession:
        self.call = call
        self.bot = BotSession(call, call.bridge, RATE, "fake", self.speech, self.dialogue, self.store, CallFlow())
        call.bridge.attach_bot(self.bot)
        call.on_close.append(self.bot.close)
        return self.bot

    async def __aenter__(self) -> Line:
        import asyncio

        self._hangup = asyncio.Event()

        async def media(call: Call) -> EndReason:
            await self._hangup.wait()
            return EndReason.CALLER_HUNG_UP

        self._run = asyncio.ensure_future(self.switchboard.admit().run(self.leg, "fake-1", media))
        await eventually(lambda: self.bot is not None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._hangup.set()
        await self._run

    async def speak(self, ms: int = 600, hz: float = 200) -> None:
        """The caller says something (a tone), then is silent long enough for the turn to end."""
        import asyncio

        assert self.call is not None
        for chunk in (tone(hz, ms, RATE), bytes(2 * RATE // 2)):
            for start in range(0, len(chunk), 320):
                self.call.audio(chunk[start : start + 320])
                await asyncio.sleep(0.02)

    def handed_over(self) -> Handoff | None:
        handoffs = self.store.named("handed_off")
        return handoffs[-1][1] if handoffs else None


async def test_the_greeting_then_an_answer_reach_the_caller() -> None:
    async with Line(texts=["我社保卡丢了"], answers=[BotTurn(["您好。"]), BotTurn(["请说身份证号。"])]) as line:
        await eventually(lambda: line.leg.sent)
        assert line.dialogue.asked == ["/greet"]
        await eventually(lambda: line.bot and line.bot.flow.state is CallState.LISTENING)
        await line.speak()
        await eventually(lambda: "我社保卡丢了" in line.dialogue.asked)
        await eventually(lambda: "请说身份证号。" in line.synthesizer.said)
    assert line.store.named("ended")[0][1] == "caller_hung_up"


@pytest.mark.parametrize("part", ["synthesiser", "recogniser", "dialogue"])
async def test_a_failing_part_gets_an_apology_and_a_person_within_2_s(part: str) -> None:
    async with Line(texts=["我要查养老金"], answers=[BotTurn(["您好。"]), BotTurn(["这个答案会出错。"])]) as line:
        await eventually(lambda: line.bot and line.bot.flow.state is CallState.LISTENING)
        if part == "synthesiser":
            line.synthesizer.fail_on = "会出错"  # mid-answer: its second sentence cannot be made either
        elif part == "recogniser":
            line.recognizer.fail = True
        else:
            line.dialogue.fail = True
        await line.speak()
        ended_at = time.monotonic()
        took = await eventually(lambda: line.handed_over() is not None, timeout_s=2.0)
        handoff = line.handed_over()
        assert handoff is not None and handoff.reason is HandoffReason(f"{part}_unavailable")
        # the caller hears the apology: synthesised, or (the synthesiser being broken) the one rendered ahead
        if part == "synthesiser":
            await eventually(lambda: any(at >= ended_at for at, _ in line.leg.sent))
        else:
            assert APOLOGY in line.synthesizer.said
        assert line.bot is not None and line.bot.flow.state is CallState.ON_HOLD
    assert took < 2.0


async def test_a_hanging_synthesiser_is_not_waited_on_for_ever() -> None:
    line = Line(answers=[BotTurn(["您好，这句会卡住。"])])
    line.synthesizer.fail_on, line.synthesizer.hang = "卡住", True
    async with line:
        await eventually(lambda: line.handed_over() is not None, timeout_s=2.0)
        handoff = line.handed_over()
        assert handoff is not None and handoff.reason is HandoffReason.SYNTHESISER_UNAVAILABLE
        await eventually(lambda: line.leg.sent)  # the apology rendered ahead reached the caller


async def test_redis_down_mid_call_hands_over_and_the_record_is_written_once_it_is_back() -> None:
    async with Line(texts=["我要查养老金"]) as line:
        await eventually(lambda: line.bot and line.bot.flow.state is CallState.LISTENING)
        line.store.down = True
        await line.speak()
        await eventually(lambda: line.bot is not None and line.bot.flow.state is CallState.ON_HOLD, timeout_s=2.0)
        assert APOLOGY in line.synthesizer.said
        await eventually(lambda: Prompts().transferring in line.synthesizer.said)  # no queue position without Redis
        line.store.down = False
        await eventually(lambda: line.handed_over() is None and line.store.named("turn"), timeout_s=3.0)
    assert line.store.named("ended"), "the end of the call is recorded once Redis is back"


async def test_a_person_taking_over_stops_the_bot_within_one_frame_and_can_give_it_back() -> None:
    long_answer = BotTurn(["这是一个很长很长的回答，" * 10])
    async with Line(answers=[long_answer, BotTurn(["好的。"])]) as line:
        await eventually(lambda: len(line.leg.sent) > 10)  # the bot is talking
        assert line.call is not None
        line.call.take_over()
        stopped = time.monotonic()
        import asyncio

        await asyncio.sleep(0.3)
        late = [at for at, _ in line.leg.sent if at > stopped + 0.021]
        assert not late, f"{len(late)} frames after the take-over"
        assert line.bot is not None and line.bot.flow.state is CallState.WITH_PERSON
        line.call.give_back()
        await eventually(lambda: Prompts().welcome_back in line.synthesizer.said)
        await eventually(lambda: any(at > stopped + 0.3 for at, _ in line.leg.sent))


async def test_the_dialogue_saying_goodbye_hangs_up_on_the_wire_after_the_record() -> None:
    goodbye = BotTurn.from_messages(
        [{"text": "感谢您的来电，再见。"}, {"custom": {"hangup": {"reason": "caller_done"}}}]
    )
    async with Line(answers=[goodbye]) as line:
        await eventually(lambda: line.leg.hung_up, timeout_s=3.0)
        assert line.leg.hung_up == [(EndReason.COMPLETED, "caller_done")]
        assert line.store.named("ended")[0][1:] == ("completed", "caller_done")


async def test_a_wedged_redis_client_never_keeps_a_call_open_and_the_end_is_still_recorded() -> None:
    line = Line(texts=["我要查养老金"])
    async with line:
        await eventually(lambda: line.bot and line.bot.flow.state is CallState.LISTENING)
        line.store.stuck = True  # the next state write never returns
        await line.speak()
        await eventually(lambda: line.dialogue.asked[-1:] == ["我要查养老金"])
        hung_up = time.monotonic()
    assert line.call is not None and line.call.ended
    assert time.monotonic() - hung_up < 5.0, "the call closed in bounded time"
    assert line.store.named("ended"), "the end was written around the stuck writer"
