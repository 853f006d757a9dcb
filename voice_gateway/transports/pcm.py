"""Raw linear PCM over a WebSocket, in the style of FreeSWITCH mod_audio_stream and jambonz `listen`.

In: first a JSON text message with the call's metadata, {"sampleRate": 8000 | 16000, "callId": "..."}; then
binary frames of 16-bit little-endian mono PCM; text messages {"type": "dtmf", "digit": "5"} and
{"type": "hangup"}. Out: binary PCM frames at the same rate; {"type": "clear"} on barge-in;
{"type": "hangup", "reason": "..."} and a normal close when the agent ends the call.
"""

from __future__ import annotations

import contextlib
import json
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hotline_domain.contract import Handoff
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.transports.common import WEBSOCKET_PACING, CloseCode, ProtocolViolation, json_object, run_ws_call

log = logging.getLogger("hotline.pcm")
RATES = (8000, 16000)
MAX_FRAME_BYTES = 16000 * 2  # one second at 16 kHz: more in one frame is not a phone call


class PcmStream:
    """The way back to a raw-PCM caller: binary frames, `clear` and `hangup` messages."""

    wire = "pcm"
    pacing = WEBSOCKET_PACING

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.sample_rate = 8000

    async def send_audio(self, pcm: bytes | None) -> None:
        if pcm is None:
            return
        with contextlib.suppress(ConnectionClosed):  # the caller is gone: the read side ends the call
            await self.ws.send(pcm)

    async def clear(self) -> None:
        with contextlib.suppress(ConnectionClosed):  # the caller is gone: the read side ends the call
            await self.ws.send(json.dumps({"type": "clear"}))

    async def transfer(self, handoff: Handoff) -> bool:
        return False

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        try:
            await self.ws.send(json.dumps({"type": "hangup", "reason": reason.value}))
        except ConnectionClosed:
            return
        await self.ws.close(CloseCode.NORMAL, f"hangup: {reason.value}"[:120])


async def handle(ws: ServerConnection, switchboard: Switchboard) -> None:
    stream = PcmStream(ws)

    async def start() -> str:
        raw = await ws.recv()
        if isinstance(raw, bytes):
            raise ProtocolViolation(CloseCode.PROTOCOL, "the first message must be the JSON metadata")
        meta = json_object(raw)
        rate = meta.get("sampleRate", meta.get("sample_rate"))
        if rate not in RATES:
            raise ProtocolViolation(CloseCode.UNSUPPORTED, f"unsupported sample rate {rate!r}: 8000 or 16000")
        stream.sample_rate = int(rate)
        return str(meta.get("callId") or meta.get("call_sid") or "")

    async def pump(call: Call) -> None:
        async for raw in ws:
            if isinstance(raw, bytes):
                if len(raw) % 2 or len(raw) > MAX_FRAME_BYTES:
                    raise ProtocolViolation(CloseCode.INVALID_DATA, f"bad PCM frame of {len(raw)} bytes")
                call.audio(raw)
                continue
            message = json_object(raw)
            kind = message.get("type")
            if kind == "dtmf":
                call.key(str(message.get("digit", ""))[:1])
            elif kind == "hangup":
                return
            else:
                log.warning("pcm stream: unknown message type %r ignored", str(kind)[:40])

    await run_ws_call(ws, switchboard, stream, start, pump)
