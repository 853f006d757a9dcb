"""A caller on hold for a person, with fake engines, a fake leg and the queues in memory (real PCM, real time).

The position and an honest wait are said, hold music plays between the announcements, 1 takes a callback (the
number keyed as a secret, read back by its last four, confirmed), the waiting limit ends in a goodbye, and a
person taking the call stops the hold at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hotline_domain.contract import BotTurn, Handoff, HandoffQueue, HandoffReason
from tests.unit.fakes import (
    FakeDialogue,
    FakeLeg,
    FakeQueues,
    FakeRecognizer,
    FakeStore,
    FakeSynthesizer,
    LoudVad,
    eventually,
    hears,
)
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import CallFlow, CallState, EndReason, Prompts, Timing
from voice_gateway.hold import NOTES_HZ, HoldMusic
from voice_gateway.session import BotSession, SpeechEngines
from voice_gateway.vad import Endpointer

RATE = 8000
P = Prompts()
TO_CARD = Handoff(HandoffReason.CALLER_REQUEST, HandoffQueue.CARD)
HANDOFF = BotTurn.from_messages([{"text": "好的，为您转接人工客服。"}, {"custom": TO_CARD.to_payload()}])


class HoldLine:
    """One call whose greeting hands it over at once; the queues are in memory."""

    def __init__(self, leg: Any = None, **timing: float) -> None:
        self.leg = leg or FakeLeg(RATE)
        self.synthesizer = FakeSynthesizer()
        self.store = FakeStore()
        self.queues = FakeQueues(self.store, waiting=["ahead-1", "ahead-2"])
        self.speech = SpeechEngines(
            FakeRecognizer(), self.synthesizer, lambda rate: Endpointer(LoudVad(), rate, end_silence_ms=200)
        )
        defaults = {"queue_announce_s": 1.0, "queue_callback_offer_s": 180.0, "queue_limit_s": 30.0}
        self.timing = Timing(no_input_s=1.5, **{**defaults, **timing})
        self.switchboard = Switchboard(4, self._bot)
        self.bot: BotSession | None = None
        self.call: Call | None = None

    def _bot(self, call: Call) -> BotSession:
        self.call = call
        flow = CallFlow(timing=self.timing)
        dialogue = FakeDialogue([HANDOFF])
        self.bot = BotSession(call, call.bridge, RATE, "fake", self.speech, dialogue, self.store, flow, self.queues)
        call.bridge.attach_bot(self.bot)
        call.on_close.append(self.bot.close)
        return self.bot

    async def __aenter__(self) -> HoldLine:
        self._hangup = asyncio.Event()

        async def media(call: Call) -> EndReason:
            await self._hangup.wait()
            return EndReason.CALLER_HUNG_UP

        self._run = asyncio.ensure_future(self.switchboard.admit().run(self.leg, "held-1", media))
        await eventually(lambda: self.bot is not None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._hangup.set()
        await self._run

    def said(self, text: str) -> bool:
        return text in self.synthesizer.said

    async def keys(self, digits: str) -> None:
        assert self.call is not None
        for key in digits:
            self.call.key(key)
            await asyncio.sleep(0.03)

    @property
    def flow(self) -> CallFlow:
        assert self.bot is not None
        return self.bot.flow


def test_the_hold_music_is_soft_non_silent_and_loops_seamlessly() -> None:
    music = HoldMusic(RATE)
    pcm = b"".join(music.next_frame() for _ in range(150))  # 3 s, more than one loop
    assert len(pcm) == 150 * 320
    assert hears(pcm[: RATE // 2 * 2], RATE, NOTES_HZ[0], tolerance=30)
    peak = max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))
    assert 1000 < peak < 4000, peak


async def test_a_queued_caller_hears_the_position_an_honest_wait_then_hold_music_again_and_again() -> None:
    line = HoldLine()
    line.queues.wait_s, line.queues.agents = 150.0, 1
    async with line:
        await eventually(lambda: line.said("您前面还有两位。"), timeout_s=3)
        assert line.said("大约需要三分钟。") and not line.said(P.callback_offer), "a short wait: no offer"
        assert line.queues.waiting[-1] == "held-1" and line.flow.state is CallState.ON_HOLD
        assert line.bot is not None
        await eventually(lambda: line.bot is not None and line.bot.playout.current is None)
        heard = time.monotonic()
        await asyncio.sleep(0.5)
        music = line.leg.audio_since(heard)
        assert len(music) > 0.4 * RATE * 2, "the hold music keeps the line going"
        assert any(hears(music, RATE, hz, tolerance=30) for hz in NOTES_HZ)
        line.queues.waiting.remove("ahead-1")
        await eventually(lambda: line.said("您前面还有一位。"), timeout_s=3)


async def test_no_agent_free_gets_the_truth_and_a_callback_offer_then_1_registers_it() -> None:
    line = HoldLine()
    async with line:
        await eventually(lambda: line.said(P.callback_offer), timeout_s=3)
        assert line.said(P.queue_no_agent), "no estimate, no agent: said so"
        await line.keys("1")
        await eventually(lambda: line.said(P.callback_number))
        assert line.flow.expects_digits, "the number is keyed as a secret: the recorder pauses"
        assert not line.flow.hold_music
        await line.keys("13812345678#")
        await eventually(lambda: line.said(P.callback_confirm("13812345678")))
        assert "五六七八" in P.callback_confirm("13812345678") and not line.flow.expects_digits
        await line.keys("2")
        await eventually(lambda: line.synthesizer.said.count(P.callback_number) == 2)
        await line.keys("13900001234#")
        await eventually(lambda: line.said(P.callback_confirm("13900001234")))
        await line.keys("1")
        await eventually(lambda: line.leg.hung_up, timeout_s=4)
        assert line.said("好的，我们会尽快给您回电。") and line.said("感谢来电，再见。")
    assert line.queues.callbacks == [("held-1", "card", "13900001234")]
    assert line.leg.hung_up == [(EndReason.COMPLETED, "callback")]
    assert ("held-1", False) in line.queues.left, "a callback is not an abandoned call"
    assert not any("13900001234" in str(args) for _, args in line.store.writes), "the number is in no record"


async def test_the_waiting_limit_ends_in_a_last_offer_then_a_goodbye_never_in_silence() -> None:
    line = HoldLine(queue_limit_s=1.5)
    line.queues.wait_s, line.queues.agents = 60.0, 1
    async with line:
        await eventually(lambda: line.said(P.queue_limit), timeout_s=4)
        await eventually(lambda: line.leg.hung_up, timeout_s=5)
        assert line.said("没有收到您的按键，请您稍后再拨打12333。")
    assert line.leg.hung_up == [(EndReason.COMPLETED, "queue_limit")]


async def test_a_caller_hanging_up_while_waiting_has_abandoned_the_queue() -> None:
    line = HoldLine()
    async with line:
        await eventually(lambda: "held-1" in line.queues.waiting, timeout_s=3)
    assert line.queues.left == [("held-1", True)] and "held-1" not in line.queues.waiting


async def test_a_person_taking_over_stops_the_hold_within_a_frame_and_a_dropped_agent_puts_it_back() -> None:
    line = HoldLine()
    async with line:
        await eventually(lambda: line.flow.hold_music and len(line.leg.sent) > 20, timeout_s=4)
        assert line.call is not None and line.bot is not None
        line.queues.waiting.remove("held-1")  # an agent claimed it
        line.call.take_over()
        taken = time.monotonic()
        await asyncio.sleep(0.3)
        assert not [at for at, _ in line.leg.sent if at > taken + 0.021], "the hold stopped within one frame"
        assert line.flow.state is CallState.WITH_PERSON and not line.flow.hold_music
        line.call.bridge.reattach_bot()  # the agent's browser dropped (what the desk does)
        line.bot.hold_again()
        await eventually(lambda: line.said(P.back_in_queue), timeout_s=2)
        assert line.queues.requeued == ["held-1"] and line.queues.waiting[0] == "held-1"
        await eventually(lambda: line.said("您是下一位。"), timeout_s=2)
        line.call.give_back()
        await eventually(lambda: line.said(P.welcome_back), timeout_s=2)
        assert line.flow.hold is None and "held-1" not in line.queues.waiting


class FailingReferLeg(FakeLeg):
    """A phone line whose transfer (a SIP REFER) fails."""

    async def transfer(self, handoff: Handoff) -> bool:
        self.transfers.append(handoff)
        raise TimeoutError("REFER not answered")


async def test_a_failed_transfer_lands_in_the_queue() -> None:
    line = HoldLine(leg=FailingReferLeg(RATE))
    async with line:
        await eventually(lambda: line.said("您前面还有两位。"), timeout_s=3)
        assert line.leg.transfers and "held-1" in line.queues.waiting
