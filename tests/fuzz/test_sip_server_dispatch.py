"""The SIP server's dispatch fuzzed: mutated messages through SipServer._received, as the UDP socket or a TCP
connection hands them over, with and without digest authentication, from allowed and refused addresses.

A full switchboard (max_calls 0) answers every acceptable INVITE 503, so every request path up to admission runs
(allowlist, methods, dialogs, digest, SDP) without starting calls. Properties: nothing escapes `_received`; each
message gets at most one answer, never an ACK nor a response; every answer parses as a response, and none is a
500 (the server's answer to a failure of its own).
"""

from __future__ import annotations

from aiosipua.message import SipResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Harness, budget, corpus, mutants
from voice_gateway.calls import Switchboard
from voice_gateway.transports.sip import SipServer, SipSettings
from voice_gateway.transports.sip.channels import Channel
from voice_gateway.transports.sip.message import parse_message

SEEDS = corpus("sip", ".sip") + corpus("rfc4475", ".dat")
MUTANTS_PER_EXAMPLE = 8

DISPATCH = Harness("sip-server-dispatch")


class FakeChannel(Channel):
    def __init__(self, reliable: bool) -> None:
        self.reliable = reliable
        self.transport_name = "TCP" if reliable else "UDP"
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)


def _never(call: object) -> object:
    raise AssertionError("no call may start: the switchboard is full")


SERVERS = {
    auth: SipServer(Switchboard(0, _never), SipSettings(host="127.0.0.1", port=5060, tcp=False, **kwargs))
    for auth, kwargs in {False: {}, True: {"user": "pbx", "password": "s3cret"}}.items()
}


def dispatch(data: bytes, server: SipServer, channel: FakeChannel, source: str) -> None:
    server._received(data, (source, 5060), channel)
    assert len(channel.sent) <= 1, f"{len(channel.sent)} answers to one message"
    if channel.sent:
        first = data.lstrip(b"\r\n").split(None, 1)[:1]
        assert [w.upper() for w in first] != [b"ACK"], "an ACK was answered"
        assert not data.startswith(b"SIP/2.0 ") or not channel.reliable, "a response was answered"
        answer = parse_message(channel.sent[0])
        assert isinstance(answer, SipResponse), channel.sent[0][:200]
        assert answer.status_code != 500, channel.sent[0][:300]
    assert not server.calls


@settings(max_examples=budget(1000))
@given(
    pick=st.integers(0, len(SEEDS) - 1),
    seed=st.integers(0, 2**32 - 1),
    reliable=st.booleans(),
    auth=st.booleans(),
    source=st.sampled_from(["127.0.0.1", "127.0.0.1", "10.1.2.3", "203.0.113.5"]),
)
@DISPATCH
def test_mutated_messages_through_the_server(pick: int, seed: int, reliable: bool, auth: bool, source: str) -> None:
    for data in mutants(SEEDS, pick, seed, MUTANTS_PER_EXAMPLE):
        DISPATCH.check(dispatch, data, SERVERS[auth], FakeChannel(reliable), source)
