"""The circuit breaker, on a fake clock, and the dialogue behind it."""

from __future__ import annotations

import pytest

from hotline_domain.contract import BotTurn
from tests.unit.fakes import FakeDialogue
from voice_gateway.breaker import BreakerState, CircuitBreaker, CircuitOpen, EmptyAnswer, GuardedDialogue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def fail() -> None:
    raise ConnectionError("refused")


async def ok() -> str:
    return "ok"


async def test_it_opens_after_failures_in_a_row_fails_fast_then_tries_one_call() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dialogue", failures=3, open_s=10, clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        await breaker.call(ok)  # not even tried
    clock.now = 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ConnectionError):
        await breaker.call(fail)  # the one trial failed: open again
    assert breaker.state is BreakerState.OPEN
    clock.now = 20.0
    assert await breaker.call(ok) == "ok"
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0


async def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker("dialogue", failures=2, clock=Clock())
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    await breaker.call(ok)
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED


async def test_an_empty_answer_is_a_failure_and_a_dead_dialogue_is_not_waited_on() -> None:
    dialogue = FakeDialogue([BotTurn([]), BotTurn(["您好。"])])
    guarded = GuardedDialogue(dialogue, CircuitBreaker("dialogue", failures=2, clock=Clock()))
    with pytest.raises(EmptyAnswer):
        await guarded.send("c1", "查养老金")
    assert (await guarded.send("c1", "查养老金")).texts == ["您好。"]
    dialogue.fail = True
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await guarded.send("c1", "查养老金")
    asked = len(dialogue.asked)
    with pytest.raises(CircuitOpen):
        await guarded.send("c1", "查养老金")
    assert len(dialogue.asked) == asked
