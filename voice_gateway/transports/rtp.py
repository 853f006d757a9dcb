"""RTP for the SIP transport: packets (RFC 3550), G.711 payloads, telephone-events (RFC 4733), a jitter buffer.

Pure functions and small classes with no I/O, so that they can be tested with plain calls. The jitter buffer is
packet driven: in-order packets go straight out, a gap waits at most `depth_ms` for the missing packet before it
is declared lost and concealed (the last frame once at half level, then silence).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from voice_gateway.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
CODECS = {0: "PCMU", 8: "PCMA"}  # static payload types (RFC 3551)
CLOCK_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
MAX_GAP_PACKETS = 50  # a hole of more than 1 s of packets is a new stream (sender restarted), not loss to conceal
DTMF_EVENTS = "0123456789*#ABCD"


class RtpError(ValueError):
    """A datagram that is not an RTP packet we can use."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False


def parse_rtp(data: bytes) -> RtpPacket:
    """One RTP datagram: version 2, CSRCs, header extension and padding handled."""
    if len(data) < HEADER.size:
        raise RtpError(f"{len(data)} bytes is too short for RTP")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}")
    offset = HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4 bytes of profile and length, then length 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20 and end > offset:
        end -= data[-1]
    if end < offset:
        raise RtpError("truncated RTP packet")
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    return HEADER.pack(0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF) + payload


def decode(codec: str, payload: bytes) -> bytes:
    """G.711 payload ("PCMU" or "PCMA") -> 16-bit PCM at 8 kHz."""
    return ulaw_decode(payload) if codec == "PCMU" else alaw_decode(payload)


def encode(codec: str, pcm: bytes) -> bytes:
    return ulaw_encode(pcm) if codec == "PCMU" else alaw_encode(pcm)


def silence(codec: str, samples: int = FRAME_SAMPLES) -> bytes:
    """Encoded digital silence (what the sender transmits between the agent's words)."""
    return (b"\xff" if codec == "PCMU" else b"\xd5") * samples


# --- RFC 4733 telephone-events ---
@dataclass(frozen=True)
class DtmfEvent:
    key: str
    end: bool
    volume: int
    duration: int


def parse_dtmf(payload: bytes) -> DtmfEvent | None:
    """A telephone-event payload; None for events that are not keypad keys (e.g. tones)."""
    if len(payload) < 4:
        raise RtpError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DTMF_EVENTS):
        return None
    return DtmfEvent(DTMF_EVENTS[event], bool(flags & 0x80), flags & 0x3F, duration)


def build_dtmf(key: str, *, end: bool, duration: int, volume: int = 10) -> bytes:
    index = DTMF_EVENTS.index(key.upper())
    return struct.pack("!BBH", index, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


class DtmfDetector:
    """Turns a stream of telephone-event packets into key presses: one per event (its RTP timestamp)."""

    def __init__(self) -> None:
        self._last: int | None = None

    def feed(self, packet: RtpPacket) -> str | None:
        event = parse_dtmf(packet.payload)
        if event is None or packet.timestamp == self._last:
            return None  # a continuation or one of the redundant end packets of an event already reported
        self._last = packet.timestamp
        return event.key


# --- jitter buffer ---
@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    lost: int = 0
    late: int = 0  # arrived after its place had been concealed
    duplicate: int = 0
    reordered: int = 0  # arrived after a later packet, still in time
    resyncs: int = 0


def conceal(last: bytes | None, samples: int, first: bool) -> bytes:
    """Packet loss concealment: the previous frame once at half level, then silence."""
    if first and last is not None and len(last) == 2 * samples:
        return (np.frombuffer(last, "<i2") // 2).astype("<i2").tobytes()
    return b"\x00" * (2 * samples)


@dataclass
class JitterBuffer:
    """Orders 8 kHz PCM frames by RTP sequence number; loss costs at most `depth_ms` of delay, then concealment.

    `push` returns the frames that may be played now, in order. `flush` releases everything held (the stream
    stalled or ended), concealing the holes. Packets of other payload types in the same stream (telephone-events,
    comfort noise) are pushed with empty audio, so that their sequence numbers do not count as losses.
    """

    depth_ms: int = 60
    clock_rate: int = CLOCK_RATE
    stats: JitterStats = field(default_factory=JitterStats)
    _expected: int | None = None  # next sequence number to play
    _next_ts: int | None = None  # its RTP timestamp
    _held: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq -> (timestamp, pcm)
    _last: bytes | None = None
    _concealing: bool = False
    _played: deque[int] = field(default_factory=lambda: deque(maxlen=64))  # to tell duplicates from late packets

    def push(self, sequence: int, timestamp: int, pcm: bytes) -> list[bytes]:
        self.stats.received += 1
        if self._expected is None:
            self._start(sequence, timestamp)
        ahead = (sequence - self._expected) & 0xFFFF
        if ahead >= 0x8000:  # behind what was already played or concealed
            if (self._expected - sequence) & 0xFFFF > 1000:  # far behind: the sender restarted its numbering
                return self._resync(sequence, timestamp, pcm)
            if sequence in self._played:
                self.stats.duplicate += 1
            else:
                self.stats.late += 1
            return []
        if ahead > MAX_GAP_PACKETS:
            return self._resync(sequence, timestamp, pcm)
        if sequence in self._held:
            self.stats.duplicate += 1
            return []
        if self._held and any(((s - sequence) & 0xFFFF) < 0x8000 for s in self._held):
            self.stats.reordered += 1
        self._held[sequence] = (timestamp, pcm)
        return self._release(force=False)

    def flush(self) -> list[bytes]:
        return self._release(force=True)

    @property
    def held_ms(self) -> int:
        return sum(len(pcm) // 2 for _, pcm in self._held.values()) * 1000 // self.clock_rate

    def _start(self, sequence: int, timestamp: int) -> None:
        self._expected, self._next_ts = sequence, timestamp

    def _resync(self, sequence: int, timestamp: int, pcm: bytes) -> list[bytes]:
        out = self._release(force=True)
        self.stats.resyncs += 1
        self._held.clear()
        self._start(sequence, timestamp)
        self._held[sequence] = (timestamp, pcm)
        return out + self._release(force=False)

    def _release(self, *, force: bool) -> list[bytes]:
        out: list[bytes] = []
        while self._held:
            assert self._expected is not None and self._next_ts is not None
            item = self._held.pop(self._expected, None)
            if item is not None:
                timestamp, pcm = item
                if pcm:  # empty: a packet of another payload type (a telephone-event) that used this number
                    out.append(pcm)
                    self._last, self._concealing = pcm, False
                self.stats.played += 1
                self._played.append(self._expected)
                self._expected = (self._expected + 1) & 0xFFFF
                self._next_ts = (timestamp + len(pcm) // 2) & 0xFFFFFFFF
                continue
            if not force and self.held_ms < self.depth_ms:
                break  # wait a little longer for the missing packet
            # the expected packet is lost: conceal its time and move on
            samples = len(self._last) // 2 if self._last else FRAME_SAMPLES
            out.append(conceal(self._last, samples, first=not self._concealing))
            self._concealing = True
            self.stats.lost += 1
            self._expected = (self._expected + 1) & 0xFFFF
            self._next_ts = (self._next_ts + samples) & 0xFFFFFFFF
        return out
