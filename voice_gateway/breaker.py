"""A circuit breaker: a dependency that keeps failing is not waited on turn after turn.

After `failures` failures in a row the breaker opens: calls fail at once (`CircuitOpen`) for `open_s` seconds;
then one call is let through (half-open): its success closes the breaker, its failure opens it again. The state
is what /healthz reports for the dependency.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from hotline_domain.contract import BotTurn

if TYPE_CHECKING:
    from voice_gateway.session import Dialogue

T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"  # healthy: calls go through
    OPEN = "open"  # failing: calls fail at once
    HALF_OPEN = "half_open"  # trying one call


class CircuitOpen(Exception):
    """The dependency failed too often lately; not tried this time."""


class CircuitBreaker:
    def __init__(
        self, name: str, *, failures: int = 3, open_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.failures_to_open = failures
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error = ""
        self._trial = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    async def call(self, job: Callable[[], Awaitable[T]], failure: type[BaseException] | tuple = Exception) -> T:
        """Run `job` unless the breaker is open; exceptions of type `failure` count against the dependency."""
        state = self.state
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._trial):
            raise CircuitOpen(f"{self.name} is failing ({self.last_error}); not tried for {self.open_s:g} s")
        self._trial = state is BreakerState.HALF_OPEN
        try:
            result = await job()
        except failure as exc:
            self._failed(exc)
            raise
        finally:
            self._trial = False
        self.failures, self.opened_at = 0, None
        return result

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:120]
        if self.failures >= self.failures_to_open or self.opened_at is not None:
            self.opened_at = self.clock()


class GuardedDialogue:
    """The dialogue behind a circuit breaker, with an empty answer counted as a failure: Rasa answers a turn
    with nothing when an action could not run (the action server down), and a caller must never hear silence."""

    def __init__(self, dialogue: Dialogue, breaker: CircuitBreaker | None = None) -> None:
        self.dialogue = dialogue
        self.breaker = breaker or CircuitBreaker("dialogue")

    async def send(self, sender: str, text: str) -> BotTurn:
        async def turn() -> BotTurn:
            answer = await self.dialogue.send(sender, text)
            if not answer.texts and not answer.parts:
                raise EmptyAnswer(f"the dialogue answered {text[:20]!r} with nothing")
            return answer

        return await self.breaker.call(turn)

    async def rewind(self, sender: str) -> None:
        await self.breaker.call(lambda: self.dialogue.rewind(sender))

    async def latest_intent(self, sender: str) -> str | None:
        return await self.dialogue.latest_intent(sender)  # off the critical path: not counted


class EmptyAnswer(RuntimeError):
    """The dialogue answered a turn with nothing to say."""
