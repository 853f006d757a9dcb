"""A person's browser on a call's bridge: an agent, or a supervisor listening, whispering or barging in.

The console posts the page's WebRTC offer (every ICE candidate in it, no trickle); `BrowserPerson.answer` gives
the answer. From then on the person is a bridge `Participant` at 16 kHz: what the bridge mixes for their role is
queued to the browser by an `AgentVoice` track (paced by aiortc), and what their microphone sends is cut into
20 ms frames that the bridge takes one per tick. A connection that fails or closes calls `on_lost` once, so the
desk can put the caller back in the queue instead of leaving them with silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from voice_gateway.audio import frame_bytes
from voice_gateway.bridge import Role
from voice_gateway.transports.webrtc import (
    PEERS,
    AgentVoice,
    CallerAudio,
    WebRtcSettings,
    offer_host_candidates,
    reachable_candidates,
)

log = logging.getLogger("hotline.people")
RATE = 16000
CONNECT_S = 10.0  # a browser whose media has not connected by then counts as gone (a tab closed while connecting)
SILENT_S = 5.0  # a browser sends a packet every 20 ms, silence too: none for this long, it crashed or lost its network
MAX_SAID_FRAMES = 10  # 200 ms of the person's voice waiting for the bridge; more is dropped (a stalled clock)


class BadOffer(ValueError):
    """The page's offer could not be answered (no audio in it, or not SDP at all)."""


class BrowserPerson:
    """One person's WebRTC connection on one call, in one role."""

    sample_rate = RATE

    def __init__(self, name: str, role: Role, settings: WebRtcSettings, on_lost: Callable[[BrowserPerson], None]):
        self.name = name
        self.role = role
        self.settings = settings
        self.on_lost = on_lost
        self.voice = AgentVoice(RATE)  # what they hear
        self.pc: RTCPeerConnection | None = None
        self.joined_at = time.monotonic()
        self.first_heard: float | None = None  # when the first frame from their microphone arrived
        self.last_heard: float | None = None
        self._said: deque[bytes] = deque(maxlen=MAX_SAID_FRAMES)
        self._pending = b""
        self._frame = frame_bytes(RATE)
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._releasing: asyncio.Future | None = None

    # --- the bridge's side (Participant) ---
    def hear(self, pcm: bytes) -> None:
        self.voice.put(pcm)

    def speak(self, due: float) -> bytes | None:
        return self._said.popleft() if self._said else None

    @property
    def active(self) -> bool:
        return True  # a person on the line keeps the clock running

    # --- signalling ---
    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the page's offer; raises `BadOffer`."""
        offer_host_candidates(self.settings.addresses)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        PEERS.add(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._listen(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not self._closed:
                self._lost()

        offer = RTCSessionDescription(sdp=reachable_candidates(offer_sdp, self.settings.addresses), type="offer")
        try:
            await pc.setRemoteDescription(offer)
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise BadOffer("no audio in the offer")
            pc.addTrack(self.voice)
            await pc.setLocalDescription(await pc.createAnswer())
            self._tasks.append(asyncio.create_task(self._connects()))
        except BadOffer:
            await self.close()
            raise
        except Exception as exc:  # aiortc's parser and negotiation raise many kinds: all mean a bad offer
            await self.close()
            raise BadOffer(f"{type(exc).__name__}: {exc}"[:120]) from None
        return pc.localDescription.sdp

    async def _connects(self) -> None:
        """Watch the browser: connected in time, then sending (ICE's own consent checks take ~30 s to give up)."""
        while not self._closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            connected = self.pc is not None and self.pc.connectionState == "connected"
            never_connected = not connected and now - self.joined_at > CONNECT_S
            gone_quiet = connected and self.last_heard is not None and now - self.last_heard > SILENT_S
            if never_connected or gone_quiet:
                self._lost()

    async def _listen(self, track: MediaStreamTrack) -> None:
        convert = CallerAudio(RATE).convert
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.last_heard = time.monotonic()
                if self.first_heard is None:
                    self.first_heard = self.last_heard
                self._pending += convert(frame)
                while len(self._pending) >= self._frame:
                    self._said.append(self._pending[: self._frame])
                    self._pending = self._pending[self._frame :]
        if not self._closed:  # the browser's track ended: the tab closed or the network went
            self._lost()

    def _lost(self) -> None:
        if not self._closed:
            self._closed = True
            log.info("%s's browser (%s) dropped", self.name, self.role.value)
            self.on_lost(self)
            self._releasing = asyncio.ensure_future(self._release())

    async def close(self) -> None:
        """Hang up this person's connection (they left, or the call ended)."""
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        self.voice.stop()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
            PEERS.discard(self.pc)
