"""The bot's ears: caller audio -> endpointer (in real time) -> one recognition task per utterance -> events.

Endpointing runs on every 20 ms frame as it arrives, so a slow recogniser never delays a turn's end or a
barge-in. Each utterance's audio goes to its own task, which feeds the recogniser in batches from a worker
thread; transcripts reach the flow in the order the caller spoke. A recogniser that raises is reported once
as an event (`EngineFailed`), never a dead task; listening goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from voice_gateway import metrics
from voice_gateway.audio import frame_bytes
from voice_gateway.engines import PreviewingRecognizer, SpeechRecognizer, Transcript, UtteranceRecognizer
from voice_gateway.flow import EngineFailed, Event, Part, SpeechOnset, SpeechStarted, UtteranceRecognised
from voice_gateway.telemetry import CallTelemetry
from voice_gateway.vad import Endpointer

log = logging.getLogger("hotline.listening")
INBOUND_QUEUE_FRAMES = 250  # 5 s of caller audio; a peer that floods more loses the oldest frames
ASR_BATCH_MS = 100  # audio handed to the recogniser's thread in batches, not frame by frame
PARTIAL_EVERY_S = 0.5  # streaming recognisers' partial text is published at most this often
PREVIEW_AFTER_MS = 240  # a non-streaming recogniser starts on a pause this long, before the turn has ended
PREVIEW = b"preview"  # marker in an utterance's audio queue


def _finish(recognizer: UtteranceRecognizer, tail: bytes = b"") -> Transcript:
    """End of an utterance, in one thread hop: its last audio, the final transcript, the resources freed."""
    try:
        if tail:
            recognizer.accept(tail)
        return recognizer.finish()
    finally:
        recognizer.close()


class Listener:
    def __init__(
        self,
        call_id: str,
        sample_rate: int,
        recognizer: SpeechRecognizer,
        endpointer: Endpointer,
        telemetry: CallTelemetry,
        emit: Callable[[Event], None],
        expects_digits: Callable[[], bool],
        partial: Callable[[str], None],
    ) -> None:
        self.call_id = call_id
        self.rate = sample_rate
        self.recognizer = recognizer
        self.endpointer = endpointer
        self.telemetry = telemetry
        self.emit = emit
        self.expects_digits = expects_digits
        self.partial = partial  # streaming text for the consoles
        self.onset_at: float | None = None  # when the caller's current sound began
        self._inbound: asyncio.Queue[bytes] = asyncio.Queue(INBOUND_QUEUE_FRAMES)
        self._barge_in_at: float | None = None
        self._tasks: set[asyncio.Future] = set()
        self._failed = False

    def hear(self, pcm: bytes) -> None:
        """Caller audio of any length. Never blocks: a flooding peer loses its oldest audio, not the call."""
        if self._inbound.full():
            self._inbound.get_nowait()
            metrics.DROPPED_FRAMES.inc()
        self._inbound.put_nowait(pcm)

    def _spawn(self, job: Awaitable[object]) -> asyncio.Future:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        """Caller audio -> SpeechOnset / SpeechStarted events and each utterance's audio to its recognition."""
        size, pending = frame_bytes(self.rate), b""
        audio: asyncio.Queue[bytes | None] | None = None  # the current utterance's audio, None ends it
        previous: asyncio.Future | None = None  # transcripts reach the flow in the order the caller spoke
        streaming = self.recognizer.info.streaming
        try:
            while True:
                pending += await self._inbound.get()
                while len(pending) >= size:
                    frame, pending = pending[:size], pending[size:]
                    self.endpointer.digits_mode = self.expects_digits()  # longer pauses while digits are read
                    event = self.endpointer.feed(frame)
                    if event == "speech_start":
                        audio = asyncio.Queue()
                        audio.put_nowait(self.endpointer.preroll())
                        previous = self._spawn(self._recognise(audio, previous))
                        self.onset_at = time.monotonic()
                        self.emit(SpeechOnset(self.onset_at))
                    elif audio is not None:
                        audio.put_nowait(frame)
                        if self.endpointer.silence_ms == PREVIEW_AFTER_MS and not streaming:
                            audio.put_nowait(PREVIEW)
                    if audio is not None and self.endpointer.barge_in_worthy and self._barge_in_at is None:
                        self._barge_in_at = time.monotonic()
                        self.emit(SpeechStarted(self._barge_in_at))
                    if event == "speech_end" and audio is not None:
                        self.telemetry.speech_ended(time.monotonic())
                        audio.put_nowait(None)
                        audio, self._barge_in_at = None, None
        finally:
            if audio is not None:
                audio.put_nowait(None)

    async def _recognise(self, audio: asyncio.Queue[bytes | None], previous: asyncio.Future | None) -> None:
        """One utterance: audio to the recogniser in batches (bigger ones when it lags), then the transcript."""
        batch_bytes = frame_bytes(self.rate, ASR_BATCH_MS)
        partial_at, ended = 0.0, False
        began, ended_at, first = time.time(), 0.0, True  # wall clock, for the turn's place in a recording
        recognizer: UtteranceRecognizer | None = None
        try:
            recognizer = self.recognizer.utterance(self.rate, digits=self.expects_digits())
            while not ended:
                chunks, size, preview = [], 0, False
                while not ended and not preview and (size < batch_bytes or not audio.empty()):  # a batch
                    item = await audio.get()
                    if item is None:
                        ended, ended_at = True, time.time()
                    elif item is PREVIEW:
                        preview = True
                    else:
                        if first:  # the pre-roll: audio from before the start was detected
                            began, first = began - len(item) / (2 * self.rate), False
                        chunks.append(item)
                        size += len(item)
                partial = await asyncio.to_thread(recognizer.accept, b"".join(chunks)) if size and not ended else None
                if preview and self.recognizer.info.preview:  # runs beside what follows; finish() waits for it
                    self._spawn(asyncio.to_thread(cast(PreviewingRecognizer, recognizer).preview))
                if partial and time.monotonic() - partial_at > PARTIAL_EVERY_S:
                    partial_at = time.monotonic()
                    self.partial(partial)
            behind = time.monotonic() - (self.telemetry.turn.speech_end or time.monotonic())
            transcript = await asyncio.to_thread(_finish, recognizer, b"".join(chunks))
        except asyncio.CancelledError:
            if recognizer is not None:
                await asyncio.to_thread(recognizer.close)
            raise
        except Exception as exc:  # the recogniser crashed: the flow apologises and finds a person
            log.exception("call %s: recognition failed", self.call_id)
            if recognizer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(recognizer.close)
            metrics.ENGINE_FAILURES.labels("recogniser").inc()
            if not self._failed:
                self._failed = True
                self.emit(EngineFailed(Part.RECOGNISER, f"{type(exc).__name__}: {exc}"[:200], time.monotonic()))
            return
        if previous is not None:
            await asyncio.wait({previous})  # whatever became of it
        now = time.monotonic()
        recognise_s = self.telemetry.recognised(now)
        self.emit(UtteranceRecognised(transcript.text, transcript.confidence, now, transcript.unclear))
        self.telemetry.heard += 1
        heard = {
            "kind": "heard",
            "seq": self.telemetry.heard,
            "caller": transcript.text,
            "confidence": round(transcript.confidence, 3),
            "engine": transcript.engine,
            **({"unclear": True} if transcript.unclear else {}),
            "recognise_ms": round(recognise_s * 1000, 1),
            "asr_behind_ms": round(behind * 1000),  # how far recognition lagged the caller at the end of the turn
            "spoke": [round(began, 2), round(ended_at or time.time(), 2)],  # Unix seconds: the trainer's snippet
        }
        self.telemetry.write("turn", self.telemetry.store.turn, self.call_id, heard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
