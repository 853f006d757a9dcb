"""Fakes for unit tests of the call core: a caller leg, speech engines, a dialogue and a call store in memory.

Audio is real 16-bit PCM: speakers are told apart by the frequency of the tone they say (`tone`, `dominant_hz`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hotline_domain.contract import BotTurn, Handoff
from voice_gateway.audio import frame_bytes
from voice_gateway.bridge import Pacing, Role
from voice_gateway.engines import RecognizerInfo, Transcript
from voice_gateway.flow import EndReason


def tone(hz: float, ms: int, rate: int, level: float = 8000.0) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> list[float]:
    """The frequencies that carry at least a fifth of the peak energy, strongest first."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if not len(samples) or not samples.any():
        return []
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peaks = [i for i in range(1, len(spectrum) - 1) if spectrum[i] >= spectrum[i - 1] and spectrum[i] > spectrum[i + 1]]
    strong = [i for i in peaks if spectrum[i] >= spectrum.max() / 5]
    return [float(freqs[i]) for i in sorted(strong, key=lambda i: -spectrum[i])]


def hears(pcm: bytes, rate: int, hz: float, tolerance: float = 60.0) -> bool:
    return any(abs(f - hz) < tolerance for f in dominant_hz(pcm, rate))


@dataclass
class FakeLeg:
    """A caller leg that keeps what it was sent, with the time it was sent."""

    sample_rate: int = 8000
    wire: str = "fake"
    pacing: Pacing = field(default_factory=lambda: Pacing(lead_frames=0, send_silence=False))
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    hung_up: list[tuple[EndReason, str]] = field(default_factory=list)
    transfers: list[Handoff] = field(default_factory=list)
    can_transfer: bool = False

    async def send_audio(self, frame: bytes | None) -> None:
        if frame is not None:
            self.sent.append((time.monotonic(), frame))

    async def clear(self) -> None:
        self.clears.append(time.monotonic())

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        self.hung_up.append((reason, detail))

    async def transfer(self, handoff: Handoff) -> bool:
        self.transfers.append(handoff)
        return self.can_transfer

    def audio_since(self, since: float) -> bytes:
        return b"".join(frame for at, frame in self.sent if at >= since)


@dataclass
class FakePerson:
    """A person on the bridge (agent or supervisor): says a tone, keeps what it hears."""

    role: Role
    sample_rate: int = 8000
    says_hz: float | None = None
    heard: list[bytes] = field(default_factory=list)
    _phase: int = 0

    def hear(self, pcm: bytes) -> None:
        self.heard.append(pcm)

    def speak(self, due: float) -> bytes | None:
        if self.says_hz is None:
            return None
        n = frame_bytes(self.sample_rate) // 2
        t = (self._phase + np.arange(n)) / self.sample_rate
        self._phase += n
        return (8000 * np.sin(2 * np.pi * self.says_hz * t)).astype("<i2").tobytes()

    @property
    def active(self) -> bool:
        return True


class LoudVad:
    """Voiced when the frame is louder than a whisper: the fakes' tones are speech, zeros are silence."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        return bool(np.abs(np.frombuffer(frame, dtype="<i2")).mean() > 500)


class FakeUtterance:
    def __init__(self, owner: FakeRecognizer) -> None:
        self.owner = owner
        self.audio = 0

    def accept(self, pcm: bytes) -> str | None:
        self.audio += len(pcm)
        return None

    def finish(self) -> Transcript:
        if self.owner.fail:
            raise RuntimeError("the recogniser crashed")
        text = self.owner.texts.pop(0) if self.owner.texts else ""
        return Transcript(text, 0.9 if text else 0.0, text, "fake")

    def close(self) -> None:
        pass


@dataclass
class FakeRecognizer:
    """Hears each utterance as the next of `texts`; raises when `fail` is set."""

    texts: list[str] = field(default_factory=list)
    fail: bool = False
    info: RecognizerInfo = field(default_factory=lambda: RecognizerInfo("fake", False, "fake"))

    def utterance(self, sample_rate: int, hints: list[str] | None = None, *, digits: bool = False) -> FakeUtterance:
        return FakeUtterance(self)

    def warm_up(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class FakeSynthesizer:
    """Says every text as a 440 Hz tone, 20 ms per character; raises (or hangs) for texts containing `fail_on`."""

    fail_on: str | None = None
    hang: bool = False
    said: list[str] = field(default_factory=list)

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        return tone(440, 20 * max(1, len(text)), sample_rate)

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        self.said.append(text)
        if self.fail_on is not None and self.fail_on in text:
            if self.hang:
                await asyncio.sleep(3600)
            raise RuntimeError("the synthesiser crashed")
        await asyncio.sleep(0.005)
        return self.synthesize(text, sample_rate)


@dataclass
class FakeDialogue:
    """Answers each caller text with the next scripted turn (the greeting first); raises when `fail` is set."""

    answers: list[BotTurn] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    fail: bool = False

    async def send(self, sender: str, text: str) -> BotTurn:
        self.asked.append(text)
        if self.fail:
            raise ConnectionError("the dialogue server is down")
        return self.answers.pop(0) if self.answers else BotTurn(["好的。"])

    async def rewind(self, sender: str) -> None:
        pass

    async def latest_intent(self, sender: str) -> str | None:
        return "fake_intent"


class FakeRedis:
    async def set(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class FakeStore:
    """The call store in memory; every method raises while `down` is set."""

    down: bool = False
    stuck: bool = False  # the next `state` write hangs, deaf to cancellation, as a wedged client can
    writes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    redis: FakeRedis = field(default_factory=FakeRedis)

    def _write(self, name: str, *args: Any) -> None:
        if self.down:
            raise ConnectionError("Redis is down")
        self.writes.append((name, args))

    async def started(self, *args: Any) -> None:
        self._write("started", *args)

    async def state(self, *args: Any) -> None:
        if self.stuck:
            self.stuck = False
            until = time.monotonic() + 6
            while time.monotonic() < until:
                try:
                    await asyncio.sleep(until - time.monotonic())
                except asyncio.CancelledError:
                    continue
        self._write("state", *args)

    async def turn(self, *args: Any) -> None:
        self._write("turn", *args)

    async def turn_gap(self, *args: Any) -> None:
        self._write("turn_gap", *args)

    async def console_state(self, *args: Any, **fields: Any) -> None:
        self._write("console_state", *args)

    async def partial(self, *args: Any) -> None:
        self._write("partial", *args)

    async def handed_off(
        self, call_id: str, handoff: Handoff, card: Any = None, priority: bool = False, queues: Any = None
    ) -> int:
        self._write("handed_off", call_id, handoff)
        if isinstance(queues, FakeQueues):
            return await queues.enqueue(call_id, handoff.queue, card or {}, priority)
        return 1

    async def ended(self, *args: Any) -> None:
        self._write("ended", *args)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.writes if n == name]


@dataclass
class FakeQueues:
    """The skill queues in memory (one queue, in order of joining), for the hold; raises while `store.down`."""

    store: FakeStore
    waiting: list[str] = field(default_factory=list)
    wait_s: float | None = None
    agents: int = 0
    can_seal: bool = True
    callbacks: list[tuple[str, str, str]] = field(default_factory=list)  # (call_id, queue, number)
    left: list[tuple[str, bool]] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)

    def _up(self) -> None:
        if self.store.down:
            raise ConnectionError("Redis is down")

    async def enqueue(self, call_id: str, skill: Any, card: dict[str, Any], priority: bool) -> int:
        self._up()
        if call_id not in self.waiting:
            self.waiting.insert(0, call_id) if priority else self.waiting.append(call_id)
        return self.waiting.index(call_id) + 1

    async def position(self, call_id: str) -> int | None:
        self._up()
        return self.waiting.index(call_id) + 1 if call_id in self.waiting else None

    async def estimated_wait_s(self, skill: Any, position: int | None = None) -> float | None:
        self._up()
        return self.wait_s

    async def agents_available(self, skill: Any) -> int:
        self._up()
        return self.agents

    async def requeue(self, call_id: str) -> None:
        self._up()
        self.requeued.append(call_id)
        if call_id not in self.waiting:
            self.waiting.insert(0, call_id)

    async def leave(self, call_id: str, abandoned: bool) -> None:
        self._up()
        if call_id in self.waiting:
            self.waiting.remove(call_id)
            self.left.append((call_id, abandoned))

    async def add_callback(self, call_id: str, skill: Any, number: str) -> dict[str, Any]:
        self._up()
        self.callbacks.append((call_id, str(skill), number))
        return {"id": f"cb-{len(self.callbacks)}", "call_id": call_id, "number_masked": "****" + number[-4:]}


async def eventually(check: Callable[[], object], timeout_s: float = 3.0, step_s: float = 0.02) -> float:
    """Wait until `check()` is true; returns how long it took (fails the test on timeout)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {check}")
        await asyncio.sleep(step_s)
    return time.monotonic() - start


class ToneBot:
    """A bot on a call's bridge that says `frames` frames of a 440 Hz tone and keeps what it hears and the keys."""

    role = Role.BOT

    def __init__(self, sample_rate: int, frames: int = 50) -> None:
        self.sample_rate = sample_rate
        self.heard = bytearray()
        self.keys: list[str] = []
        self._frames = frames
        self._tone = tone(440, 20, sample_rate)

    async def start(self) -> None:
        pass

    def hear(self, pcm: bytes) -> None:
        self.heard.extend(pcm)

    def speak(self, due: float) -> bytes | None:
        if self._frames <= 0:
            return None
        self._frames -= 1
        return self._tone

    @property
    def active(self) -> bool:
        return self._frames > 0

    def key(self, key: str) -> None:
        self.keys.append(key)

    def person_took_over(self) -> None:
        pass

    def resumed(self) -> None:
        pass

    def closing_down(self) -> None:
        pass
