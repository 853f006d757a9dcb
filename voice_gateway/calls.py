"""One call, whatever wire it came in on: admission, start, media, and one close with a typed reason.

A transport is a caller leg (`CallerLeg`): it turns its wire format into caller audio and keys, which it gives
to the `Call`, and carries the call's audio back. The `Switchboard` admits calls (max calls, draining) as early
as a transport knows one is coming; `Admission.run` starts the call on its `Bridge` with the bot attached, runs
the transport's media pump, and closes the call exactly once with an `EndReason`, whatever happened.

    transport --audio/keys--> Call --> Bridge --> bot (listening, playout) / agent / supervisors
    transport <--20 ms frames-- Bridge (one paced outbound stream per call)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from hotline_domain.contract import Handoff
from hotline_domain.privacy import redact
from voice_gateway import metrics
from voice_gateway.bridge import Bridge, Pacing
from voice_gateway.flow import EndReason

log = logging.getLogger("hotline.calls")
CLOSE_HOOK_S = 6.0  # the bot's close flushes its record for up to 2 s, then tries the end once more (1 s)


class CallerLeg(Protocol):
    """A caller on some wire: what the call needs of a transport. Audio is 16-bit mono PCM at `sample_rate`."""

    @property
    def wire(self) -> str:
        """The wire's name ("twilio", "pcm", "sip", "webrtc"): the call records' `transport`."""
        ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def pacing(self) -> Pacing: ...

    async def send_audio(self, frame: bytes | None) -> None:
        """One 20 ms frame to the caller, now (the bridge paces them); None: nobody speaks (`Pacing.send_silence`)."""
        ...

    async def clear(self) -> None:
        """Drop the agent audio the far end has buffered but not yet played (barge-in)."""
        ...

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        """End the call on the wire (BYE, a closing message, a closed socket)."""
        ...

    async def transfer(self, handoff: Handoff) -> bool:
        """Pass the caller to a person on the phone network itself; False where the wire cannot (then they queue)."""
        ...


class LegFailed(Exception):
    """A transport gives up on its caller: the call ends with `reason` (the transport closes its wire)."""

    end_reason = EndReason.INTERNAL_ERROR

    def __init__(self, detail: str, end_reason: EndReason | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if end_reason is not None:
            self.end_reason = end_reason


class Refused(Exception):
    """A new call is not taken: the gateway is full or draining."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why  # "full" or "draining"


class Bot(Protocol):
    """The automated agent on a call's bridge (voice_gateway.session.BotSession)."""

    async def start(self) -> None: ...

    def key(self, key: str) -> None: ...

    def person_took_over(self) -> None: ...

    def resumed(self) -> None: ...

    def closing_down(self) -> None: ...

    def hold_again(self) -> None: ...


class Call:
    """One caller on one bridge. Transports feed it audio and keys; everything else hangs off its bridge."""

    def __init__(self, call_id: str, leg: CallerLeg) -> None:
        self.call_id = call_id
        self.leg = leg
        self.bridge = Bridge(leg)
        self.bot: Bot | None = None
        self.started = time.monotonic()
        self.end_reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._closing: asyncio.Future | None = None
        self._hanging_up: asyncio.Future | None = None
        self.on_close: list[Callable[[EndReason, str], Awaitable[None]]] = []  # the bot's record, the recording
        self.bridge.on_failure = self._bridge_failed

    def _bridge_failed(self, exc: BaseException) -> None:
        self.end(EndReason.INTERNAL_ERROR, f"bridge: {type(exc).__name__}")

    def end(self, reason: EndReason, detail: str = "") -> None:
        """Hang up from the call's side, in a task of the call's own (a participant closing may not cancel it)."""
        if self._hanging_up is None:
            self._hanging_up = asyncio.ensure_future(self.hang_up(reason, detail))
            self._hanging_up.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    # --- from the transport ---
    def audio(self, pcm: bytes) -> None:
        """Caller audio (any length), never blocking."""
        self.bridge.from_caller(pcm)

    def key(self, key: str) -> None:
        if self.bot is not None and self.bridge.bot_attached:
            self.bot.key(key)

    # --- people taking the call from the bot, and giving it back ---
    def take_over(self) -> None:
        """A person has the call: the bot is off the bridge from the next frame (its words stop at once)."""
        self.bridge.detach_bot()
        if self.bot is not None:
            self.bot.person_took_over()

    def give_back(self) -> None:
        """Back to the bot, which resumes the dialogue with its context."""
        self.bridge.reattach_bot()
        if self.bot is not None:
            self.bot.resumed()

    def back_to_queue(self) -> None:
        """The person's line dropped: the bot takes the caller again, on hold at the front of the queue."""
        self.bridge.reattach_bot()
        if self.bot is not None:
            self.bot.hold_again()

    def closing_down(self) -> None:
        """The gateway is going away: back to the bot, which passes the caller on or says goodbye."""
        if not self.bridge.bot_attached:
            self.bridge.reattach_bot()
        if self.bot is not None:
            self.bot.closing_down()

    # --- from the participants ---
    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        """The call side ends the call: the record says why first, then the wire is told."""
        await self.close(reason, detail)
        with contextlib.suppress(Exception):
            await self.leg.hang_up(reason, detail)

    async def transfer(self, handoff: Handoff) -> bool:
        try:
            return await self.leg.transfer(handoff)
        except Exception:  # a failed transfer falls back to the queue
            log.exception("call %s: transfer failed", self.call_id)
            return False

    async def close(self, reason: EndReason, detail: str = "") -> None:
        """Stop everything once; later calls wait for the first to finish."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason, detail))
        await asyncio.shield(self._closing)

    async def _close(self, reason: EndReason, detail: str) -> None:
        self.end_reason = reason
        await self.bridge.close()
        for hook in self.on_close:
            try:
                async with asyncio.timeout(CLOSE_HOOK_S):  # a hook stuck on a dependency never keeps a call alive
                    await hook(reason, detail)
            except Exception:
                log.exception("call %s: close hook failed", self.call_id)
        self._ended.set()
        log.info("call %s ended: %s%s", self.call_id, reason.value, f" ({redact(detail)})" if detail else "")

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_closed(self) -> None:
        await self._ended.wait()


@dataclass
class Admission:
    """A place held on the switchboard for one call, from the first sign of it until it ends."""

    switchboard: Switchboard
    released: bool = False

    async def run(
        self, leg: CallerLeg, call_id: str, media: Callable[[Call], Awaitable[EndReason | None]]
    ) -> EndReason:
        """Start the call, run `media` (the transport's pump: it returns how the caller left, or raises), close.

        A `LegFailed` or any other exception ends the call with its reason and is raised again, so that the
        transport can close its wire in its own way; cancellation ends it as `GATEWAY_STOPPING`.
        """
        board = self.switchboard
        call = Call(call_id, leg)
        board.calls[call_id] = call
        reason, detail = EndReason.CALLER_HUNG_UP, ""
        try:
            call.bridge.start()
            call.bot = board.make_bot(call)
            await call.bot.start()
            metrics.CALLS.labels(leg.wire).inc()
            reason = await media(call) or reason
        except asyncio.CancelledError:
            reason = EndReason.GATEWAY_STOPPING
            raise
        except LegFailed as exc:
            reason, detail = exc.end_reason, exc.detail
            raise
        except Exception as exc:
            reason, detail = EndReason.INTERNAL_ERROR, type(exc).__name__
            log.exception("call %s failed", call_id)
            raise
        finally:
            await call.close(reason, detail)
            board.calls.pop(call_id, None)
            self.release()
        return call.end_reason or reason

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.switchboard.held -= 1


class Dialer(Protocol):
    """Places calls out (the SIP server, when an outbound line is configured): callbacks to callers."""

    @property
    def can_dial(self) -> bool: ...

    async def dial(self, number: str, call_id: str) -> Call:
        """The answered call (the bot detached), or an exception saying why it did not get through."""
        ...


class Switchboard:
    """The gateway's calls: admission in one place, and a way to reach each live call by id."""

    def __init__(self, max_calls: int, make_bot: Callable[[Call], Bot]) -> None:
        self.max_calls = max_calls
        self.make_bot = make_bot
        self.dialer: Dialer | None = None  # set by the SIP server while it runs
        self.calls: dict[str, Call] = {}
        self.held = 0  # admitted calls, started or still being set up
        self.draining = False

    def admit(self) -> Admission:
        """Hold a place for a new call, or refuse it (`Refused`)."""
        if self.draining:
            metrics.REFUSED.labels("draining").inc()
            raise Refused("draining")
        if self.held >= self.max_calls:
            metrics.REFUSED.labels("full").inc()
            raise Refused("full")
        self.held += 1
        return Admission(self)

    def unique_id(self, wanted: str) -> str:
        """`wanted`, or `wanted-2`, `wanted-3`... if a live call already has it."""
        name, n = wanted, 1
        while name in self.calls:
            n += 1
            name = f"{wanted}-{n}"
        return name

    async def close_all(self, reason: EndReason) -> None:
        for call in list(self.calls.values()):
            await call.hang_up(reason)

    async def drain(self, limit_s: float, goodbye_s: float = 20.0) -> None:
        """Take no new calls; let the calls in progress finish for up to `limit_s`; then each hears a goodbye
        (or is passed to a person where the wire can) within `goodbye_s`; whatever is left is hung up."""
        self.draining = True
        log.info("draining: %d calls in progress, up to %g s", len(self.calls), limit_s)
        await self._until_empty(limit_s)
        if self.calls:
            log.info("drain limit reached: %d calls hear the goodbye", len(self.calls))
            for call in list(self.calls.values()):
                call.closing_down()
            await self._until_empty(goodbye_s)
        await self.close_all(EndReason.GATEWAY_STOPPING)

    async def _until_empty(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
