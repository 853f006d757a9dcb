"""RTP packets, RFC 4733 telephone-events and the jitter buffer, fuzzed.

Properties: parse_rtp raises only RtpError and its payload lies inside the datagram; a DtmfDetector fed any
packets raises only RtpError and reports keypad keys only; a JitterBuffer fed any sequence of sequence numbers,
timestamps and frames never raises, holds a bounded number of packets, gives back only whole 16-bit frames, and
holds nothing after a flush; a call's RtpStream fed any datagrams from anywhere hands on only whole frames and
keypad keys.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Harness, budget, corpus_lines, explicit, mutants
from voice_gateway.transports.rtp import (
    DTMF_EVENTS,
    MAX_GAP_PACKETS,
    DtmfDetector,
    JitterBuffer,
    RtpError,
    build_dtmf,
    build_rtp,
    decode,
    parse_rtp,
)
from voice_gateway.transports.sip.media import RtpStream
from voice_gateway.transports.sip.sdp import MediaOffer

SEEDS = [bytes.fromhex(line) for line in corpus_lines("rtp", "packets.hex")]
MUTANTS_PER_EXAMPLE = 32

PACKETS = Harness("rtp-parse")
DTMF = Harness("rfc4733-dtmf")
JITTER = Harness("rtp-jitter-buffer")


def check_packet(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert 0 <= packet.payload_type < 128 and 0 <= packet.sequence < 65536, packet
    assert len(packet.payload) <= len(data) - 12 and packet.payload in data, packet
    if packet.payload_type in (0, 8):
        pcm = decode("PCMU" if packet.payload_type == 0 else "PCMA", packet.payload)
        assert len(pcm) == 2 * len(packet.payload)


@settings(max_examples=budget(len(SEEDS) + 800))
@explicit(*SEEDS)
@given(st.binary(max_size=400))
@PACKETS
def test_random_datagrams(data: bytes) -> None:
    PACKETS.check(check_packet, data)


@settings(max_examples=budget(1000))
@given(pick=st.integers(0, len(SEEDS) - 1), seed=st.integers(0, 2**32 - 1))
@PACKETS
def test_mutated_packets(pick: int, seed: int) -> None:
    for data in mutants(SEEDS, pick, seed, MUTANTS_PER_EXAMPLE):
        PACKETS.check(check_packet, data)


def run_detector(packets: list[bytes]) -> list[str]:
    detector, keys = DtmfDetector(), []
    for data in packets:
        try:
            key = detector.feed(parse_rtp(data))
        except RtpError:
            continue
        if key is not None:
            assert key in DTMF_EVENTS, key
            keys.append(key)
    return keys


@settings(max_examples=budget(1000))
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
@DTMF
def test_telephone_event_streams(seed: int, length: int) -> None:
    """Events as phones send them (start, repeats, three ends), reordered, cut short, repeated or garbled."""
    rng = random.Random(seed)
    packets, sequence, timestamp = [], rng.randrange(65536), rng.randrange(2**32)
    while len(packets) < length:
        key = rng.choice(DTMF_EVENTS + "?")
        event_ts = timestamp
        for step in range(rng.randrange(1, 8)):
            end = step >= 3 and rng.random() < 0.5
            payload = build_dtmf(key, end=end, duration=160 * step) if key != "?" else bytes([rng.randrange(256)] * 4)
            if rng.random() < 0.1:
                payload = payload[: rng.randrange(4)]  # shorter than an event
            packets.append(build_rtp(101, sequence, event_ts, 0x1234, payload, marker=step == 0))
            sequence = (sequence + 1) & 0xFFFF
        timestamp = (timestamp + rng.choice((0, 160, 800, 2**31))) & 0xFFFFFFFF
    if rng.random() < 0.3:
        rng.shuffle(packets)
    packets = [next(mutants([p], 0, rng.randrange(2**32), 1)) if rng.random() < 0.1 else p for p in packets]
    DTMF.check(run_detector, packets)


def run_jitter(steps: list[tuple[int, int, bytes]], depth_ms: int) -> None:
    buffer = JitterBuffer(depth_ms=depth_ms)
    for sequence, timestamp, pcm in steps:
        for frame in buffer.push(sequence, timestamp, pcm):
            assert frame and len(frame) % 2 == 0, len(frame)
        assert len(buffer._held) <= MAX_GAP_PACKETS + 1, len(buffer._held)
    for frame in buffer.flush():
        assert frame and len(frame) % 2 == 0
    assert not buffer._held and buffer.held_ms == 0
    stats = buffer.stats
    assert stats.received == len(steps), stats


@settings(max_examples=budget(1000))
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 200), depth_ms=st.sampled_from([0, 20, 60, 200]))
@JITTER
def test_jitter_buffer_with_loss_reordering_duplicates_and_restarts(seed: int, length: int, depth_ms: int) -> None:
    rng = random.Random(seed)
    sequence, timestamp, steps = rng.randrange(65536), rng.randrange(2**32), []
    sizes = [320, 320, 320, 160, 640, 0, 2]  # decoded G.711 (20 ms mostly, any length); empty: a telephone-event
    while len(steps) < length:
        size = rng.choice(sizes)
        steps.append((sequence, timestamp, rng.randbytes(8) * (size // 8) if size >= 8 else bytes(size)))
        move = rng.random()
        if move < 0.7:
            sequence += 1
        elif move < 0.8:
            sequence += rng.randrange(2, 80)  # loss, small and large
        elif move < 0.9:
            sequence -= rng.randrange(0, 5)  # duplicates and late packets
        else:
            sequence = rng.randrange(65536)  # a restart
        sequence &= 0xFFFF
        timestamp = (timestamp + rng.choice((160, 160, 0, 320, 2**31))) & 0xFFFFFFFF
    if rng.random() < 0.3:
        i = rng.randrange(len(steps))
        j = rng.randrange(len(steps))
        steps[i], steps[j] = steps[j], steps[i]
    JITTER.check(run_jitter, steps, depth_ms)


STREAM = Harness("rtp-stream")


def run_stream(datagrams: list[tuple[bytes, tuple[str, int]]], offer: MediaOffer) -> None:
    """A call's RTP stream fed datagrams as the socket would: from the caller's address and from elsewhere."""
    heard: list[bytes] = []
    keys: list[str] = []
    stream = RtpStream(offer, "fuzz", heard.append, keys.append, latch_host="192.0.2.99")
    for data, source in datagrams:
        stream.datagram_received(data, source)
    stream.check_inbound(stream._last_rx + 10)
    assert all(chunk and len(chunk) % 2 == 0 for chunk in heard)
    assert all(key in DTMF_EVENTS for key in keys), keys


@settings(max_examples=budget(800))
@given(
    picks=st.lists(st.integers(0, len(SEEDS) - 1), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    codec=st.sampled_from([(0, "PCMU"), (8, "PCMA")]),
)
@STREAM
def test_a_calls_rtp_stream_fed_mutated_packets(picks: list[int], seed: int, codec: tuple[int, str]) -> None:
    rng = random.Random(seed)
    offer = MediaOffer("192.0.2.10", 40000, codec[0], codec[1], 101)
    sources = [("192.0.2.10", 40000)] * 6 + [("192.0.2.99", 5), ("198.51.100.1", 40000)]
    datagrams = [
        (
            next(mutants(SEEDS, pick, rng.randrange(2**32), 1)) if rng.random() < 0.5 else SEEDS[pick],
            rng.choice(sources),
        )
        for pick in picks
    ]
    STREAM.check(run_stream, datagrams, offer)
