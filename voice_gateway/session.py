"""One call: the I/O around `CallFlow`. It owns the call's tasks and queues and cancels them all on hang-up.

Transports feed it caller audio (16-bit PCM at the transport's rate, in frames) and key presses, and give it a
way back (send audio, clear queued audio, hang up). Blocking engines run in worker threads; the event loop only
moves frames and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hotline_domain.keypad import keypad_message, put_secret_digits_async
from voice_gateway import metrics
from voice_gateway.audio import FRAME_MS, frame_bytes, frames
from voice_gateway.call import (
    AskDialogue,
    CallerHungUp,
    CallFlow,
    CallStarted,
    Command,
    DialogueAnswered,
    DialogueFailed,
    Event,
    HandOver,
    HangUp,
    KeyPressed,
    PauseSpeaking,
    PlaybackFinished,
    ResumeSpeaking,
    Say,
    SendKeys,
    SpeechOnset,
    SpeechStarted,
    StopSpeaking,
    Tick,
    UtteranceRecognised,
)
from voice_gateway.engines import SpeechRecognizer, SpeechSynthesizer, Transcript, UtteranceRecognizer
from voice_gateway.rasa_client import DialogueError, RasaClient
from voice_gateway.recording import CallRecorder
from voice_gateway.records import CallRecords
from voice_gateway.speech_text import sentences
from voice_gateway.vad import Endpointer

log = logging.getLogger("hotline.call")

INBOUND_QUEUE_FRAMES = 250  # 5 s of caller audio; a peer that floods more loses the oldest frames
PLAYBACK_LEAD_S = 0.1  # agent audio is sent at most this far ahead of real time, so a barge-in stops it fast
ASR_BATCH_MS = 100  # audio handed to the recogniser's thread in batches, not frame by frame
PARTIAL_EVERY_S = 0.5  # streaming recognisers' partial text is published at most this often
PREVIEW_AFTER_MS = 240  # a non-streaming recogniser starts on a pause this long, before the turn has ended
PREVIEW = b"preview"  # marker in an utterance's audio queue


class CallTransport(Protocol):
    """What a transport offers the session: a way back to the caller."""

    sample_rate: int

    async def send_audio(self, pcm: bytes) -> None: ...

    async def clear(self) -> None: ...

    async def hang_up(self, reason: str) -> None: ...

    # Optional: `async def transfer(self, payload: dict) -> bool`, a transport that can pass the call to a person
    # itself (SIP REFER) does so on handover and returns True; otherwise the caller hears their queue position.


@dataclass
class Engines:
    """What every call of a gateway shares: loaded once per process."""

    recognizer: SpeechRecognizer
    synthesizer: SpeechSynthesizer
    dialogue: RasaClient
    records: CallRecords
    make_endpointer: Callable[[int], Endpointer]  # sample rate -> a fresh endpointer for one call


def _finish(recognizer: UtteranceRecognizer, tail: bytes = b"") -> Transcript:
    """End of an utterance, in one thread hop: its last audio, the final transcript, the resources freed."""
    try:
        if tail:
            recognizer.accept(tail)
        return recognizer.finish()
    finally:
        recognizer.close()


@dataclass
class TurnTimes:
    speech_end: float | None = None
    recognised: float | None = None
    answered: float | None = None
    first_audio: float | None = None


@dataclass
class CallSession:
    call_id: str
    transport: CallTransport
    engines: Engines
    transport_name: str
    flow: CallFlow = field(default_factory=CallFlow)
    _inbound: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(INBOUND_QUEUE_FRAMES))
    _playback: asyncio.Queue = field(default_factory=asyncio.Queue)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _events: asyncio.Queue = field(default_factory=asyncio.Queue)
    _turn: TurnTimes = field(default_factory=TurnTimes)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _barge_in_at: float | None = None
    _onset_at: float | None = None  # when the caller's current sound began
    _may_play: asyncio.Event = field(default_factory=asyncio.Event)  # cleared while the agent holds its words
    _heard: int = 0  # utterances recognised so far (the `seq` of "heard" records)
    _player: asyncio.Task | None = None  # plays the agent's audio; restarted on barge-in
    recorder: CallRecorder | None = None  # both sides to a WAV, when the operator records calls

    # --- called by the transport ---
    async def start(self) -> None:
        self._may_play.set()
        await self.engines.records.started(self.call_id, self.transport_name)
        metrics.ACTIVE_CALLS.inc()
        self._player = asyncio.create_task(self._play())
        for job in (self._listen(), self._run_flow(), self._clock()):
            self._tasks.append(asyncio.create_task(job))
        self._tasks.append(self._player)
        await self._events.put(CallStarted(time.monotonic()))
        log.info("call %s started on %s", self.call_id, self.transport_name)

    def audio(self, pcm: bytes) -> None:
        """Caller audio from the transport (any length; cut into 20 ms frames here). Never blocks."""
        if self.recorder is not None:
            self.recorder.caller(pcm, time.monotonic())
        if self._inbound.full():
            self._inbound.get_nowait()  # flooding: drop the oldest, keep the call alive
            metrics.DROPPED_FRAMES.inc()
        self._inbound.put_nowait(pcm)

    def key(self, key: str) -> None:
        self._events.put_nowait(KeyPressed(key, time.monotonic()))

    async def close(self, reason: str) -> None:
        """The call is over (either side hung up, or the transport failed): stop everything, keep the record."""
        if self._ended.is_set():
            return
        self._ended.set()
        self.flow.handle(CallerHungUp(time.monotonic()))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await self.engines.records.ended(self.call_id, reason)
        if self.recorder is not None:
            try:
                saved = await asyncio.to_thread(self.recorder.save)
                if saved is not None:
                    await self.engines.records.redis.hset(f"hotline:call:{self.call_id}", "recording", str(saved))
            except Exception:  # a full disk loses the recording, never the call's record
                log.exception("call %s: recording not saved", self.call_id)
        metrics.ACTIVE_CALLS.dec()
        log.info("call %s ended: %s", self.call_id, reason)

    async def wait_closed(self) -> None:
        await self._ended.wait()

    # --- tasks ---
    async def _listen(self) -> None:
        """Caller audio -> endpointer (in real time) -> SpeechOnset / SpeechStarted events, and each utterance's
        audio to its own recognition task, so that a slow recogniser never delays the endpointing or a barge-in."""
        rate = self.transport.sample_rate
        endpointer: Endpointer = self.engines.make_endpointer(rate)
        size, pending = frame_bytes(rate), b""
        audio: asyncio.Queue[bytes | None] | None = None  # the current utterance's audio, None ends it
        previous: asyncio.Task | None = None  # transcripts reach the flow in the order the caller spoke
        try:
            while True:
                pending += await self._inbound.get()
                while len(pending) >= size:
                    frame, pending = pending[:size], pending[size:]
                    endpointer.digits_mode = self.flow.expects_digits  # longer pauses while digits are read out
                    event = endpointer.feed(frame)
                    if event == "speech_start":
                        recognizer = self.engines.recognizer.utterance(rate, digits=self.flow.expects_digits)
                        audio = asyncio.Queue()
                        audio.put_nowait(endpointer.preroll())
                        previous = asyncio.create_task(self._recognise(recognizer, audio, previous))
                        self._tasks.append(previous)
                        self._onset_at = time.monotonic()
                        await self._events.put(SpeechOnset(self._onset_at))
                    elif audio is not None:
                        audio.put_nowait(frame)
                        if endpointer.silence_ms == PREVIEW_AFTER_MS and not self.engines.recognizer.info.streaming:
                            audio.put_nowait(PREVIEW)
                    if audio is not None and endpointer.barge_in_worthy and self._barge_in_at is None:
                        self._barge_in_at = time.monotonic()
                        await self._events.put(SpeechStarted(self._barge_in_at))
                    if event == "speech_end" and audio is not None:
                        self._turn = TurnTimes(speech_end=time.monotonic())
                        audio.put_nowait(None)
                        audio, self._barge_in_at = None, None
        finally:
            if audio is not None:
                audio.put_nowait(None)

    async def _recognise(
        self, recognizer: UtteranceRecognizer, audio: asyncio.Queue[bytes | None], previous: asyncio.Task | None
    ) -> None:
        """One utterance: audio to the recogniser in batches (bigger ones when it lags), then the transcript."""
        batch_bytes = frame_bytes(self.transport.sample_rate, ASR_BATCH_MS)
        partial_at, behind, ended = 0.0, 0.0, False
        try:
            while not ended:
                chunks, size, preview = [], 0, False
                while not ended and not preview and (size < batch_bytes or not audio.empty()):  # a batch
                    item = await audio.get()
                    if item is None:
                        ended = True
                    elif item is PREVIEW:
                        preview = True
                    else:
                        chunks.append(item)
                        size += len(item)
                partial = await asyncio.to_thread(recognizer.accept, b"".join(chunks)) if size and not ended else None
                if preview and hasattr(recognizer, "preview"):  # runs beside what follows; finish() waits for it
                    self._tasks.append(asyncio.create_task(asyncio.to_thread(recognizer.preview)))
                if partial and time.monotonic() - partial_at > PARTIAL_EVERY_S:
                    partial_at = time.monotonic()  # for the consoles; not stored, never on the critical path
                    self._tasks.append(asyncio.create_task(self.engines.records.partial(self.call_id, partial)))
            behind = time.monotonic() - (self._turn.speech_end or time.monotonic())
            transcript = await asyncio.to_thread(_finish, recognizer, b"".join(chunks))
        except BaseException:
            await asyncio.to_thread(recognizer.close)
            raise
        if previous is not None:
            await asyncio.wait({previous})  # whatever became of it
        self._turn.recognised = time.monotonic()
        await self._events.put(UtteranceRecognised(transcript.text, transcript.confidence, time.monotonic()))
        recognise_s = self._turn.recognised - (self._turn.speech_end or self._turn.recognised)
        metrics.STAGE.labels("recognise").observe(recognise_s)
        self._heard += 1  # recorded after the event: the dialogue does not wait for Redis
        heard = {
            "kind": "heard",
            "seq": self._heard,
            "caller": transcript.text,
            "confidence": round(transcript.confidence, 3),
            "engine": transcript.engine,
            "recognise_ms": round(recognise_s * 1000, 1),
            "asr_behind_ms": round(behind * 1000),  # how far recognition lagged the caller at the end of the turn
        }
        await self.engines.records.turn(self.call_id, heard)

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._tasks = [task for task in self._tasks if not task.done()]  # a long call makes many small tasks
            await self._events.put(Tick(time.monotonic()))

    async def _run_flow(self) -> None:
        while True:
            event: Event = await self._events.get()
            before = self.flow.state
            for command in self.flow.handle(event):
                await self._execute(command)
            if self.flow.state is not before:
                await self.engines.records.state(self.call_id, self.flow.state.value)
            if self.flow.state.value == "ended":
                return

    async def _execute(self, command: Command) -> None:
        match command:
            case Say():
                await self._playback.put(command)
            case StopSpeaking():
                await self._stop_playback()
            case PauseSpeaking():
                self._may_play.clear()
                await self.transport.clear()  # what the far end buffered is dropped; the player rewinds that much
                if self._onset_at is not None:
                    metrics.BARGE_IN.observe(time.monotonic() - self._onset_at)
            case ResumeSpeaking():
                self._may_play.set()
            case AskDialogue(text, replaces_last):
                self._tasks.append(asyncio.create_task(self._ask(text, secret=False, replaces_last=replaces_last)))
            case SendKeys(digits, secret):
                self._turn = TurnTimes(speech_end=time.monotonic(), recognised=time.monotonic())
                self._tasks.append(asyncio.create_task(self._ask(digits, secret=secret, keys=True)))
            case HandOver(payload):
                position = await self.engines.records.handed_off(self.call_id, payload)
                log.info("call %s handed over: %s, queue position %d", self.call_id, payload.get("reason"), position)
                transfer = getattr(self.transport, "transfer", None)  # a phone line can pass the call on itself
                if transfer is not None and await transfer(payload):
                    return
                await self._playback.put(Say(self.flow.prompts.queue_position(position), 0, interruptible=False))
            case HangUp(reason):
                self._tasks.append(asyncio.create_task(self._hang_up(reason)))

    async def _hang_up(self, reason: str) -> None:
        await self.close(reason)  # the record says why, before the transport's own close reports a lost peer
        await self.transport.hang_up(reason)

    async def _ask(self, text: str, *, secret: bool, keys: bool = False, replaces_last: bool = False) -> None:
        """One dialogue turn; its answer comes back as an event."""
        try:
            if replaces_last:
                await self.engines.dialogue.rewind(self.call_id)
            if keys:
                ref = await put_secret_digits_async(self.engines.records.redis, text) if secret else None
                text = keypad_message(text if ref is None else None, ref=ref)
            turn = await self.engines.dialogue.send(self.call_id, text)
        except DialogueError as exc:
            log.warning("call %s: dialogue failed: %s", self.call_id, exc)
            await self._events.put(DialogueFailed(str(exc), time.monotonic()))
            return
        self._turn.answered = time.monotonic()
        if self._turn.recognised is not None:
            metrics.STAGE.labels("dialogue").observe(self._turn.answered - self._turn.recognised)
        answer = {
            "kind": "answer",
            "after": "keys" if keys else ("greeting" if text == "/greet" else "speech"),
            "seq": self._heard,
            "bot": turn.text,
            "payloads": [next(iter(p)) for p in turn.payloads],
            "dialogue_ms": round((self._turn.answered - (self._turn.recognised or self._turn.answered)) * 1000, 1),
        }
        self._tasks.append(asyncio.create_task(self._record_answer(answer)))
        await self._events.put(DialogueAnswered(turn, time.monotonic()))

    async def _record_answer(self, answer: dict[str, Any]) -> None:
        """The exchange with the intent the dialogue understood (read from the tracker, off the critical path)."""
        with contextlib.suppress(DialogueError, KeyError, TypeError):
            tracker = await self.engines.dialogue.tracker(self.call_id, events=False)
            answer["intent"] = tracker["latest_message"]["intent"]["name"]
        await self.engines.records.turn(self.call_id, answer)

    async def _play(self) -> None:
        """Say commands -> speech -> paced 20 ms frames to the caller -> PlaybackFinished.

        While the agent holds its words (`_may_play` cleared) nothing is sent; on resuming, the frames the far end
        dropped (sent ahead of real time) are sent again, so the caller hears every word.
        """
        rate, frame_s = self.transport.sample_rate, FRAME_MS / 1000
        synthesize = self.engines.synthesizer.synthesize_async
        while True:
            say: Say = await self._playback.get()
            pieces = sentences(say.text)  # the first sentence plays while the next is synthesised
            upcoming: asyncio.Future[bytes] | None = asyncio.ensure_future(synthesize(pieces.pop(0), rate))
            chunks: list[bytes] = []
            i, due = 0, time.monotonic()  # due: when chunk i reaches the caller's ear
            while upcoming is not None or i < len(chunks) or time.monotonic() < due:
                if not self._may_play.is_set():
                    i = max(0, i - max(0, round((due - time.monotonic()) / frame_s)))  # rewind what was dropped
                    await self._may_play.wait()
                    due = time.monotonic()
                    continue
                if i == len(chunks) and upcoming is not None:
                    chunks.extend(frames(await upcoming, rate))
                    upcoming = asyncio.ensure_future(synthesize(pieces.pop(0), rate)) if pieces else None
                    continue
                if i == len(chunks):  # all sent: wait until the last of it has been heard (or a hold rewinds it)
                    await asyncio.sleep(min(frame_s, max(0.0, due - time.monotonic())))
                    continue
                if i == 0 and self._turn.speech_end and self._turn.answered and self._turn.first_audio is None:
                    self._turn.first_audio = time.monotonic()
                    metrics.TURN_GAP.observe(self._turn.first_audio - self._turn.speech_end)
                if self.recorder is not None:
                    self.recorder.agent(chunks[i], max(due, time.monotonic()))
                await self.transport.send_audio(chunks[i])
                i, due = i + 1, max(due, time.monotonic()) + frame_s
                ahead = due - time.monotonic()
                if ahead > PLAYBACK_LEAD_S:
                    await asyncio.sleep(ahead - PLAYBACK_LEAD_S)
            await self._events.put(PlaybackFinished(say.utterance, time.monotonic()))

    async def _stop_playback(self) -> None:
        """Barge-in: drop what is queued and playing, and tell the far end to drop what it buffered."""
        while not self._playback.empty():
            self._playback.get_nowait()
        self._player.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._player
        if self._player in self._tasks:
            self._tasks.remove(self._player)
        self._player = asyncio.create_task(self._play())
        self._tasks.append(self._player)
        was_holding = not self._may_play.is_set()
        self._may_play.set()
        await self.transport.clear()
        if self._onset_at is not None and not was_holding:
            metrics.BARGE_IN.observe(time.monotonic() - self._onset_at)
