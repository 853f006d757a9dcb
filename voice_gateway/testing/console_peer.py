"""A console page's audio side without the page: an aiortc peer that offers, says something, and records.

For tests and benches of the desk: `offer()` gives the JSON body an action posts (every ICE candidate in it, as a
browser sends after gathering), `answered()` takes the desk's answer, `say()` queues 16 kHz PCM for the
person's microphone (silence otherwise), and `heard` keeps what arrived with its arrival time, so a test can tell
whose voice reached whom and how late.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from voice_gateway.transports.webrtc import AgentVoice, CallerAudio, offer_host_candidates

RATE = 16000


def tone(hz: float, seconds: float, rate: int = RATE, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def tone_level(pcm: bytes, hz: float, rate: int = RATE) -> float:
    """How much of `pcm` is a `hz` tone: its share of the signal's energy at that frequency (0..1)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(samples) < rate // 10:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > hz - 15) & (freqs < hz + 15)
    total = spectrum[(freqs > 80) & (freqs < 4000)].sum()
    return float(spectrum[band].sum() / total) if total > 0 else 0.0


class ConsolePeer:
    """One person's browser audio, simulated."""

    def __init__(self, addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.addresses = addresses  # its host candidates (a gateway on loopback reaches only loopback ones)
        self.mic = AgentVoice(RATE)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(self.mic)
        self.heard: list[tuple[float, bytes]] = []
        self._tasks: list[asyncio.Task] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._record(track)))

    async def offer(self) -> dict:
        offer_host_candidates(self.addresses)  # aioice's gathering is process-wide
        await self.pc.setLocalDescription(await self.pc.createOffer())  # aiortc gathers before it returns
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def answered(self, answer: dict) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    def say(self, pcm: bytes) -> None:
        self.mic.put(pcm)

    def freeze(self) -> None:
        """Stop sending without closing anything, as a crashed browser or a pulled cable does."""

        async def never() -> None:
            await asyncio.Event().wait()

        self.mic.recv = never  # type: ignore[method-assign]

    async def _record(self, track: MediaStreamTrack) -> None:
        convert = CallerAudio(RATE).convert
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.heard.append((time.monotonic(), convert(frame)))

    def audio_since(self, since: float) -> bytes:
        return b"".join(pcm for at, pcm in self.heard if at >= since)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
