"""A call's bridge: routes 20 ms frames between the caller leg and the call's participants, on one clock.

Participants are the bot (the automated agent: listening and playout), a human agent, and supervisors who
listen in (MONITOR), whisper to the agent (COACH) or barge in (BARGE). Who hears whom:

    speaker   heard by
    caller    bot, agent, monitor, coach, barge
    bot       caller, agent, monitor, coach, barge
    agent     caller, monitor, coach, barge
    coach     agent                       (whisper: never the caller, never a transcript)
    barge     caller, agent, monitor, coach
    monitor   nobody

The bot hears the caller directly, as the audio arrives (endpointing must not wait for a clock tick); everyone
else hears a mix made once per tick at the caller's rate (numpy, int32 sum, clipped), resampled with soxr for
participants at other rates (a browser at 48 kHz, the caller at 8 kHz). The clock sends the caller one frame
per tick, up to `Pacing.lead_frames` ahead of real time: wires whose far end buffers (Twilio, raw PCM) get a
little ahead so that a busy event loop does not break the audio, RTP none (its far end plays what it gets).
With only the bot on the bridge and nothing to say, the clock sleeps until there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import soxr

from voice_gateway.audio import FRAME_MS, frame_bytes

if TYPE_CHECKING:
    from voice_gateway.calls import CallerLeg

log = logging.getLogger("hotline.bridge")
FRAME_S = FRAME_MS / 1000
CALLER_BUFFER_FRAMES = 10  # caller audio waiting for the people's mix; more means the clock is starved: drop
STARVED_S = 0.2  # a clock this late starts afresh rather than bursting out what it owes


@dataclass(frozen=True)
class Pacing:
    """How a wire wants the call's audio paced."""

    lead_frames: int  # how far ahead of real time the far end may be given audio (it buffers; `clear` drops it)
    send_silence: bool  # the wire wants a frame every 20 ms (RTP): `send_audio(None)` when nobody speaks


class Role(enum.Enum):
    CALLER = "caller"
    BOT = "bot"
    AGENT = "agent"
    MONITOR = "monitor"  # listens to both sides
    COACH = "coach"  # whispers to the agent
    BARGE = "barge"  # three-way: heard by the caller and the agent


AUDIENCE: dict[Role, frozenset[Role]] = {
    Role.CALLER: frozenset({Role.BOT, Role.AGENT, Role.MONITOR, Role.COACH, Role.BARGE}),
    Role.BOT: frozenset({Role.CALLER, Role.AGENT, Role.MONITOR, Role.COACH, Role.BARGE}),
    Role.AGENT: frozenset({Role.CALLER, Role.MONITOR, Role.COACH, Role.BARGE}),
    Role.COACH: frozenset({Role.AGENT}),
    Role.BARGE: frozenset({Role.CALLER, Role.AGENT, Role.MONITOR, Role.COACH}),
    Role.MONITOR: frozenset(),
}


class Participant(Protocol):
    """Someone on the bridge besides the caller. Frames are 20 ms of 16-bit mono PCM at `sample_rate`."""

    role: Role
    sample_rate: int

    def hear(self, pcm: bytes) -> None:
        """What this participant hears (the bot: caller audio as it arrives; others: one mixed frame per tick)."""
        ...

    def speak(self, due: float) -> bytes | None:
        """Its next frame, which reaches the caller's ear at `due` (monotonic seconds), or None when silent."""
        ...

    @property
    def active(self) -> bool:
        """Has something to say, or is waiting for its words to be heard: the clock must keep running."""
        ...


class _Port:
    """One participant's connection: resampling both ways and re-framing at the caller's rate."""

    def __init__(self, participant: Participant, caller_rate: int) -> None:
        self.participant = participant
        self.rate = participant.sample_rate
        self.caller_rate = caller_rate
        same = self.rate == caller_rate
        self._in = None if same else soxr.ResampleStream(self.rate, caller_rate, 1, dtype="int16", quality="HQ")
        self._out = None if same else soxr.ResampleStream(caller_rate, self.rate, 1, dtype="int16", quality="HQ")
        self._said = np.zeros(0, dtype=np.int16)  # what it said, at the caller's rate, not yet mixed
        self._size = frame_bytes(caller_rate) // 2

    def said(self, due: float) -> np.ndarray | None:
        """Its frame for this tick at the caller's rate, or None."""
        pcm = self.participant.speak(due)
        if pcm is not None:
            samples = np.frombuffer(pcm, dtype="<i2")
            if self._in is not None:
                samples = self._in.resample_chunk(samples)
            self._said = np.concatenate([self._said, samples])
        if len(self._said) < self._size:
            return None
        frame, self._said = self._said[: self._size], self._said[self._size :]
        return frame

    def deliver(self, mix: np.ndarray) -> None:
        if self._out is not None:
            mix = self._out.resample_chunk(mix)
            if not len(mix):
                return
        self.participant.hear(mix.astype("<i2").tobytes())


def mix(frames: list[np.ndarray], size: int) -> np.ndarray:
    """The sum of `frames`, clipped to 16 bits (silence when there are none)."""
    if not frames:
        return np.zeros(size, dtype=np.int16)
    if len(frames) == 1:
        return frames[0]
    total = np.sum(np.stack(frames).astype(np.int32), axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)


class Bridge:
    """One call's audio routing and outbound clock. Caller audio comes in by `from_caller`; the clock sends."""

    def __init__(self, leg: CallerLeg) -> None:
        self.leg = leg
        self.rate = leg.sample_rate
        self.bot: Participant | None = None
        self.bot_attached = False
        self.on_failure: Callable[[BaseException], None] | None = None  # the call ends on a broken clock
        self.recorder: AudioSink | None = None  # both sides, as the caller heard them
        self.frames_out = 0  # frames with someone's audio sent to the caller
        self._ports: dict[int, _Port] = {}  # everyone but the bot and the caller, by id()
        self._caller: deque[np.ndarray] = deque(maxlen=CALLER_BUFFER_FRAMES)
        self._size = frame_bytes(self.rate) // 2
        self._wake = asyncio.Event()
        self._clock: asyncio.Task | None = None
        self._last_due = 0.0

    # --- participants ---
    def attach_bot(self, bot: Participant) -> None:
        self.bot, self.bot_attached = bot, True
        self.wake()

    def detach_bot(self) -> None:
        """A person takes over: the bot neither hears nor is heard from the next frame on."""
        self.bot_attached = False
        self._spawn_clear()

    def reattach_bot(self) -> None:
        self.bot_attached = self.bot is not None
        self.wake()

    def join(self, participant: Participant) -> None:
        self._ports[id(participant)] = _Port(participant, self.rate)
        self.wake()

    def leave(self, participant: Participant) -> None:
        self._ports.pop(id(participant), None)

    @property
    def people(self) -> list[Participant]:
        return [port.participant for port in self._ports.values()]

    # --- caller audio in ---
    def from_caller(self, pcm: bytes) -> None:
        """Caller audio of any length: to the bot at once, to the people at the next ticks. Never blocks."""
        if self.recorder is not None:
            self.recorder.caller(pcm, time.monotonic())
        if self.bot is not None and self.bot_attached:
            self.bot.hear(pcm)
        if self._ports:
            samples = np.frombuffer(pcm, dtype="<i2")
            for start in range(0, len(samples) - self._size + 1, self._size):
                self._caller.append(samples[start : start + self._size])

    # --- the clock ---
    def start(self) -> None:
        self._clock = asyncio.ensure_future(self._run())

    def wake(self) -> None:
        self._wake.set()

    def ahead_frames(self, now: float | None = None) -> int:
        """Frames sent to the caller that they have not heard yet (what a `clear` drops at the far end)."""
        now = time.monotonic() if now is None else now
        return max(0, round((self._last_due - now) / FRAME_S))

    async def clear_caller(self) -> None:
        """Tell the far end to drop what it buffered (barge-in, take-over)."""
        with contextlib.suppress(Exception):
            await self.leg.clear()

    def _spawn_clear(self) -> None:
        if self.ahead_frames() or not self.leg.pacing.send_silence:
            task = asyncio.ensure_future(self.clear_caller())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _idle(self) -> bool:
        bot_active = self.bot is not None and self.bot_attached and self.bot.active
        return not (bot_active or self._ports or self.leg.pacing.send_silence)

    async def _run(self) -> None:
        lead_s = self.leg.pacing.lead_frames * FRAME_S
        due = time.monotonic()
        try:
            while True:
                if self._idle():
                    self._wake.clear()
                    if self._idle():
                        await self._wake.wait()
                    due = max(due, time.monotonic())
                ahead = due - time.monotonic()
                if ahead > lead_s:
                    await asyncio.sleep(ahead - lead_s)
                await self.tick(due)
                due += FRAME_S
                if due < time.monotonic() - STARVED_S:
                    due = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("bridge clock failed")
            if self.on_failure is not None:
                self.on_failure(exc)

    async def tick(self, due: float) -> None:
        """One frame: everyone's next words, mixed for each listener; the caller's share sent to the caller."""
        spoken = self.bot.speak(due) if self.bot is not None and self.bot_attached else None
        out = self._mix_for_people(due, spoken) if self._ports else spoken  # the bot alone: no mixing
        self._last_due = due + FRAME_S
        if out is not None:
            self.frames_out += 1
            if self.recorder is not None:
                self.recorder.agent(out, due)
            await self.leg.send_audio(out)
        elif self.leg.pacing.send_silence:
            await self.leg.send_audio(None)

    def _mix_for_people(self, due: float, spoken: bytes | None) -> bytes | None:
        sources: list[tuple[Role, int, np.ndarray]] = []  # (role, who, frame at the caller's rate)
        if self._caller:
            sources.append((Role.CALLER, 0, self._caller.popleft()))
        if spoken is not None:
            sources.append((Role.BOT, 1, np.frombuffer(spoken, dtype="<i2")))
        for who, port in list(self._ports.items()):
            frame = port.said(due)
            if frame is not None:
                sources.append((port.participant.role, who, frame))
        for who, port in list(self._ports.items()):
            role = port.participant.role
            port.deliver(mix([f for r, w, f in sources if role in AUDIENCE[r] and w != who], self._size))
        heard = [f for r, _, f in sources if Role.CALLER in AUDIENCE[r]]
        return mix(heard, self._size).tobytes() if heard else None

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._clock
            self._clock = None


class AudioSink(Protocol):
    """Both sides of the call as the caller heard it (the call recorder)."""

    def caller(self, pcm: bytes, at: float) -> None: ...

    def agent(self, pcm: bytes, at: float) -> None: ...
