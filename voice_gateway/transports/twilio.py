"""Twilio Media Streams: JSON events over a WebSocket, base64 mu-law 8 kHz audio both ways.

In: connected, start (streamSid, mediaFormat, customParameters), media, dtmf, mark, stop.
Out: media (our audio), clear (drop what you buffered: barge-in), mark. Closing the socket ends the call.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hotline_domain.contract import Handoff
from voice_gateway.audio import ulaw_decode, ulaw_encode
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.transports.common import WEBSOCKET_PACING, CloseCode, ProtocolViolation, run_ws_call

log = logging.getLogger("hotline.twilio")


class TwilioStream:
    """The way back to a Twilio caller: mu-law frames, `clear`, and closing the stream to hang up."""

    wire = "twilio"
    sample_rate = 8000
    pacing = WEBSOCKET_PACING

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.stream_sid = ""

    async def send_audio(self, pcm: bytes | None) -> None:
        if pcm is None:
            return
        payload = base64.b64encode(ulaw_encode(pcm)).decode()
        await self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    async def clear(self) -> None:
        await self._send({"event": "clear", "streamSid": self.stream_sid})

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        await self.ws.close(CloseCode.NORMAL, f"hangup: {reason.value}"[:120])

    async def transfer(self, handoff: Handoff) -> bool:
        return False  # Twilio transfers are TwiML, outside the stream: the caller waits for a person here

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):  # the caller is gone: the read side ends the call
            await self.ws.send(json.dumps(message))


def _parse(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolViolation(CloseCode.UNSUPPORTED, "binary frames are not part of Twilio Media Streams")
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, 4300+ digit integers, [[[[... nested too deep
        raise ProtocolViolation(CloseCode.INVALID_DATA, "malformed JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolViolation(CloseCode.INVALID_DATA, "a message needs an 'event' field")
    return message


def _object(value: Any) -> dict[str, Any]:
    """A field that must be a JSON object; anything else counts as missing."""
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):  # [8000], "8k", 1e999
        return 0


def _decode_media(message: dict[str, Any]) -> bytes:
    try:
        return ulaw_decode(base64.b64decode(message["media"]["payload"], validate=True))
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise ProtocolViolation(CloseCode.INVALID_DATA, "bad media payload (base64 mu-law expected)") from None


async def handle(ws: ServerConnection, switchboard: Switchboard) -> None:
    """One Twilio stream = one call."""
    stream = TwilioStream(ws)

    async def start() -> str:
        async for raw in ws:
            message = _parse(raw)
            event = message["event"]
            if event == "connected":
                continue
            if event != "start":
                raise ProtocolViolation(CloseCode.PROTOCOL, f"'{event}' before 'start'")
            start = _object(message.get("start"))
            fmt = _object(start.get("mediaFormat"))
            if fmt.get("encoding") != "audio/x-mulaw" or _number(fmt.get("sampleRate")) != 8000:
                raise ProtocolViolation(
                    CloseCode.UNSUPPORTED, f"unsupported media format {str(fmt)[:200]}: audio/x-mulaw 8000 only"
                )
            stream.stream_sid = str(message.get("streamSid") or start.get("streamSid") or "")
            return str(start.get("callSid") or stream.stream_sid)
        raise ConnectionClosed(None, None)

    async def pump(call: Call) -> None:
        async for raw in ws:
            message = _parse(raw)
            match message["event"]:
                case "media":
                    call.audio(_decode_media(message))
                case "dtmf":
                    call.key(str(_object(message.get("dtmf")).get("digit", ""))[:1])
                case "mark" | "connected":
                    pass
                case "stop":
                    return
                case other:
                    log.warning("twilio stream %s: unknown event %r ignored", stream.stream_sid, other[:40])

    await run_ws_call(ws, switchboard, stream, start, pump)
