"""The SIP message parser, the 400 for what cannot be parsed, our responses, and the TCP framing, fuzzed.

Properties: parse_message raises nothing but BadRequest; what it accepts can be answered (build_response) with a
response that parses again and carries the request's Call-ID; bare_response answers a 400 that parses, or gives
up (None), and never answers an ACK; read_tcp_message frames a stream into messages or raises BadRequest (or
IncompleteReadError at a cut-off body), always within the time bound.
"""

from __future__ import annotations

import asyncio

from aiosipua.message import SipRequest, SipResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Harness, budget, corpus, explicit, mutants
from voice_gateway.transports.sip.channels import read_tcp_message
from voice_gateway.transports.sip.message import BadRequest, bare_response, build_response, parse_message

SEEDS = corpus("sip", ".sip") + corpus("rfc4475", ".dat")
STREAMS = corpus("sip-tcp", ".sip")  # whole TCP streams (too big to mutate: a line over the reader's limit)
MUTANTS_PER_EXAMPLE = 16

MESSAGES = Harness("sip-message")
FRAMING = Harness("sip-tcp-framing")


def check_message(data: bytes) -> None:
    try:
        message = parse_message(data)
    except BadRequest as exc:
        answer = bare_response(data, 400, str(exc))
        if answer is not None:
            assert not data.lstrip().upper().startswith(b"ACK "), "an ACK is never answered"
            reparsed = parse_message(answer)
            assert isinstance(reparsed, SipResponse) and reparsed.status_code == 400, answer
        return
    if isinstance(message, SipRequest):
        answer = build_response(message, 481, "Call/Transaction Does Not Exist", to_tag="gw")
        reparsed = parse_message(answer)
        assert isinstance(reparsed, SipResponse) and reparsed.status_code == 481, answer
        assert reparsed.call_id == message.call_id, (reparsed.call_id, message.call_id)


def frame_stream(data: bytes) -> int:
    """Every message read_tcp_message finds in `data` (a whole TCP stream); returns how many."""

    async def read_all() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        found = 0
        try:
            while (message := await read_tcp_message(reader)) is not None:
                found += 1
                assert len(message) <= 2 * 64 * 1024, len(message)
                check_message(message)
        except (BadRequest, asyncio.IncompleteReadError):
            pass
        return found

    return LOOP.run_until_complete(read_all())


LOOP = asyncio.new_event_loop()


@settings(max_examples=budget(2000))
@given(pick=st.integers(0, len(SEEDS) - 1), seed=st.integers(0, 2**32 - 1))
@MESSAGES
def test_mutated_sip_messages_are_parsed_or_refused_with_bad_request(pick: int, seed: int) -> None:
    for data in mutants(SEEDS, pick, seed, MUTANTS_PER_EXAMPLE):
        MESSAGES.check(check_message, data)


@settings(max_examples=budget(len(SEEDS) + 1500))
@explicit(*SEEDS)
@given(st.binary(max_size=3000))
@MESSAGES
def test_seeds_and_random_bytes(data: bytes) -> None:
    MESSAGES.check(check_message, data)


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
_ANY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_HEADERS = [
    "Via",
    "v",
    "From",
    "f",
    "To",
    "t",
    "Call-ID",
    "i",
    "CSeq",
    "Content-Length",
    "l",
    "Contact",
    "m",
    "Content-Type",
    "c",
    "Max-Forwards",
    "Authorization",
    "Route",
    "Record-Route",
    "Expires",
]


@st.composite
def sip_requests(draw: st.DrawFn) -> bytes:
    """A request built header by header: mostly right, with a wrong part here and there."""
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY", "REFER"]) | _TOKEN)
    host = draw(st.sampled_from(["192.0.2.1", "[2001:db8::1]", "gw.example.com", "", "999.0.0.1"]) | _TOKEN)
    uri = draw(
        st.sampled_from([f"sip:12333@{host}", f"sips:{host}", "tel:+8612333", f"sip:{host}:5060;transport=tcp"]) | _ANY
    )
    via = draw(
        st.sampled_from(
            [
                f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{draw(_TOKEN)}",
                f"SIP/2.0/TCP {host}",
                "SIP/2.0/UDP",
                f"SIP/2.0/UDP {host};rport;received=1.2.3.4",
            ]
        )
        | _ANY
    )
    cseq = draw(st.sampled_from([f"1 {method}", f"{draw(st.integers(-5, 2**33))} {method}", "1", f" {method}"]) | _ANY)
    headers = [
        ("Via", via),
        ("From", draw(st.sampled_from([f"<sip:a@{host}>;tag=x", f'"A" <sip:a@{host}>', "sip:a@b;tag=", "<>"]) | _ANY)),
        ("To", draw(st.sampled_from([f"<sip:12333@{host}>", f"<sip:12333@{host}>;tag=gw", "x"]) | _ANY)),
        ("Call-ID", draw(_TOKEN | _ANY)),
        ("CSeq", cseq),
    ]
    headers += draw(st.lists(st.tuples(st.sampled_from(_HEADERS) | _TOKEN, _ANY), max_size=4))
    headers = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    body = draw(st.sampled_from(["", "v=0\r\n", "Signal=5\r\n", "SIP/2.0 200 OK\r\n"]) | _ANY)
    length = draw(st.sampled_from([str(len(body.encode())), "0", "-1", "99999", "x", ""]))
    newline = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    lines = [f"{method} {uri} SIP/2.0", *(f"{n}: {v}" for n, v in headers), f"Content-Length: {length}"]
    return (newline.join(lines) + newline * 2 + body).encode()


@settings(max_examples=budget(600))
@given(sip_requests())
@MESSAGES
def test_requests_built_header_by_header(data: bytes) -> None:
    MESSAGES.check(check_message, data)


@settings(max_examples=budget(1000))
@given(
    picks=st.lists(st.integers(0, len(SEEDS) - 1), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    keepalives=st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n"]),
)
@FRAMING
def test_tcp_streams_of_mutated_messages_are_framed_or_refused(picks: list[int], seed: int, keepalives: bytes) -> None:
    stream = b""
    for i, pick in enumerate(picks):
        stream += keepalives + next(mutants(SEEDS, pick, seed + i, 1))
    FRAMING.check(frame_stream, stream)
    FRAMING.check(frame_stream, stream + b"X" * (70 * 1024))  # a peer that never ends its header line


@settings(max_examples=budget(len(STREAMS) + len(SEEDS) + 200))
@explicit(*STREAMS, *SEEDS)
@given(st.binary(max_size=3000))
@FRAMING
def test_tcp_seed_streams_and_random_bytes(stream: bytes) -> None:
    FRAMING.check(frame_stream, stream)
