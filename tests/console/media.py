"""The fake call side of the consoles' WebRTC: an aiortc peer that answers a page's offer, plays it a known tone
and records what the page's microphone sends. Used by FakeBackend (fakes.py) when it is given `media=True`."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

RATE = 48000
FRAME = RATE // 50  # 20 ms
TONE_HZ = 440.0  # what the fake caller plays to the page
MIC_HZ = 660.0  # what the page's fake microphone plays (a file written by write_tone_wav)
RECORD_S = 4.0  # of the page's audio kept per peer


@contextlib.contextmanager
def loopback_candidates() -> Iterator[None]:
    """aiortc offers host candidates on 127.0.0.1 only while inside (aioice has no option for it: process-wide);
    Chromium then needs --allow-loopback-in-peer-connection."""
    default = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = default


def write_tone_wav(path: Path, hz: float = MIC_HZ, seconds: float = 2.0, rate: int = RATE) -> Path:
    """A steady sine (a whole number of cycles, so Chromium's looping of the file does not click)."""
    n = int(rate * seconds)
    cycles = round(hz * seconds)
    t = np.arange(n) / n
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * cycles * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


class Tone(MediaStreamTrack):
    """A sine at `hz`, 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, hz: float = TONE_HZ) -> None:
        super().__init__()
        self.hz = hz
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            wait = self._start + self._pts / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        t = (self._pts + np.arange(FRAME)) / RATE
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * self.hz * t)).astype("<i2")
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(pcm.tobytes())
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


class FakePeer:
    """One browser on one call: answers its offer, plays `Tone`, keeps up to RECORD_S of the page's audio."""

    def __init__(self, call_id: str, user: str, action: str, hz: float = TONE_HZ) -> None:
        self.call_id, self.user, self.action = call_id, user, action
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(Tone(hz))
        self.chunks: list[np.ndarray] = []
        self.kept = 0
        self.frames = 0
        self.closed = False
        self._reader: asyncio.Task | None = None
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.frames += 1
                if self.frames <= 25 or self.kept >= RECORD_S * RATE:  # skip the first 0.5 s (start-up)
                    continue
                samples = frame.to_ndarray().astype(np.float32)
                channels = len(frame.layout.channels)
                mono = samples.reshape(-1, channels).mean(axis=1) / 32768
                self.chunks.append(mono)
                self.kept += len(mono)

    async def answer(self, sdp: str) -> dict:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"sdp": self.pc.localDescription.sdp, "type": "answer"}

    def heard(self) -> tuple[float, float]:
        """(rms, peak frequency in Hz) of what the page sent so far."""
        if not self.chunks:
            return 0.0, 0.0
        audio = np.concatenate(self.chunks)
        rms = float(np.sqrt(np.mean(audio**2)))
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        return rms, float(np.argmax(spectrum) * RATE / len(audio))

    async def close(self) -> None:
        self.closed = True
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
