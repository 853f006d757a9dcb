"""What the WebSocket transports share: close codes, protocol errors, and running one call."""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice_gateway import metrics

log = logging.getLogger("hotline.transport")


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    PROTOCOL = 1002
    UNSUPPORTED = 1003
    INVALID_DATA = 1007
    POLICY = 1008  # not authenticated
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN = 1013  # gateway full


class ProtocolViolation(Exception):
    """The peer broke the wire protocol: close with `code` and a reason it can read."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def json_object(raw: str) -> dict[str, Any]:
    """A text message that must be one JSON object, or the protocol error the peer is closed with."""
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        raise ProtocolViolation(CloseCode.INVALID_DATA, "malformed JSON") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(CloseCode.INVALID_DATA, "a JSON object was expected")
    return message


async def run_call(
    ws: ServerConnection,
    gateway: Any,
    transport: Any,
    name: str,
    start: Callable[[], Awaitable[str]],
    pump: Callable[[Any], Awaitable[None]],
) -> None:
    """Handshake (`start` returns the peer's call id), then a CallSession fed by `pump` until either side ends."""
    session = None
    reason = "caller_hung_up"
    try:
        peer_call_id = await start()
        session = gateway.new_session(f"{name}-{peer_call_id[:40] or uuid.uuid4().hex[:12]}", transport, name)
        await session.start()
        metrics.CALLS.labels(name).inc()
        await pump(session)
    except ProtocolViolation as exc:
        reason = f"protocol: {exc.reason}"
        log.warning("%s connection from %s closed: %s", name, ws.remote_address, exc.reason)
        await ws.close(exc.code, exc.reason[:120])
    except ConnectionClosed:
        reason = "connection_lost"
    except Exception:  # one bad call never disturbs another
        reason = "internal_error"
        log.exception("%s call failed", name)
        await ws.close(CloseCode.INTERNAL, "internal error")
    finally:
        if session is not None:
            await session.close(reason)
