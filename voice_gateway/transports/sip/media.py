"""One call's RTP: caller audio through the jitter buffer (and RFC 4733 keys) in, one 20 ms G.711 packet out.

`send_frame` (agent audio) and `send_silence` (nothing to say this tick) each send exactly one packet now;
`check_inbound` feeds silence to the call when the caller has gone quiet on the wire. `run` is today's 20 ms
clock that calls them; it goes when a per-call bridge clock drives them instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import Counter

from voice_gateway.transports.rtp import (
    CLOCK_RATE,
    FRAME_SAMPLES,
    DtmfDetector,
    JitterBuffer,
    RtpError,
    build_rtp,
    decode,
    encode,
    parse_rtp,
    silence,
)
from voice_gateway.transports.sip.sdp import MediaOffer

log = logging.getLogger("hotline.sip")

INBOUND_STALL_S = 0.2  # no RTP for this long: release the jitter buffer and feed silence (keeps endpointing going)
FRAME_S = FRAME_SAMPLES / CLOCK_RATE

RTP_WRONG_SOURCE = Counter("hotline_rtp_wrong_source_total", "RTP packets ignored: not from the negotiated address")
RTP_BAD = Counter("hotline_rtp_bad_packets_total", "Datagrams on an RTP port that are not usable RTP")
RTP_LOST = Counter("hotline_rtp_lost_packets_total", "Caller RTP packets lost (concealed)")
RTP_LATE = Counter("hotline_rtp_late_packets_total", "Caller RTP packets that arrived too late to play")


class RtpStream(asyncio.DatagramProtocol):
    """One call's RTP socket: caller audio and keys to `on_audio`/`on_key`, agent audio out one packet at a time.

    `latch_host`: accept the caller's RTP from this host (its signalling address) instead of the SDP address,
    once, for callers behind NAT.
    """

    def __init__(
        self,
        offer: MediaOffer,
        name: str,
        on_audio: Callable[[bytes], None],
        on_key: Callable[[str], None],
        *,
        latch_host: str | None = None,
    ) -> None:
        self.offer = offer
        self.name = name
        self.on_audio, self.on_key = on_audio, on_key
        self.latch_host = latch_host
        self.remote = (offer.address, offer.port)
        self.jitter = JitterBuffer()
        self.dtmf = DtmfDetector()
        self.transport: asyncio.DatagramTransport | None = None
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._quiet = silence(offer.codec)
        self._talking = False
        self._last_rx = time.monotonic()
        self._latched = False
        self._reported = (0, 0)  # lost, late already counted in the metrics

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self.transport = transport

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    # --- caller to us ---
    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        if source != self.remote:
            latch = self.latch_host is not None and not self._latched and source[0] == self.latch_host
            if not latch:
                RTP_WRONG_SOURCE.inc()
                return
            self.remote, self._latched = source, True
        try:
            packet = parse_rtp(data)
        except RtpError:
            RTP_BAD.inc()
            return
        self._last_rx = time.monotonic()
        audio = packet.payload_type == self.offer.payload_type and packet.payload
        pcm = decode(self.offer.codec, packet.payload) if audio else b""  # other types hold their place, silently
        self._deliver(self.jitter.push(packet.sequence, packet.timestamp, pcm))
        if packet.payload_type == self.offer.dtmf_type:
            try:
                key = self.dtmf.feed(packet)
            except RtpError:
                RTP_BAD.inc()
                return
            if key:
                self.on_key(key)

    def check_inbound(self, now: float) -> None:
        """The caller silent on the wire (DTX, hold) for a while: time still passes, so deliver 20 ms of silence."""
        if now - self._last_rx > INBOUND_STALL_S:
            self._deliver([*self.jitter.flush(), b"\x00" * (2 * FRAME_SAMPLES)])

    def _deliver(self, frames: list[bytes]) -> None:
        stats = self.jitter.stats
        if (stats.lost, stats.late) != self._reported:
            RTP_LOST.inc(stats.lost - self._reported[0])
            RTP_LATE.inc(stats.late - self._reported[1])
            self._reported = (stats.lost, stats.late)
        if frames:
            self.on_audio(b"".join(frames))

    def negotiated(self, offer: MediaOffer) -> None:
        """A call we placed was answered: the far end's address and chosen codec from now on (our socket stays)."""
        self.offer, self.remote, self._quiet = offer, (offer.address, offer.port), silence(offer.codec)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: RTP socket error: %s", self.name, exc)

    # --- us to the caller ---
    def send_frame(self, pcm: bytes) -> None:
        """Encode one 20 ms frame of agent audio (8 kHz PCM) and send it as one RTP packet now.

        The first frame after silence carries the marker bit; sequence number and timestamp advance by one frame.
        """
        self._send(encode(self.offer.codec, pcm), marker=not self._talking)
        self._talking = True

    def send_silence(self) -> None:
        """One 20 ms packet of digital silence now: nothing to say this tick (the stream stays continuous)."""
        self._send(self._quiet, marker=False)
        self._talking = False

    def _send(self, payload: bytes, *, marker: bool) -> None:
        if self.transport is not None and self.offer.direction != "inactive":
            packet = build_rtp(self.offer.payload_type, self._seq, self._ts, self.ssrc, payload, marker)
            self.transport.sendto(packet, self.remote)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
