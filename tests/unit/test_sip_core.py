"""SIP/RTP building blocks with plain calls: RTP packets, telephone-events, the jitter buffer, SDP offer/answer,
message checks, digest authentication, settings."""

from __future__ import annotations

import numpy as np
import pytest
from aiosipua.auth import SipDigestAuth, build_credentials
from aiosipua.header_codec import parse_auth, stringify_auth

from voice_gateway.transports.rtp import (
    DtmfDetector,
    JitterBuffer,
    RtpError,
    build_dtmf,
    build_rtp,
    decode,
    encode,
    parse_dtmf,
    parse_rtp,
)
from voice_gateway.transports.sip import (
    BadRequest,
    DigestAuth,
    NoCommonCodec,
    SdpError,
    answer_sdp,
    bare_response,
    mask_user,
    negotiate,
    parse_agents,
    parse_allow,
    parse_message,
    session_name,
)


def frame(value: int) -> bytes:
    return np.full(160, value, "<i2").tobytes()


# --- RTP ---
def test_rtp_round_trip_and_header_extras() -> None:
    packet = parse_rtp(build_rtp(8, 65535, 2**32 - 1, 0xDEADBEEF, b"\xd5" * 160, marker=True))
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (8, 65535, 2**32 - 1, 0xDEADBEEF)
    assert packet.marker and packet.payload == b"\xd5" * 160
    # one CSRC, a one-word header extension and 3 bytes of padding around a 4-byte payload
    raw = bytes([0xB1, 0x00]) + (7).to_bytes(2, "big") + bytes(8) + bytes(4)
    raw += b"\xbe\xde\x00\x01" + bytes(4) + b"abcd" + b"\x00\x00\x03"
    assert parse_rtp(raw).payload == b"abcd"


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + bytes(20), bytes([0x90]) + bytes(12)])
def test_garbage_is_not_rtp(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_g711_both_laws_through_the_codec_names() -> None:
    pcm = (np.sin(np.arange(160) / 5) * 10000).astype("<i2").tobytes()
    for codec in ("PCMU", "PCMA"):
        back = np.frombuffer(decode(codec, encode(codec, pcm)), "<i2").astype(float)
        assert np.max(np.abs(back - np.frombuffer(pcm, "<i2"))) < 700


def test_a_telephone_event_is_one_key_however_often_it_is_repeated() -> None:
    detector = DtmfDetector()
    keys = []
    for ts, end in [(1000, False), (1000, False), (1000, True), (1000, True), (1000, True), (2000, False)]:
        packet = parse_rtp(build_rtp(101, 1, ts, 1, build_dtmf("#" if ts == 1000 else "0", end=end, duration=160)))
        keys.append(detector.feed(packet))
    assert keys == ["#", None, None, None, None, "0"]
    assert parse_dtmf(bytes([16, 0x80, 0, 160])) is None  # a tone, not a key
    with pytest.raises(RtpError):
        parse_dtmf(b"\x01")


# --- jitter buffer ---
def test_in_order_packets_pass_straight_through() -> None:
    jb = JitterBuffer()
    out = [jb.push(seq, seq * 160, frame(seq)) for seq in range(5)]
    assert out == [[frame(seq)] for seq in range(5)]
    assert jb.stats.lost == 0


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer()
    out = []
    for seq in (0, 2, 1, 4, 3, 5):
        out += jb.push(seq, seq * 160, frame(seq))
    assert out == [frame(seq) for seq in range(6)]
    assert jb.stats.reordered == 2 and jb.stats.lost == 0


def test_a_lost_packet_is_concealed_after_at_most_the_depth() -> None:
    jb = JitterBuffer(depth_ms=60)
    out = jb.push(0, 0, frame(1000))
    assert jb.push(2, 320, frame(2)) == [] and jb.push(3, 480, frame(3)) == []  # 40 ms held: still waiting for 1
    out += jb.push(4, 640, frame(4))  # 60 ms held: 1 is lost
    assert out == [frame(1000), frame(500), frame(2), frame(3), frame(4)]  # half the last frame fills the hole
    assert jb.stats.lost == 1
    assert jb.push(1, 160, frame(1)) == [] and jb.stats.late == 1  # too late: dropped


def test_a_burst_loss_is_half_level_once_then_silence_and_flush_releases_everything() -> None:
    jb = JitterBuffer()
    out = jb.push(10, 0, frame(800))
    out += jb.push(14, 640, frame(14))
    out += jb.flush()
    assert out == [frame(800), frame(400), frame(0), frame(0), frame(14)]
    assert jb.stats.lost == 3 and jb.held_ms == 0


def test_telephone_events_in_the_stream_are_not_losses() -> None:
    jb = JitterBuffer()
    out = jb.push(0, 0, frame(1)) + jb.push(1, 160, b"") + jb.push(2, 160, b"") + jb.push(3, 480, frame(3))
    assert out == [frame(1), frame(3)] and jb.stats.lost == 0


def test_duplicates_wraparound_and_restarts() -> None:
    jb = JitterBuffer()
    out = []
    for seq in (65534, 65535, 65535, 0, 1):
        out += jb.push(seq, seq * 160, frame(seq % 7))
    assert len(out) == 4 and jb.stats.duplicate == 1 and jb.stats.lost == 0
    out = jb.push(30000, 0, frame(9))  # a new stream far away in sequence space: resynchronise, no fake loss
    assert out == [frame(9)] and jb.stats.resyncs == 1 and jb.stats.lost == 0


# --- SDP ---
OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


def test_the_first_offered_g711_codec_and_telephone_event_are_chosen() -> None:
    offer = negotiate(OFFER)
    assert (offer.address, offer.port, offer.codec, offer.payload_type, offer.dtmf_type) == (
        "192.0.2.10",
        40000,
        "PCMA",
        8,
        101,
    )
    answer = answer_sdp(offer, "198.51.100.7", 30000, 42)
    assert "c=IN IP4 198.51.100.7" in answer and "m=audio 30000 RTP/AVP 8 101" in answer
    assert "a=rtpmap:8 PCMA/8000" in answer and "a=rtpmap:101 telephone-event/8000" in answer
    assert answer.index("m=audio") < answer.index("m=video 0 RTP/AVP 96")  # other streams refused in place


def test_static_payload_types_without_rtpmap_and_media_level_connection() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18 0\r\nc=IN IP4 10.0.0.2\r\n"
    offer = negotiate(sdp)
    assert (offer.address, offer.codec, offer.payload_type, offer.dtmf_type) == ("10.0.0.2", "PCMU", 0, None)
    assert "a=sendrecv" in answer_sdp(offer, "10.0.0.9", 1, 1)
    assert "a=recvonly" in answer_sdp(negotiate(sdp + "a=sendonly\r\n"), "10.0.0.9", 1, 1)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("hello world", SdpError),
        ("v=0\r\nthis is not sdp\r\n", SdpError),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", SdpError),  # no m= line
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio notaport RTP/AVP 0\r\n", SdpError),
        ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n", SdpError),  # no c=
        ("v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 4000 RTP/AVP 0\r\n", SdpError),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18 9\r\na=rtpmap:9 G722/8000\r\n", NoCommonCodec),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n", NoCommonCodec),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n", NoCommonCodec),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n", NoCommonCodec),
    ],
)
def test_bad_offers(body: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        negotiate(body)


# --- SIP messages ---
HEAD = (
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:13800138000@pbx>;tag=a\r\n"
    "To: <sip:12333@gw>\r\nCall-ID: abc@pbx\r\n"
)


def test_a_valid_request_parses() -> None:
    message = parse_message(f"OPTIONS sip:12333@gw SIP/2.0\r\n{HEAD}CSeq: 1 OPTIONS\r\n\r\n".encode())
    assert message.method == "OPTIONS" and message.call_id == "abc@pbx"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("HELLO\r\n\r\n", "Malformed Request-Line"),
        (f"INVITE sip:x SIP/3.0\r\n{HEAD}CSeq: 1 INVITE\r\n\r\n", "Malformed Request-Line"),
        (f"INVITE http://x SIP/2.0\r\n{HEAD}CSeq: 1 INVITE\r\n\r\n", "Request-URI"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD}\r\n", "Missing CSeq header"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD.replace('Call-ID', 'X-Call')}CSeq: 1 INVITE\r\n\r\n", "Missing Call-ID"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD}CSeq: one INVITE\r\n\r\n", "Malformed CSeq"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD}CSeq: 1 BYE\r\n\r\n", "does not match"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD}CSeq: 1 INVITE\r\nContent-Length: 500\r\n\r\nv=0", "exceeds the body"),
        (f"INVITE sip:x SIP/2.0\r\n{HEAD}CSeq: 1 INVITE", "No blank line"),
    ],
)
def test_malformed_requests_say_what_is_wrong(raw: str, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_message(raw.encode())


def test_a_400_to_an_unparsable_request_echoes_its_headers() -> None:
    raw = f"INVITE sip:x SIP/2.0\r\n{HEAD}CSeq: broken\r\n\r\n".encode()
    answer = bare_response(raw, 400, "Malformed CSeq").decode()
    assert answer.startswith("SIP/2.0 400 Malformed CSeq\r\n")
    assert "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1" in answer and "Call-ID: abc@pbx" in answer
    assert bare_response(b"\x00\xff garbage", 400, "x") is None  # nothing to route an answer by
    assert bare_response(b"ACK sip:x SIP/2.0\r\n" + HEAD.encode(), 400, "x") is None  # never answer an ACK


# --- digest ---
def test_digest_accepts_the_right_password_only() -> None:
    auth = DigestAuth("pbx", "s3cret")
    challenge = parse_auth(auth.challenge())
    good = build_credentials(SipDigestAuth("pbx", "s3cret"), challenge, "INVITE", "sip:12333@gw")
    bad = build_credentials(SipDigestAuth("pbx", "guess"), challenge, "INVITE", "sip:12333@gw")
    assert good is not None and bad is not None
    assert auth.check("INVITE", stringify_auth(good)) == "ok"
    assert auth.check("INVITE", stringify_auth(bad)) == "bad"
    assert auth.check("INVITE", None) == "missing"
    assert auth.check("INVITE", 'Digest username="pbx", nonce="forged.0", response="x"') == "bad"
    later = int(challenge.params["nonce"].split(".")[0], 16) + 3600
    assert auth.check("INVITE", stringify_auth(good), now=later) == "stale"
    assert DigestAuth("pbx", "s3cret").check("INVITE", stringify_auth(good)) == "bad"  # another process's nonce


# --- settings, names, privacy ---
def test_settings_parsing() -> None:
    assert [str(n) for n in parse_allow("10.0.0.0/8, 192.168.1.7")] == ["10.0.0.0/8", "192.168.1.7/32"]
    with pytest.raises(ValueError, match="HOTLINE_SIP_ALLOW"):
        parse_allow("10.0.0.0/33")
    assert parse_agents("general=sip:agent@10.0.0.5, wage=sip:wage@pbx") == {
        "general": "sip:agent@10.0.0.5",
        "wage": "sip:wage@pbx",
    }
    with pytest.raises(ValueError, match="HOTLINE_SIP_AGENTS"):
        parse_agents("general=http://x")


def test_call_names_are_sanitised_and_phone_numbers_masked() -> None:
    assert session_name("a84b4c76e66710@pc33.example.com") == "sip-a84b4c76e66710_pc33.example.com"
    assert session_name("x y;<script>") == "sip-x_y__script_"
    long = session_name("A" * 100)
    assert len(long) == 44 and long != session_name("A" * 99 + "B")
    assert mask_user("13800138000") == "*8000" and mask_user(None) == "-"
