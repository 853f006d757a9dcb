"""The bridge with real audio frames: who hears whom (each speaker says its own tone), at different rates."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.unit.fakes import FakeLeg, FakePerson, dominant_hz, hears, tone
from voice_gateway.bridge import Bridge, Role, mix

RATE = 8000
CALLER_HZ, BOT_HZ, AGENT_HZ, COACH_HZ, BARGE_HZ = 300.0, 700.0, 1100.0, 1500.0, 1900.0


async def ticks(bridge: Bridge, leg: FakeLeg, n: int, *, caller_hz: float | None = CALLER_HZ) -> bytes:
    sent_before = len(leg.sent)
    for i in range(n):
        if caller_hz is not None:
            bridge.from_caller(tone(caller_hz, 20, RATE))
        await bridge.tick(i * 0.02)
    return b"".join(frame for _, frame in leg.sent[sent_before:])


class Bot(FakePerson):
    """The bot: hears the caller directly (any length), says its tone."""

    def __init__(self) -> None:
        super().__init__(Role.BOT, RATE, BOT_HZ)

    @property
    def active(self) -> bool:
        return self.says_hz is not None


def heard(person: FakePerson, skip: int = 5) -> bytes:
    """What a person heard, past the resampler's start-up."""
    return b"".join(person.heard[skip:])


async def test_a_listen_tap_hears_both_sides_and_the_caller_hears_only_the_bot() -> None:
    leg, bot, monitor = FakeLeg(RATE), Bot(), FakePerson(Role.MONITOR, 16000)
    bridge = Bridge(leg)
    bridge.attach_bot(bot)
    bridge.join(monitor)
    to_caller = await ticks(bridge, leg, 40)
    assert hears(heard(monitor), 16000, CALLER_HZ) and hears(heard(monitor), 16000, BOT_HZ)
    assert hears(to_caller, RATE, BOT_HZ) and not hears(to_caller, RATE, CALLER_HZ)
    assert bot.heard and hears(b"".join(bot.heard), RATE, CALLER_HZ) and not hears(b"".join(bot.heard), RATE, BOT_HZ)


async def test_whisper_reaches_the_agent_and_never_the_caller() -> None:
    leg = FakeLeg(RATE)
    agent = FakePerson(Role.AGENT, 48000, AGENT_HZ)
    coach = FakePerson(Role.COACH, 48000, COACH_HZ)
    bridge = Bridge(leg)
    bridge.join(agent)
    bridge.join(coach)
    to_caller = await ticks(bridge, leg, 50)
    assert hears(heard(agent), 48000, COACH_HZ) and hears(heard(agent), 48000, CALLER_HZ)
    assert not hears(heard(agent), 48000, AGENT_HZ), "nobody hears themselves"
    assert hears(to_caller, RATE, AGENT_HZ) and not hears(to_caller, RATE, COACH_HZ)
    assert hears(heard(coach), 48000, CALLER_HZ) and hears(heard(coach), 48000, AGENT_HZ)


async def test_barge_is_heard_by_both_the_caller_and_the_agent() -> None:
    leg = FakeLeg(RATE)
    agent = FakePerson(Role.AGENT, 16000, AGENT_HZ)
    barge = FakePerson(Role.BARGE, 48000, BARGE_HZ)
    bridge = Bridge(leg)
    bridge.join(agent)
    bridge.join(barge)
    to_caller = await ticks(bridge, leg, 50)
    assert hears(to_caller, RATE, BARGE_HZ) and hears(to_caller, RATE, AGENT_HZ)
    assert hears(heard(agent), 16000, BARGE_HZ) and hears(heard(agent), 16000, CALLER_HZ)
    assert hears(heard(barge), 48000, AGENT_HZ) and hears(heard(barge), 48000, CALLER_HZ)


async def test_detaching_the_bot_mid_sentence_stops_its_audio_at_the_next_frame() -> None:
    leg, bot = FakeLeg(RATE), Bot()
    bridge = Bridge(leg)
    bridge.attach_bot(bot)
    before = await ticks(bridge, leg, 10)
    assert len(before) == 10 * 320 and hears(before, RATE, BOT_HZ)
    heard_before = len(bot.heard)
    bridge.detach_bot()
    after = await ticks(bridge, leg, 10)
    assert after == b"", "not one bot frame after the detach"
    assert len(bot.heard) == heard_before, "the detached bot no longer hears the caller"
    await asyncio.sleep(0)  # the far end is told to drop what it buffered
    assert leg.clears
    bridge.reattach_bot()
    assert hears(await ticks(bridge, leg, 10), RATE, BOT_HZ)


async def test_a_person_taking_over_is_heard_by_the_caller_in_the_bots_place() -> None:
    leg, bot, agent = FakeLeg(RATE), Bot(), FakePerson(Role.AGENT, 48000, AGENT_HZ)
    bridge = Bridge(leg)
    bridge.attach_bot(bot)
    bridge.detach_bot()
    bridge.join(agent)
    to_caller = await ticks(bridge, leg, 50)
    assert hears(to_caller, RATE, AGENT_HZ) and not hears(to_caller, RATE, BOT_HZ)
    [peak] = dominant_hz(to_caller[len(to_caller) // 2 :], RATE)[:1]
    assert abs(peak - AGENT_HZ) < 30, "resampled 48 kHz -> 8 kHz at the right pitch"


def test_mixing_clips_instead_of_wrapping() -> None:
    loud = np.full(160, 30000, dtype=np.int16)
    mixed = mix([loud, loud], 160)
    assert mixed.dtype == np.int16 and int(mixed.min()) == 32767
    assert mix([], 160).tolist() == [0] * 160


async def test_the_clock_paces_frames_in_real_time_and_sleeps_when_nobody_speaks() -> None:
    leg, bot = FakeLeg(RATE), Bot()
    bridge = Bridge(leg)
    bot.says_hz = None  # silent: the clock sleeps
    bridge.attach_bot(bot)
    bridge.start()
    await asyncio.sleep(0.2)
    assert leg.sent == []
    bot.says_hz = BOT_HZ
    bridge.wake()
    await asyncio.sleep(0.5)
    await bridge.close()
    times = [at for at, _ in leg.sent]
    assert 20 <= len(times) <= 27, len(times)  # 25 frames in 0.5 s, give or take the start
    gaps = np.diff(times)
    assert float(np.median(gaps)) == pytest.approx(0.02, abs=0.004)
