"""The RFC 4475 torture messages, each sent to a real SipServer on loopback (UDP, and TCP for requests), then a
normal call: every well-formed request is parsed and answered, every malformed one is answered 400 (or, over UDP,
dropped when nothing can route an answer), responses are dropped, nothing crashes or answers 500.

The messages are in corpus/rfc4475/ as the RFC's .dat files would be (retyped from the RFC, CRLF line endings; the
binary part of mpart01 is other octets of the same kind, with NULs, since the RFC's cannot be retyped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from pathlib import Path

import pytest

from tests.fuzz.harness import CORPUS
from tests.unit.test_sip_server import StubGateway, _free_port, _until
from voice_gateway.testing.sip_caller import SipCaller
from voice_gateway.transports.sip import SipServer, SipSettings
from voice_gateway.transports.sip.dialog import HangUp
from voice_gateway.transports.sip.message import build_response, parse_message

MESSAGES = CORPUS / "rfc4475"
CALL = "call"  # an INVITE we answer 100, then 200: the call starts (and is hung up by us with a BYE)

# name: (RFC section, what we answer, what the RFC asks of a UAS where we answer otherwise)
EXPECTED: dict[str, tuple[str, int | str | None, str]] = {
    # 3.1.1 valid messages: parsed and answered
    "wsinv": ("3.1.1.1", 481, ""),  # an INVITE with a To tag: no such dialog here
    "intmeth": ("3.1.1.2", 405, "501 for an unknown method"),
    "esc01": ("3.1.1.3", CALL, ""),
    "escnull": ("3.1.1.4", 405, ""),  # REGISTER: we are no registrar
    "esc02": ("3.1.1.5", 405, "501 for an unknown method"),
    "lwsdisp": ("3.1.1.6", 200, ""),
    "longreq": ("3.1.1.7", CALL, ""),
    "dblreq": ("3.1.1.8", 405, ""),  # the INVITE after the REGISTER in the datagram is noise: no call
    "semiuri": ("3.1.1.9", 200, ""),
    "transports": ("3.1.1.10", 200, ""),
    "mpart01": ("3.1.1.11", 405, ""),
    "unreason": ("3.1.1.12", None, ""),  # responses to nothing of ours: dropped
    "noreason": ("3.1.1.13", None, ""),
    # 3.1.2 invalid messages: 400, or dropped
    "badinv01": ("3.1.2.1", 400, ""),
    "clerr": ("3.1.2.2", 400, ""),
    "ncl": ("3.1.2.3", 400, ""),
    "scalar02": ("3.1.2.4", 400, ""),
    "scalarlg": ("3.1.2.5", None, ""),
    "quotbal": ("3.1.2.6", 400, ""),
    "ltgtruri": ("3.1.2.7", 400, ""),
    "lwsruri": ("3.1.2.8", 400, ""),
    "lwsstart": ("3.1.2.9", 400, ""),
    "trws": ("3.1.2.10", 400, ""),
    "escruri": ("3.1.2.11", 400, ""),
    "baddate": ("3.1.2.12", CALL, ""),  # "shouldn't [reject] unless the Date header field were important": it is not
    "regbadct": ("3.1.2.13", 400, ""),
    "badaspec": ("3.1.2.14", 400, ""),
    "baddn": ("3.1.2.15", 400, ""),
    "badvers": ("3.1.2.16", 400, "505 Version Not Supported"),
    "mismatch01": ("3.1.2.17", 400, ""),
    "mismatch02": ("3.1.2.18", 400, ""),
    "bigcode": ("3.1.2.19", None, ""),
    # 3.2 transaction layer
    "badbranch": ("3.2.1", 200, ""),
    # 3.3 application layer
    "insuf": ("3.3.1", 400, ""),
    "unkscm": ("3.3.2", 400, "416 Unsupported URI Scheme"),
    "novelsc": ("3.3.3", 400, "416 Unsupported URI Scheme"),
    "unksm2": ("3.3.4", 405, ""),
    "bext01": ("3.3.5", 200, "420 Bad Extension (Require: is not checked)"),
    "invut": ("3.3.6", 488, "415 Unsupported Media Type"),
    "regaut01": ("3.3.7", 405, ""),
    "multi01": ("3.3.8", 400, ""),
    "mcl01": ("3.3.9", 400, ""),
    "bcast": ("3.3.10", None, ""),
    "zeromf": ("3.3.11", 200, ""),
    "cparam01": ("3.3.12", 405, ""),
    "cparam02": ("3.3.13", 405, ""),
    "regescrt": ("3.3.14", 405, ""),
    "sdp01": ("3.3.15", CALL, "406 Not Acceptable (Accept: is not checked)"),
    # 3.4 backward compatibility
    "inv2543": ("3.4.1", CALL, ""),
}
# over TCP the stream frames the message: dblreq's INVITE is a second request there, clerr waits for 9999 octets
NOT_OVER_TCP = {"dblreq", "clerr"}
# and without a Content-Length (mandatory over TCP, RFC 3261 §18.3) inv2543's offer is not part of the INVITE
OVER_TCP = {"inv2543": 488}
QUIET_S = 0.3  # no answer by then: none is coming


def test_every_message_of_the_rfc_is_here() -> None:
    assert sorted(p.stem for p in MESSAGES.glob("*.dat")) == sorted(EXPECTED)


def status(data: bytes) -> int | str:
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return int(line.split(" ")[1]) if line.startswith("SIP/2.0 ") else line.split(" ", 1)[0]


class Peer:
    """One torture message's sender: a UDP socket or a TCP connection, collecting the messages that come back."""

    def __init__(self, port: int, tcp: bool) -> None:
        self.port, self.tcp = port, tcp
        self.received: list[bytes] = []
        self.sock: socket.socket | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, data: bytes) -> None:
        if self.tcp:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(data)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.setblocking(False)
            await asyncio.get_running_loop().sock_sendto(self.sock, data, ("127.0.0.1", self.port))

    async def message(self) -> bytes:
        """The next message from the server: a datagram, or one Content-Length framed message of the stream."""
        if self.sock is not None:
            return await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?mi)^content-length:\s*(\d+)", head)
        return head + await self.reader.readexactly(int(length.group(1)) if length else 0)

    async def collect(self, *, until_final: bool, timeout: float = 3.0) -> list[bytes]:
        """What comes back up to a final response (or until QUIET_S of silence)."""
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
            async with asyncio.timeout(timeout if until_final else QUIET_S):
                while True:
                    self.received.append(await self.message())
                    final = [s for s in map(status, self.received) if isinstance(s, int) and s >= 200]
                    if until_final and final:
                        break
        return self.received

    async def reply(self, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(data)
        elif self.sock is not None:
            await asyncio.get_running_loop().sock_sendto(self.sock, data, ("127.0.0.1", self.port))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.sock is not None:
            self.sock.close()


@contextlib.asynccontextmanager
async def sip_server() -> object:
    gateway = StubGateway(max_calls=8)
    port = _free_port()
    server = SipServer(gateway.switchboard, SipSettings(host="127.0.0.1", port=port, tcp=True))
    await server.start()
    try:
        yield server, gateway, port
    finally:
        await server.stop()


async def run_one(server: SipServer, port: int, name: str, *, tcp: bool, expected: int | str | None) -> list[int | str]:
    """Send one message and return the statuses of what came back; a call it started is hung up by us."""
    peer = Peer(port, tcp)
    try:
        await peer.send((MESSAGES / f"{name}.dat").read_bytes())
        statuses = [status(m) for m in await peer.collect(until_final=expected is not None)]
        if expected == CALL and statuses[:1] == [100] and 200 in statuses:
            [call] = list(server.calls.values())
            server.handle(call, HangUp("torture test done", time.monotonic()))  # our BYE, to the caller's address
            peer.received = []
            byes = [m for m in await peer.collect(until_final=False, timeout=1.0) if status(m) == "BYE"]
            assert byes, f"{name}: our BYE did not reach the caller"
            await peer.reply(build_response(parse_message(byes[0]), 200, "OK"))  # type: ignore[arg-type]
            await _until(lambda: not server.calls)
        return statuses
    finally:
        peer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_torture_messages_then_a_normal_call(transport: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hotline.sip")
    async with sip_server() as (server, gateway, port):
        for name, (section, expected, _) in EXPECTED.items():
            if transport == "tcp" and name in NOT_OVER_TCP:
                continue
            if transport == "tcp":
                expected = OVER_TCP.get(name, expected)
            statuses = await run_one(server, port, name, tcp=transport == "tcp", expected=expected)
            final = [s for s in statuses if isinstance(s, int) and s >= 200]
            if expected is None:
                assert not statuses, f"RFC 4475 {section} {name}: a response must be dropped, got {statuses}"
            elif expected == CALL:
                assert statuses[:1] == [100] and final[:1] == [200], f"RFC 4475 {section} {name}: {statuses}"
            else:
                assert final[:1] == [expected], f"RFC 4475 {section} {name}: expected {expected}, got {statuses}"
            assert 500 not in statuses
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "nothing failed inside the server"
        assert not server.calls and gateway.switchboard.held == 0, "no call left behind"
        # and a normal call still works
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with caller._connect() as conn:
            await caller._open(conn)
            for _ in range(10):
                conn.send_audio(b"\x10\x00" * 160)
                await asyncio.sleep(0.02)
            await conn.bye()
        await _until(lambda: caller.call_id in gateway.closed)
        assert gateway.closed[caller.call_id].reason == "caller_hung_up"
        assert len(gateway.closed[caller.call_id].heard) > 0


def test_the_corpus_files_are_wire_bytes() -> None:
    """CRLF line endings throughout the headers (git must not have converted them)."""
    for path in MESSAGES.glob("*.dat"):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), path.name


__all__ = ["EXPECTED", "Path"]
