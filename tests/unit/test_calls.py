"""The call lifecycle: admission, one close with a typed reason whatever ends the call, ids."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fakes import FakeLeg, ToneBot
from voice_gateway.calls import Call, Refused, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.transports.common import CloseCode, ProtocolViolation


class Board:
    def __init__(self, max_calls: int = 2) -> None:
        self.closed: dict[str, tuple[EndReason, str]] = {}
        self.switchboard = Switchboard(max_calls, self._bot)

    def _bot(self, call: Call) -> ToneBot:
        bot = ToneBot(call.leg.sample_rate)
        call.bridge.attach_bot(bot)

        async def closed(reason: EndReason, detail: str) -> None:
            self.closed[call.call_id] = (reason, detail)

        call.on_close.append(closed)
        return bot


async def test_admission_refuses_past_max_calls_and_while_draining() -> None:
    board = Board(max_calls=2)
    first, second = board.switchboard.admit(), board.switchboard.admit()
    with pytest.raises(Refused) as full:
        board.switchboard.admit()
    assert full.value.why == "full"
    first.release()
    first.release()  # once only
    third = board.switchboard.admit()
    board.switchboard.draining = True
    second.release()
    with pytest.raises(Refused) as draining:
        board.switchboard.admit()
    assert draining.value.why == "draining"
    third.release()
    assert board.switchboard.held == 0


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        (None, EndReason.CALLER_HUNG_UP),
        (EndReason.CONNECTION_LOST, EndReason.CONNECTION_LOST),
        (ProtocolViolation(CloseCode.INVALID_DATA, "bad media payload"), EndReason.PROTOCOL_ERROR),
        (RuntimeError("a bug in the pump"), EndReason.INTERNAL_ERROR),
    ],
)
async def test_every_ending_closes_the_call_once_with_its_reason(ending: object, reason: EndReason) -> None:
    board = Board()

    async def media(call: Call) -> EndReason | None:
        await asyncio.sleep(0.05)
        if isinstance(ending, Exception):
            raise ending
        return ending  # type: ignore[return-value]

    admission = board.switchboard.admit()
    if isinstance(ending, Exception):
        with pytest.raises(type(ending)):
            await admission.run(FakeLeg(), "fake-1", media)
    else:
        assert await admission.run(FakeLeg(), "fake-1", media) is reason
    assert board.closed["fake-1"][0] is reason
    assert not board.switchboard.calls and board.switchboard.held == 0
    if isinstance(ending, ProtocolViolation):
        assert board.closed["fake-1"][1] == "bad media payload"


async def test_a_call_hung_up_by_its_side_tells_the_wire_after_the_record() -> None:
    board = Board()
    leg = FakeLeg()

    async def media(call: Call) -> None:
        call.end(EndReason.COMPLETED, "caller_done")
        await call.wait_closed()

    await board.switchboard.admit().run(leg, "fake-2", media)
    assert board.closed["fake-2"] == (EndReason.COMPLETED, "caller_done")
    await asyncio.sleep(0.01)  # the wire is told in the call's own task, right after
    assert leg.hung_up == [(EndReason.COMPLETED, "caller_done")]


def test_ids_stay_unique_among_live_calls() -> None:
    board = Board()
    board.switchboard.calls["twilio-CA1"] = object()  # type: ignore[assignment]
    board.switchboard.calls["twilio-CA1-2"] = object()  # type: ignore[assignment]
    assert board.switchboard.unique_id("twilio-CA1") == "twilio-CA1-3"
    assert board.switchboard.unique_id("twilio-CA9") == "twilio-CA9"


async def test_draining_refuses_new_calls_lets_calls_finish_then_says_goodbye() -> None:
    board = Board(max_calls=4)
    closing: list[str] = []
    running = []

    async def media(call: Call) -> None:
        def goodbye() -> None:
            closing.append(call.call_id)
            call.end(EndReason.GATEWAY_STOPPING)

        call.bot.closing_down = goodbye  # type: ignore[union-attr,method-assign]
        await call.wait_closed()

    for name in ("short", "long"):
        running.append(asyncio.ensure_future(board.switchboard.admit().run(FakeLeg(), name, media)))
    await asyncio.sleep(0.05)
    drain = asyncio.ensure_future(board.switchboard.drain(limit_s=0.5, goodbye_s=1.0))
    await asyncio.sleep(0.05)
    with pytest.raises(Refused):
        board.switchboard.admit()
    board.switchboard.calls["short"].end(EndReason.CALLER_HUNG_UP)  # finishes within the limit
    await drain
    assert closing == ["long"], "only the call still there at the limit hears the goodbye"
    assert board.closed["short"][0] is EndReason.CALLER_HUNG_UP
    assert board.closed["long"][0] is EndReason.GATEWAY_STOPPING
    assert not board.switchboard.calls
    await asyncio.gather(*running)
