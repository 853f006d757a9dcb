"""What the WebSocket transports share: close codes, protocol errors, and running one call."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice_gateway.bridge import Pacing
from voice_gateway.calls import Call, CallerLeg, LegFailed, Refused, Switchboard
from voice_gateway.flow import EndReason

log = logging.getLogger("hotline.transport")


WEBSOCKET_PACING = Pacing(lead_frames=5, send_silence=False)  # 100 ms ahead: the far end buffers, `clear` drops
# Twilio and media servers send their start message at once; a socket silent this long holds a place for nothing
START_TIMEOUT_S = 10.0


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    PROTOCOL = 1002
    UNSUPPORTED = 1003
    INVALID_DATA = 1007
    POLICY = 1008  # not authenticated
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN = 1013  # gateway full


class ProtocolViolation(LegFailed):
    """The peer broke the wire protocol: the call ends, the socket closes with `code` and a reason it can read."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason, EndReason.PROTOCOL_ERROR)
        self.code = code
        self.reason = reason


def json_object(raw: str) -> dict[str, Any]:
    """A text message that must be one JSON object, or the protocol error the peer is closed with."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, 4300+ digit integers, [[[[... nested too deep
        raise ProtocolViolation(CloseCode.INVALID_DATA, "malformed JSON") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(CloseCode.INVALID_DATA, "a JSON object was expected")
    return message


async def run_ws_call(
    ws: ServerConnection,
    switchboard: Switchboard,
    leg: CallerLeg,
    start: Callable[[], Awaitable[str]],
    pump: Callable[[Call], Awaitable[None]],
) -> None:
    """One WebSocket call: admission, the handshake (`start` returns the peer's call id), then the call fed by
    `pump` until either side ends it. Errors close the socket with a code the peer can read."""
    try:
        admission = switchboard.admit()
    except Refused as refused:
        await ws.close(CloseCode.TRY_AGAIN, f"gateway {refused.why}, try again later")
        return

    async def media(call: Call) -> EndReason | None:
        try:
            await pump(call)
        except ConnectionClosed:
            return EndReason.CONNECTION_LOST
        return None

    try:
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                peer_call_id = await start()
        except TimeoutError:
            raise ProtocolViolation(CloseCode.PROTOCOL, f"no start message within {START_TIMEOUT_S:g} s") from None
        call_id = switchboard.unique_id(f"{leg.wire}-{peer_call_id[:40] or uuid.uuid4().hex[:12]}")
        await admission.run(leg, call_id, media)
    except ProtocolViolation as exc:
        log.warning("%s connection from %s closed: %s", leg.wire, ws.remote_address, exc.reason)
        await ws.close(exc.code, exc.reason[:120])
    except ConnectionClosed:
        pass
    except Exception:  # one bad call never disturbs another
        log.exception("%s call failed", leg.wire)
        await ws.close(CloseCode.INTERNAL, "internal error")
    finally:
        admission.release()
