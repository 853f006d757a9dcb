"""SDP offer/answer, fuzzed: negotiate raises only SdpError (400) or NoCommonCodec (488), and what it accepts is
answered with an SDP that it accepts again, with the same codec, on our address and port."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Harness, budget, corpus, explicit, mutants
from voice_gateway.transports.sip.sdp import NoCommonCodec, SdpError, answer_sdp, negotiate

SEEDS = corpus("sdp", ".sdp")
MUTANTS_PER_EXAMPLE = 16

SDP = Harness("sdp-negotiate")


def check_offer(data: bytes) -> None:
    body = data.decode("utf-8", errors="replace")  # what SipRequest.text gives the server
    try:
        offer = negotiate(body)
    except (SdpError, NoCommonCodec):
        return
    assert offer.codec in ("PCMU", "PCMA") and 0 < offer.port < 65536, offer
    answer = answer_sdp(offer, "192.0.2.1", 40000, 7)
    again = negotiate(answer)
    assert (again.codec, again.address, again.port) == (offer.codec, "192.0.2.1", 40000), answer
    assert again.dtmf_type == offer.dtmf_type, answer


@settings(max_examples=budget(1200))
@given(pick=st.integers(0, len(SEEDS) - 1), seed=st.integers(0, 2**32 - 1))
@SDP
def test_mutated_offers_are_negotiated_or_refused(pick: int, seed: int) -> None:
    for data in mutants(SEEDS, pick, seed, MUTANTS_PER_EXAMPLE):
        SDP.check(check_offer, data)


LINES = {
    "v": ["0", "1", ""],
    "o": ["- 1 1 IN IP4 10.0.0.1", "- x y IN IP6 ::1", "-", "a b c d e f g h"],
    "s": ["-", ""],
    "c": ["IN IP4 10.0.0.1", "IN IP6 2001:db8::1", "IN IP4 10.0.0.1/127", "IN IP4", "IN", "IN IP4 ::1", "IN IP4 a.b"],
    "t": ["0 0", "x"],
    "m": [
        "audio 4000 RTP/AVP 0 8 101",
        "audio 4000 RTP/AVP",
        "audio 4000/2 RTP/AVP 0",
        "audio x RTP/AVP 0",
        "audio 99999 RTP/AVP 0",
        "video 4000 RTP/AVP 96",
        "audio 4000 RTP/SAVPF 0",
        "audio 0 RTP/AVP 0",
        "audio 4000 RTP/AVP 300",
        "audio 4000 RTP/AVP -1",
        "audio 4000 RTP/AVP x",
        "audio",
        "message 9 TCP/MSRP *",
    ],
    "a": [
        "rtpmap:0 PCMU/8000",
        "rtpmap:8 PCMA/8000",
        "rtpmap:101 telephone-event/8000",
        "rtpmap:0 PCMU/16000",
        "rtpmap:x PCMU/8000",
        "rtpmap:0",
        "rtpmap:0 PCMU",
        "rtpmap:0 PCMU/abc",
        "rtpmap:0 PCMU/8000/1",
        "rtpmap:96 opus/48000/2",
        "fmtp:101 0-16",
        "ptime:20",
        "ptime:x",
        "sendonly",
        "recvonly",
        "inactive",
        "rtcp:4001",
        "rtcp-mux",
        "candidate:1 1 UDP 1 10.0.0.1 4000 typ host",
        "x",
        ":",
        "rtpmap:",
    ],
    "b": ["AS:64", "x"],
    "k": ["clear:x"],
}


@st.composite
def sdp_offers(draw: st.DrawFn) -> str:
    """An SDP body line by line: the right kinds of lines in mostly the right order, with odd values."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    lines = ["v=0", f"o={rng.choice(LINES['o'])}", "s=-"]
    for _ in range(rng.randrange(4)):
        kind = rng.choice("cbtak")
        lines.append(f"{kind}={rng.choice(LINES[kind])}")
    for _ in range(rng.choice((1, 1, 2, 3))):
        lines.append(f"m={rng.choice(LINES['m'])}")
        for _ in range(rng.randrange(6)):
            kind = rng.choice("aaaac")
            lines.append(f"{kind}={rng.choice(LINES[kind])}")
    if rng.random() < 0.2:
        rng.shuffle(lines)
    newline = rng.choice(("\r\n", "\r\n", "\n", "\r"))
    return newline.join(lines) + newline


@settings(max_examples=budget(len(SEEDS) + 600))
@explicit(*(seed.decode() for seed in SEEDS))
@given(sdp_offers())
@SDP
def test_offers_built_line_by_line(body: str) -> None:
    SDP.check(check_offer, body.encode())
