"""A softphone in the browser: the page at GET /phone calls the agent over WebRTC (aiortc), signalled on /phone/ws.

Signalling, JSON text messages on the WebSocket. Page -> gateway: first {"type": "offer", "sdp": "..."} with every
ICE candidate in it (no trickle), then {"type": "dtmf", "digit": "5"} and {"type": "hangup"}. Gateway -> page:
{"type": "answer", "sdp": "..."}; {"type": "call", "call": id, ...} once the caller's audio arrives (the call starts
then); {"type": "event", "event": {...}}, this call's events from its own channel `hotline:call:<id>:events`
(what the caller said, the agent's answers, state, handover); {"type": "hangup", "reason": "..."} when the agent
ends the call; {"type": "error", "message": "..."} before a close with a reason.

Media: the caller's Opus (48 kHz) is downmixed and resampled to 16 kHz for the session; the agent's 16 kHz frames
wait in a short queue that an outbound track hands to aiortc in real time, silence when it is empty. No STUN or
TURN: host candidates only, on the addresses in `WebRtcSettings` (docs/webrtc.md). A caller whose audio has not
arrived within `timeout_s` of connecting the socket, or stops arriving for that long, is hung up and cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import ipaddress
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
import soxr
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State

from hotline_domain.contract import Handoff
from voice_gateway.audio import FRAME_MS, array_to_pcm, frame_bytes
from voice_gateway.bridge import Pacing
from voice_gateway.call_store import events_channel
from voice_gateway.calls import Call, Refused, Switchboard
from voice_gateway.config import GatewaySettings
from voice_gateway.flow import EndReason
from voice_gateway.transports.common import CloseCode, ProtocolViolation, json_object

log = logging.getLogger("hotline.webrtc")
logging.getLogger("aioice.ice").setLevel(logging.WARNING)  # every candidate pair of every call, at INFO
NAME = "webrtc"
RATE = 16000  # what the session hears and speaks
KEYS = "0123456789*#"
MAX_QUEUED_FRAMES = 50  # 1 s of agent audio; the session keeps at most ~100 ms ahead, so this only bounds a stall
RESYNC_S = 0.2  # the outbound clock jumps ahead rather than burst frames after an event-loop stall this long
PAGE = Path(__file__).resolve().parents[1] / "web" / "phone.html"
PEERS: set[RTCPeerConnection] = set()  # open peer connections, for tests and leak checks

_default_host_addresses = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class WebRtcSettings:
    timeout_s: float = 15.0  # offer, connection and first caller audio within this; a longer gap in it ends the call
    addresses: tuple[str, ...] | None = None  # host candidates offered; None: every interface but loopback

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> WebRtcSettings:
        """HOTLINE_WEBRTC_TIMEOUT_S, HOTLINE_WEBRTC_ADDRESSES (comma-separated); by default media follows the
        listening address: a gateway on loopback offers 127.0.0.1, one on all interfaces offers every interface."""
        raw, listen_host = gateway.webrtc_addresses, gateway.host
        addresses: tuple[str, ...] | None
        if raw.strip():
            addresses = tuple(a.strip() for a in raw.split(",") if a.strip())
        elif listen_host in ("127.0.0.1", "localhost"):
            addresses = ("127.0.0.1",)
        elif listen_host in ("", "0.0.0.0", "::"):
            addresses = None
        else:
            addresses = (listen_host,)
        return cls(timeout_s=gateway.webrtc_timeout_s, addresses=addresses)


def offer_host_candidates(addresses: tuple[str, ...] | None) -> None:
    """Make aioice gather host candidates on `addresses` only (it has no option for it; this is process-wide)."""
    if addresses is None:
        aioice.ice.get_host_addresses = _default_host_addresses
        return

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = chosen


@functools.cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def page_response(connection: ServerConnection) -> Response:
    """The softphone page (the token stays in the address bar: no caching, no referrer)."""
    response = connection.respond(200, _page())
    del response.headers["Content-Type"]  # Headers is a multidict: setting a name adds a second one
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
    )
    return response


class AgentVoice(MediaStreamTrack):
    """The agent's audio to the browser: queued 20 ms frames, paced by aiortc's pulls, silence when none wait."""

    kind = "audio"

    def __init__(self, sample_rate: int = RATE) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self._frame = frame_bytes(sample_rate)
        self._queue: deque[bytes] = deque(maxlen=MAX_QUEUED_FRAMES)
        self._pending = b""
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0  # frames with agent audio in them (not silence)

    def put(self, pcm: bytes) -> None:
        self._pending += pcm
        while len(self._pending) >= self._frame:
            self._queue.append(self._pending[: self._frame])
            self._pending = self._pending[self._frame :]

    def clear(self) -> None:
        self._queue.clear()
        self._pending = b""

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = self._frame // 2
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += samples
            wait = self._start + self._pts / self.sample_rate - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -RESYNC_S:
                self._start = now - self._pts / self.sample_rate
        if self._queue:
            pcm = self._queue.popleft()
            self.frames_sent += 1
        else:
            pcm = bytes(self._frame)
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = self.sample_rate
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        return frame


class CallerAudio:
    """The caller's decoded frames (any rate, mono or stereo) -> 16-bit mono PCM at `rate`, one resampler per call."""

    def __init__(self, rate: int = RATE) -> None:
        self.rate = rate
        self._from = 0
        self._resampler: soxr.ResampleStream | None = None

    def convert(self, frame: av.AudioFrame) -> bytes:
        samples = frame.to_ndarray().astype(np.float32)
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = samples.reshape(channels, -1).mean(axis=0)
        else:
            mono = samples.reshape(-1, channels).mean(axis=1)
        if frame.sample_rate == self.rate:
            return array_to_pcm(mono)
        if self._resampler is None or frame.sample_rate != self._from:
            self._from = frame.sample_rate
            self._resampler = soxr.ResampleStream(self._from, self.rate, 1, dtype="float32", quality="HQ")
        return array_to_pcm(self._resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32)))


def _loopback(address: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(address).is_loopback
    return False


def reachable_candidates(sdp: str, addresses: tuple[str, ...] | None) -> str:
    """The offer without candidates a loopback-only gateway cannot reach (the browser's LAN and mDNS addresses)."""
    if addresses is None or not all(_loopback(a) for a in addresses):
        return sdp
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    kept = [x for x in lines if not x.startswith("a=candidate:") or _loopback((x.split() + [""] * 5)[4])]
    return "\r\n".join(kept)


def _message(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolViolation(CloseCode.UNSUPPORTED, "binary messages are not used here: media goes over WebRTC")
    return json_object(raw)


async def _first(*awaitables: Awaitable[Any]) -> None:
    """Wait until any of `awaitables` is done; cancel the others."""
    waits = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class WebRtcCall:
    """One browser call: the signalling socket, the peer connection, and the caller leg of the call."""

    wire = NAME
    sample_rate = RATE
    pacing = Pacing(lead_frames=2, send_silence=False)  # aiortc pulls the queue in real time, silence when empty

    def __init__(self, ws: ServerConnection, switchboard: Switchboard, store: Any, settings: WebRtcSettings) -> None:
        self.ws = ws
        self.switchboard = switchboard
        self.store = store  # the call store: its Redis carries this call's events to the page
        self.settings = settings
        self.voice = AgentVoice()
        self.pc: RTCPeerConnection | None = None
        self.call: Call | None = None
        self.call_id = ""
        self.times: dict[str, float] = {"socket": time.monotonic()}
        self.caller_audio_s = 0.0
        self._last_audio = 0.0
        self._media = asyncio.Event()  # the first caller audio arrived
        self._failed = asyncio.Event()  # the peer connection failed or closed
        self._tasks: list[asyncio.Task] = []
        self._pubsub: Any = None

    # --- the caller leg ---
    async def send_audio(self, pcm: bytes | None) -> None:
        if pcm is not None:
            self.voice.put(pcm)

    async def clear(self) -> None:
        self.voice.clear()

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        await self._send({"type": "hangup", "reason": reason.value})
        await self._close_peer()
        await self.ws.close(CloseCode.NORMAL, f"hangup: {reason.value}"[:120])

    async def transfer(self, handoff: Handoff) -> bool:
        return False

    # --- one call from offer to hang-up ---
    async def run(self) -> None:
        try:
            admission = self.switchboard.admit()
        except Refused as refused:
            await self.ws.close(CloseCode.TRY_AGAIN, f"gateway {refused.why}, try again later")
            return
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                offer = await self._offer()
                await self._answer(offer)
                await _first(self._media.wait(), self._failed.wait(), self.ws.wait_closed())
            if self.ws.state is State.CLOSED:
                raise ConnectionClosed(self.ws.close_rcvd, self.ws.close_sent)  # the page went while connecting
            if not self._media.is_set():
                raise ProtocolViolation(CloseCode.PROTOCOL, "the media connection failed (ICE/DTLS)")
            self.call_id = self.switchboard.unique_id(f"{NAME}-{uuid.uuid4().hex[:12]}")
            await self._follow(self.call_id)
            timings = {k: round((v - self.times["socket"]) * 1000, 1) for k, v in self.times.items()}
            log.info("call %s connected: %s ms", self.call_id, timings)
            await self._send({"type": "call", "call": self.call_id, "ms": timings})  # before any event of the call
            await admission.run(self, self.call_id, self._media_until_over)
        except TimeoutError:
            message = f"timeout: no audio from the caller within {self.settings.timeout_s:g} s"
            log.warning("webrtc connection from %s closed: %s", self.ws.remote_address, message)
            await self._send({"type": "error", "message": message})
            await self.ws.close(CloseCode.PROTOCOL, message)
        except ProtocolViolation as exc:
            log.warning("webrtc connection from %s closed: %s", self.ws.remote_address, exc.reason)
            await self._send({"type": "error", "message": exc.reason})
            await self.ws.close(exc.code, exc.reason[:120])
        except ConnectionClosed:
            pass
        except Exception:  # one bad call never disturbs another
            log.exception("webrtc call failed")
            await self.ws.close(CloseCode.INTERNAL, "internal error")
        finally:
            admission.release()
            if self.call_id:
                log.info(
                    "call %s: %.1f s of caller audio in, %.1f s of agent audio out",
                    self.call_id,
                    self.caller_audio_s,
                    self.voice.frames_sent * FRAME_MS / 1000,
                )
            await self._close_peer()
            await self.ws.close(CloseCode.NORMAL)

    async def _media_until_over(self, call: Call) -> EndReason:
        self.call = call
        try:
            return await self._until_over()
        except ConnectionClosed:
            return EndReason.CONNECTION_LOST

    async def _offer(self) -> RTCSessionDescription:
        message = _message(await self.ws.recv())
        sdp = message.get("sdp")
        if message.get("type") != "offer" or not isinstance(sdp, str):
            raise ProtocolViolation(CloseCode.PROTOCOL, 'the first message must be {"type": "offer", "sdp": "..."}')
        self.times["offer"] = time.monotonic()
        return RTCSessionDescription(sdp=reachable_candidates(sdp, self.settings.addresses), type="offer")

    async def _answer(self, offer: RTCSessionDescription) -> None:
        offer_host_candidates(self.settings.addresses)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        PEERS.add(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._listen(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.times["connected"] = time.monotonic()
            elif pc.connectionState in ("failed", "closed"):
                self._failed.set()

        try:
            await pc.setRemoteDescription(offer)
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise ProtocolViolation(CloseCode.INVALID_DATA, "bad offer: no audio in it")
            pc.addTrack(self.voice)
            await pc.setLocalDescription(await pc.createAnswer())
        except ProtocolViolation:
            raise
        except Exception as exc:  # aiortc's parser and negotiation raise many kinds: all mean a bad offer
            raise ProtocolViolation(CloseCode.INVALID_DATA, f"bad offer: {exc}"[:110]) from None
        await self._send({"type": "answer", "sdp": pc.localDescription.sdp})
        self.times["answer"] = time.monotonic()

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Caller audio -> 16 kHz PCM -> the session (dropped until the call starts)."""
        caller = CallerAudio()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self._last_audio = time.monotonic()
                self.caller_audio_s += frame.samples / frame.sample_rate
                if not self._media.is_set():
                    self.times["media"] = self._last_audio
                    self._media.set()
                pcm = caller.convert(frame)
                if self.call is not None and pcm:
                    self.call.audio(pcm)

    async def _follow(self, call_id: str) -> None:
        """This call's events from Redis to the page: subscribed before the session starts, so none is missed."""
        self._pubsub = self.store.redis.pubsub()
        await self._pubsub.subscribe(events_channel(call_id))
        self._tasks.append(asyncio.create_task(self._forward(call_id)))

    async def _forward(self, call_id: str) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "message":
                continue
            with contextlib.suppress(ValueError, TypeError):
                event = json.loads(message["data"])
                if isinstance(event, dict):
                    await self._send({"type": "event", "event": event})

    async def _until_over(self) -> EndReason:
        """The call runs until the page hangs up or goes, or the media stops; returns why it ended."""
        reader = asyncio.create_task(self._read())
        watchdog = asyncio.create_task(self._watch())
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            return done.pop().result()
        finally:
            for task in (reader, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _read(self) -> EndReason:
        async for raw in self.ws:
            message = _message(raw)
            kind = message.get("type")
            if kind == "dtmf":
                digit = str(message.get("digit", ""))
                if len(digit) == 1 and digit in KEYS:
                    if self.call is not None:
                        self.call.key(digit)
                else:
                    log.warning("call %s: a key that is not on a phone keypad ignored", self.call_id)
            elif kind == "hangup":
                return EndReason.CALLER_HUNG_UP
            else:
                log.warning("call %s: unknown message type %r ignored", self.call_id, str(kind)[:40])
        return EndReason.CALLER_HUNG_UP  # the page closed the socket (tab closed, reloaded)

    async def _watch(self) -> EndReason:
        while True:
            await asyncio.sleep(0.5)
            if self._failed.is_set():
                return EndReason.CONNECTION_LOST
            if time.monotonic() - self._last_audio > self.settings.timeout_s:
                return EndReason.MEDIA_TIMEOUT

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):  # the page is gone: the read side ends the call
            await self.ws.send(json.dumps(message, ensure_ascii=False))

    async def _close_peer(self) -> None:
        """Everything this call holds: the outbound track, the peer connection, its tasks, the subscription."""
        self.voice.stop()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
            PEERS.discard(self.pc)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None


async def handle(ws: ServerConnection, switchboard: Switchboard, store: Any, settings: WebRtcSettings) -> None:
    await WebRtcCall(ws, switchboard, store, settings).run()
