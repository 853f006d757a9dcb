"""The bot on a call's bridge: `CallFlow` driven by events from its parts, its commands carried out.

    Listener (endpointer + recognition) --events--> CallFlow --commands--> Playout (speech handles)
    keypad, dialogue answers, playout outcomes, part failures, the clock --events--^     Dialogue (Rasa)
                                                                                        CallTelemetry (Redis)

One owner per concern: the `Listener` hears, the `Playout` speaks, `CallTelemetry` keeps the times and the
record, this session runs the flow and owns the tasks. Every failure of a part reaches the flow as an event
(`EngineFailed`, `PlaybackFailed`), which answers by the catalogue's rules: an apology, then a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hotline_domain.contract import BotTurn, Handoff, HandoffReason
from hotline_domain.keypad import keypad_message, put_secret_digits_async
from hotline_domain.privacy import redact, redact_data
from voice_gateway import metrics
from voice_gateway.bridge import Role
from voice_gateway.call_store import CallStore
from voice_gateway.engines import SpeechRecognizer, SpeechSynthesizer
from voice_gateway.flow import (
    AskDialogue,
    BackInQueue,
    BotResumed,
    CallbackRegistered,
    CallFlow,
    CallStarted,
    CallState,
    CheckQueue,
    Command,
    DialogueAnswered,
    EndReason,
    EngineFailed,
    Event,
    HandOver,
    HangUp,
    KeyPressed,
    Part,
    PauseSpeaking,
    PersonTookOver,
    PlaybackFailed,
    PlaybackFinished,
    QueueStatus,
    RegisterCallback,
    ResumeSpeaking,
    Say,
    SendKeys,
    ServiceClosing,
    StopSpeaking,
    Tick,
)
from voice_gateway.hold import HoldMusic
from voice_gateway.listening import Listener
from voice_gateway.playout import Outcome, Playout, SpeechHandle
from voice_gateway.queueing import SkillQueues
from voice_gateway.telemetry import WRITE_TIMEOUT_S, CallTelemetry
from voice_gateway.vad import Endpointer

log = logging.getLogger("hotline.call")
TICK_S = 0.25
QUEUE_CHECK_S = 1.0  # a queue look-up slower than this is answered without a position
CALLER_LEFT = frozenset({EndReason.CALLER_HUNG_UP, EndReason.CALLER_CANCELLED, EndReason.CONNECTION_LOST})


class Dialogue(Protocol):
    """The conversation engine (Rasa, through voice_gateway.rasa_client)."""

    async def send(self, sender: str, text: str) -> BotTurn: ...

    async def rewind(self, sender: str) -> None: ...

    async def latest_intent(self, sender: str) -> str | None: ...


@dataclass
class SpeechEngines:
    """The speech engines every call of a gateway shares, loaded once per process."""

    recognizer: SpeechRecognizer
    synthesizer: SpeechSynthesizer
    make_endpointer: Callable[[int], Endpointer]  # sample rate -> a fresh endpointer for one call
    canned: dict[tuple[str, int], bytes] | None = None  # fixed prompts rendered ahead, for a broken synthesiser


class CallControl(Protocol):
    """What the bot may do to its call (voice_gateway.calls.Call)."""

    call_id: str

    def end(self, reason: EndReason, detail: str = "") -> None:
        """Hang up: the record says why, then the wire is told."""
        ...

    async def transfer(self, handoff: Handoff) -> bool: ...


class Bridged(Protocol):
    """The bot's view of its bridge."""

    def wake(self) -> None: ...

    def ahead_frames(self, now: float | None = None) -> int: ...

    async def clear_caller(self) -> None: ...


class BotSession:
    """The automated agent on one call: a bridge participant (it hears the caller, the bridge pulls its voice)."""

    role = Role.BOT

    def __init__(
        self,
        call: CallControl,
        bridge: Bridged,
        sample_rate: int,
        wire: str,
        speech: SpeechEngines,
        dialogue: Dialogue,
        store: CallStore,
        flow: CallFlow | None = None,
        queues: SkillQueues | None = None,
        store_write_s: float = WRITE_TIMEOUT_S,  # how long one call-record write may take (telemetry.py)
    ) -> None:
        self.call = call
        self.call_id = call.call_id
        self.bridge = bridge
        self.sample_rate = sample_rate
        self.wire = wire
        self.dialogue = dialogue
        self.store = store
        self.flow = flow or CallFlow()
        self.queues = queues or SkillQueues(store.redis, getattr(store, "gateway", ""))
        self.hold_music = HoldMusic(sample_rate)
        self._handoff: Handoff | None = None  # the latest handover, what the queue entry was made of
        self._card: dict[str, Any] = {}
        self._priority = False
        self._queued = False  # in a skill queue (or being put there): leaves it when the call ends
        self._intents: list[str] = []  # what the dialogue understood, turn by turn, for the agent's card
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.telemetry = CallTelemetry(self.call_id, store, self._store_failed, write_timeout_s=store_write_s)
        self.playout = Playout(speech.synthesizer, sample_rate, self._played, wake=bridge.wake, canned=speech.canned)
        self.playout.first_frame = lambda _: self.telemetry.first_audio(time.monotonic())
        self.listener = Listener(
            self.call_id,
            sample_rate,
            speech.recognizer,
            speech.make_endpointer(sample_rate),
            self.telemetry,
            self._events.put_nowait,
            lambda: self.flow.expects_digits,
            self._partial,
        )

    # --- the bridge's side (a Participant) ---
    def hear(self, pcm: bytes) -> None:
        self.listener.hear(pcm)

    def speak(self, due: float) -> bytes | None:
        frame = self.playout.next_frame(due)
        if frame is None and self.flow.hold_music and self.playout.current is None:
            return self.hold_music.next_frame()  # between the announcements of the hold
        return frame

    @property
    def active(self) -> bool:
        return self.playout.active or self.flow.hold_music

    # --- the call's side ---
    async def start(self) -> None:
        self.telemetry.start()
        self.telemetry.write("started", self.store.started, self.call_id, self.wire)
        metrics.ACTIVE_CALLS.inc()
        self._spawn(self.listener.run(), Part.RECOGNISER)
        self._spawn(self._run_flow())
        self._spawn(self._clock())
        self._events.put_nowait(CallStarted(time.monotonic()))
        log.info("call %s started on %s", self.call_id, self.wire)

    def key(self, key: str) -> None:
        self._events.put_nowait(KeyPressed(key, time.monotonic()))

    def person_took_over(self) -> None:
        """A person has the call (the bridge no longer routes the bot): the flow and the hold go quiet, and the
        call leaves its queue if it is still there (an agent claims it first: `SkillQueues.claim`)."""
        self._events.put_nowait(PersonTookOver(time.monotonic()))
        self._leave_queue(abandoned=False)

    def resumed(self) -> None:
        """The call is given back to the bot, with the dialogue's context intact: no longer waiting for anyone."""
        self._events.put_nowait(BotResumed(time.monotonic()))
        self._leave_queue(abandoned=False)

    def hold_again(self) -> None:
        """The person's side dropped mid-call (the bot is on the bridge again): the caller goes back to the front
        of the queue and hears an apology, then the position and the wait, on hold."""
        self._spawn(self._back_in_queue())

    async def _back_in_queue(self) -> None:
        self._queued = True
        try:
            async with asyncio.timeout(QUEUE_CHECK_S):
                await self.queues.requeue(self.call_id)
                if await self.queues.position(self.call_id) is None and self._handoff is not None:
                    await self.queues.enqueue(self.call_id, self._handoff.queue, self._card, self._priority)
                if self._handoff is not None:
                    await self.store.console_state(self.call_id, "queued", queue=self._handoff.queue.value)
        except Exception as exc:  # the caller still hears the apology; the position is said when known
            log.warning("call %s: not queued again: %s", self.call_id, type(exc).__name__)
        self._events.put_nowait(BackInQueue(time.monotonic()))

    def _leave_queue(self, abandoned: bool) -> None:
        if self._queued:
            self._queued = False
            self.telemetry.write("leave", self.queues.leave, self.call_id, abandoned)

    def closing_down(self) -> None:
        """The gateway is going away: the caller goes to a person if the wire can pass them on, else a goodbye."""
        self._spawn(self._close_down())

    async def _close_down(self) -> None:
        if await self.call.transfer(Handoff(HandoffReason.SERVICE_CLOSING)):
            return
        self._events.put_nowait(ServiceClosing(time.monotonic()))

    async def close(self, reason: EndReason, detail: str = "") -> None:
        """The call is over: stop every task, keep the record (its last write says why)."""
        if self._closed:
            return
        self._closed = True
        self.flow.state = CallState.ENDED
        current = asyncio.current_task()
        if self._queued:  # still waiting for a person: a caller who hung up abandoned the queue
            self._leave_queue(abandoned=reason in CALLER_LEFT)
        await self.playout.close()
        await self.listener.close()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for task in list(self._tasks):
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await task
                    except Exception:
                        log.exception("call %s: a task had failed", self.call_id)
        await self.telemetry.close(last=(self.store.ended, (self.call_id, reason.value, detail)))
        metrics.ACTIVE_CALLS.dec()

    # --- tasks ---
    def _spawn(self, job: Any, part: Part = Part.DIALOGUE) -> asyncio.Task:
        """A task of this call's; one that dies of a bug is a failure of `part`, reported to the flow."""
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._forget(t, part))
        return task

    def _forget(self, task: asyncio.Task, part: Part) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._closed:
            log.error("call %s: a task failed", self.call_id, exc_info=task.exception())
            self._events.put_nowait(EngineFailed(part, "internal error", time.monotonic()))

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._events.put_nowait(Tick(time.monotonic()))

    async def _run_flow(self) -> None:
        while True:
            event = await self._events.get()
            before = self.flow.state
            for command in self.flow.handle(event):
                try:
                    await self._execute(command)
                except Exception:  # a bug in carrying out one command must not leave the caller in silence
                    log.exception("call %s: %s failed", self.call_id, type(command).__name__)
                    self._events.put_nowait(EngineFailed(Part.DIALOGUE, "internal error", time.monotonic()))
            if self.flow.state is not before:
                self.telemetry.write("state", self.store.state, self.call_id, self.flow.state.value)
            if self.flow.hold_music:
                self.bridge.wake()  # the hold music plays by itself: the bridge's clock must run
            if self.flow.state is CallState.ENDED:
                return

    async def _execute(self, command: Command) -> None:
        match command:
            case Say(text, utterance, interruptible):
                self.playout.say(text, utterance, interruptible=interruptible)
                if self.flow.state is CallState.ON_HOLD:  # the hold's words, for the record (not a dialogue turn)
                    self.telemetry.write("turn", self.store.turn, self.call_id, {"kind": "hold", "bot": text})
            case StopSpeaking():
                was_holding = self.playout.current is not None and self.playout.current.paused
                self.playout.stop()
                await self.bridge.clear_caller()
                self._barge_in_metric(not was_holding)
            case PauseSpeaking():
                self.playout.pause(time.monotonic())
                await self.bridge.clear_caller()  # what the far end buffered is dropped; the handle rewinds that much
                self._barge_in_metric(True)
            case ResumeSpeaking():
                self.playout.resume()
            case AskDialogue(text, replaces_last):
                self._spawn(self._ask(text, secret=False, replaces_last=replaces_last))
            case SendKeys(digits, secret):
                self.telemetry.keys_sent(time.monotonic())
                self._spawn(self._ask(digits, secret=secret, keys=True))
            case HandOver(handoff):
                await self._hand_over(handoff)
            case HangUp(reason, detail):
                self.call.end(reason, detail)  # the call's own task: closing the bot must not cancel it
            case CheckQueue():
                self._spawn(self._check_queue())
            case RegisterCallback(number):
                self._spawn(self._register_callback(number))

    def _barge_in_metric(self, measure: bool) -> None:
        if measure and self.listener.onset_at is not None:
            metrics.BARGE_IN.observe(time.monotonic() - self.listener.onset_at)

    async def _hand_over(self, handoff: Handoff) -> None:
        """A phone line that can pass the caller on (SIP REFER) does; otherwise, or if that fails, the caller
        joins the skill queue and is on hold (the position and the wait come as a `QueueStatus`)."""
        if await self.call.transfer(handoff):
            log.info("call %s handed over by the line: %s", self.call_id, handoff.reason)
            return
        self._handoff, self._card = handoff, self._context_card(handoff)
        self._priority = handoff.identity.senior or handoff.identity.repeat
        self._queued = True
        position = await self.telemetry.now(
            "handoff", self.store.handed_off, self.call_id, handoff, self._card, self._priority, self.queues
        )
        log.info("call %s handed over: %s, queue %s position %s", self.call_id, handoff.reason, handoff.queue, position)
        await self._check_queue(position)

    def _context_card(self, handoff: Handoff) -> dict[str, Any]:
        """What the agent sees first (masked): the handover, and what the dialogue understood; the transcript is
        the call's turns in Redis."""
        payload = handoff.to_payload()[Handoff.KEY]
        return {**redact_data(payload), "intents": list(self._intents), "transport": self.wire}

    async def _check_queue(self, position: int | None = None) -> None:
        """Where the caller stands, for the flow to say; what Redis cannot tell in time is said as unknown."""
        wait_s, agents, can_call_back = None, 0, False
        handoff = self._handoff
        try:
            async with asyncio.timeout(QUEUE_CHECK_S):
                position = await self.queues.position(self.call_id) if position is None else position
                if handoff is not None and position is not None:
                    wait_s = await self.queues.estimated_wait_s(handoff.queue, position)
                    agents = await self.queues.agents_available(handoff.queue)
                    can_call_back = self.queues.can_seal
        except Exception as exc:
            log.warning("call %s: queue not read: %s", self.call_id, type(exc).__name__)
            position = None
        self._events.put_nowait(QueueStatus(position, wait_s, agents, can_call_back, time.monotonic()))

    async def _register_callback(self, number: str) -> None:
        ok = False
        try:
            if self._handoff is not None:
                async with asyncio.timeout(2 * QUEUE_CHECK_S):
                    entry = await self.queues.add_callback(self.call_id, self._handoff.queue, number)
                log.info("call %s: callback %s registered", self.call_id, entry["id"])
                self._leave_queue(abandoned=False)
                ok = True
        except Exception as exc:
            log.warning("call %s: callback not registered: %s", self.call_id, type(exc).__name__)
        self._events.put_nowait(CallbackRegistered(ok, time.monotonic()))

    async def _ask(self, text: str, *, secret: bool, keys: bool = False, replaces_last: bool = False) -> None:
        """One dialogue turn; its answer (or its failure) comes back as an event."""
        try:
            if replaces_last:
                await self.dialogue.rewind(self.call_id)
            if keys:
                ref = await put_secret_digits_async(self.store.redis, text) if secret else None
                text = keypad_message(text if ref is None else None, ref=ref)
            turn = await self.dialogue.send(self.call_id, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Rasa down or slow, Redis down for the keypad secret, a malformed answer
            detail = redact(f"{type(exc).__name__}: {exc}")[:200]
            log.warning("call %s: dialogue failed: %s", self.call_id, detail)
            metrics.ENGINE_FAILURES.labels("dialogue").inc()
            self._events.put_nowait(EngineFailed(Part.DIALOGUE, detail, time.monotonic()))
            return
        dialogue_s = self.telemetry.answered(time.monotonic())
        answer = {
            "kind": "answer",
            "after": "keys" if keys else ("greeting" if text == "/greet" else "speech"),
            "seq": self.telemetry.heard,
            "bot": turn.text,
            "payloads": [part.KEY for part in turn.parts],
            "dialogue_ms": round(dialogue_s * 1000, 1),
        }
        self._spawn(self._record_answer(answer))
        self._events.put_nowait(DialogueAnswered(turn, time.monotonic()))

    async def _record_answer(self, answer: dict[str, Any]) -> None:
        """The exchange with the intent the dialogue understood (read from the tracker, off the critical path)."""
        with contextlib.suppress(Exception):
            answer["intent"] = await self.dialogue.latest_intent(self.call_id)
            if answer["intent"]:
                self._intents.append(str(answer["intent"]))
        self.telemetry.write("turn", self.store.turn, self.call_id, answer)

    # --- reports from the parts ---
    def _played(self, handle: SpeechHandle) -> None:
        now = time.monotonic()
        if handle.outcome is Outcome.PLAYED and handle.utterance:
            self._events.put_nowait(PlaybackFinished(handle.utterance, now))
        elif handle.outcome is Outcome.FAILED:
            metrics.ENGINE_FAILURES.labels("synthesiser").inc()
            self._events.put_nowait(PlaybackFailed(handle.utterance, handle.error, now))

    def _partial(self, text: str) -> None:
        self.telemetry.write("partial", self.store.partial, self.call_id, text)

    def _store_failed(self, detail: str) -> None:
        metrics.ENGINE_FAILURES.labels("store").inc()
        if not self._closed:
            self._events.put_nowait(EngineFailed(Part.STORE, detail, time.monotonic()))
