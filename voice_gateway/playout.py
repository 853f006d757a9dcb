"""The bot's voice on the bridge: each thing it says is a `SpeechHandle`, played out frame by frame.

A handle synthesises its text sentence by sentence (the first plays while the next is made) and is pulled by
the bridge's clock one 20 ms frame at a time. It can be paused (the caller may be taking the turn: the frames the
far end dropped are played again on resuming), resumed, stopped, and waited for; its outcome is PLAYED once the
last frame has reached the caller's ear, STOPPED, or FAILED (the synthesiser raised or hung) - never a dead task.
Fixed texts the agent must be able to say when the synthesiser is broken (the apology) are rendered ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from voice_gateway.audio import FRAME_MS, frames
from voice_gateway.engines import SpeechSynthesizer
from voice_gateway.speech_text import sentences

log = logging.getLogger("hotline.playout")
FRAME_S = FRAME_MS / 1000
SYNTHESIS_TIMEOUT_S = 1.5  # one sentence; espeak-ng takes ~30 ms: a synthesiser this slow is hung, not busy


class Outcome(enum.Enum):
    PLAYED = "played"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class SpeechHandle:
    """One utterance of the bot's: frames as they are synthesised, a cursor, and how it ended."""

    text: str
    utterance: int
    interruptible: bool
    frames: list[bytes] = field(default_factory=list)
    error: str = ""
    paused: bool = False
    _cursor: int = 0
    _dues: deque[float] = field(default_factory=deque)  # when the frames sent lately reach the caller's ear
    _synthesised: bool = False
    _heard_by: float | None = None  # when the last frame will have been heard
    _outcome: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def pause(self, now: float) -> None:
        """Hold the words; the frames not yet heard at `now` (dropped by the far end's `clear`) play again."""
        if self.done:
            return
        self.paused = True
        unheard = sum(1 for due in self._dues if due > now)
        self._cursor = max(0, self._cursor - unheard)
        self._dues.clear()
        self._heard_by = None

    def resume(self) -> None:
        self.paused = False

    def stop(self) -> None:
        self._finish(Outcome.STOPPED)

    async def wait(self) -> Outcome:
        return await asyncio.shield(self._outcome)

    @property
    def done(self) -> bool:
        return self._outcome.done()

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome.result() if self._outcome.done() else None

    # --- the playout's side ---
    def add(self, pcm: bytes, rate: int) -> None:
        self.frames.extend(frames(pcm, rate))

    def synthesised(self) -> None:
        self._synthesised = True

    def fail(self, error: str) -> None:
        """Synthesis failed: what was made of it still plays, then the handle ends FAILED."""
        self.error = error
        self._synthesised = True
        if not self.frames:
            self._finish(Outcome.FAILED)

    def next_frame(self, due: float) -> bytes | None:
        """The frame heard at `due`, or None (paused, or waiting for synthesis, or all of it sent)."""
        if self.done or self.paused:
            return None
        if self._cursor < len(self.frames):
            frame = self.frames[self._cursor]
            self._cursor += 1
            self._dues.append(due)
            if len(self._dues) > 50:
                self._dues.popleft()
            self._heard_by = due + FRAME_S
            return frame
        if self._synthesised and (self._heard_by is None or due >= self._heard_by):
            self._finish(Outcome.FAILED if self.error else Outcome.PLAYED)
        return None

    @property
    def started(self) -> bool:
        return self._cursor > 0

    def _finish(self, outcome: Outcome) -> None:
        if not self._outcome.done():
            self._outcome.set_result(outcome)


class Playout:
    """The bot's utterances in order, synthesised ahead, pulled by the bridge. Reports each outcome."""

    def __init__(
        self,
        synthesizer: SpeechSynthesizer,
        sample_rate: int,
        on_done: Callable[[SpeechHandle], None],
        *,
        wake: Callable[[], None] = lambda: None,
        canned: dict[tuple[str, int], bytes] | None = None,
        timeout_s: float = SYNTHESIS_TIMEOUT_S,
    ) -> None:
        self.synthesizer = synthesizer
        self.rate = sample_rate
        self.on_done = on_done  # PLAYED, STOPPED or FAILED: the flow hears of it
        self.wake = wake  # the bridge's clock, asleep while nothing is said
        self.canned = canned if canned is not None else {}  # (text, rate) -> audio, for when synthesis fails
        self.timeout_s = timeout_s
        self.queue: deque[SpeechHandle] = deque()
        self._tasks: set[asyncio.Task] = set()
        self.first_frame: Callable[[SpeechHandle], None] | None = None  # telemetry: the turn gap

    def say(self, text: str, utterance: int, *, interruptible: bool = True) -> SpeechHandle:
        handle = SpeechHandle(text, utterance, interruptible)
        self.queue.append(handle)
        task = asyncio.ensure_future(self._synthesise(handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        handle._outcome.add_done_callback(lambda _: self._finished(handle))
        self.wake()
        return handle

    @property
    def current(self) -> SpeechHandle | None:
        while self.queue and self.queue[0].done:
            self.queue.popleft()
        return self.queue[0] if self.queue else None

    @property
    def active(self) -> bool:
        return self.current is not None

    def next_frame(self, due: float) -> bytes | None:
        handle = self.current
        while handle is not None:
            frame = handle.next_frame(due)
            if frame is not None:
                if handle._cursor == 1 and self.first_frame is not None:
                    self.first_frame(handle)
                return frame
            if not handle.done:
                return None
            handle = self.current  # it just finished: the next one may have audio already
        return None

    def pause(self, now: float) -> None:
        if (handle := self.current) is not None:
            handle.pause(now)

    def resume(self) -> None:
        for handle in self.queue:
            handle.resume()
        self.wake()

    def stop(self) -> None:
        """Drop everything queued and playing."""
        for handle in list(self.queue):
            handle.stop()
        self.queue.clear()

    async def close(self) -> None:
        self.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _synthesise(self, handle: SpeechHandle) -> None:
        try:
            for piece in sentences(handle.text):
                if handle.done:
                    return
                async with asyncio.timeout(self.timeout_s):
                    pcm = await self.synthesizer.synthesize_async(piece, self.rate)
                handle.add(pcm, self.rate)
                self.wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # TtsError, a timeout, a crashed engine: the flow decides what the caller hears
            canned = self.canned.get((handle.text, self.rate))
            if canned is not None and not handle.started:
                log.warning("speech failed (%s); the prompt rendered ahead is played instead", exc)
                handle.frames = list(frames(canned, self.rate))
            else:
                log.warning("speech failed: %s", exc)
                handle.fail(f"{type(exc).__name__}: {exc}"[:200])  # the sentences made so far still play
                self.wake()
                return
        handle.synthesised()
        self.wake()

    def _finished(self, handle: SpeechHandle) -> None:
        self.wake()
        self.on_done(handle)
