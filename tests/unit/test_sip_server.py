"""The SIP server in-process on loopback UDP, with stub sessions instead of the speech engines: fast checks of the
signalling (admission, digest, CANCEL, capacity, REFER, INFO, BYE both ways) that the real-gateway tests in
tests/voice/test_sip.py would make slow."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hotline_domain.contract import Handoff, HandoffQueue, HandoffReason
from tests.unit.fakes import ToneBot
from voice_gateway.audio import rms_dbfs
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.stack import free_udp_port
from voice_gateway.testing.sip_caller import SipCaller, SipCallFailed
from voice_gateway.transports import sip
from voice_gateway.transports.rtp import build_rtp
from voice_gateway.transports.sip import SipServer, SipSettings, parse_allow


class StubBot(ToneBot):
    """The bot on the call's bridge: says one second of tone, records what it hears and the keys."""

    def __init__(self, call: Call) -> None:
        super().__init__(8000)
        self.call_id, self.call, self.transport = call.call_id, call, call.leg
        self.reason = ""


class StubGateway:
    """A switchboard whose calls get a StubBot."""

    def __init__(self, max_calls: int = 4) -> None:
        self.switchboard = Switchboard(max_calls, self._bot)
        self.sessions: dict[str, StubBot] = {}
        self.closed: dict[str, StubBot] = {}

    def _bot(self, call: Call) -> StubBot:
        bot = StubBot(call)
        call.bridge.attach_bot(bot)
        self.sessions[call.call_id] = bot

        async def closed(reason: EndReason, detail: str) -> None:
            bot.reason = reason.value
            self.closed[call.call_id] = self.sessions.pop(call.call_id)

        call.on_close.append(closed)
        return bot


def _free_port() -> int:
    return free_udp_port()  # free for TCP too: the server binds both


@contextlib.asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[SipServer, StubGateway, int]]:
    gateway = StubGateway(settings.pop("max_calls", 4))
    port = _free_port()
    server = SipServer(gateway.switchboard, SipSettings(host="127.0.0.1", port=port, tcp=False, **settings))
    await server.start()
    try:
        yield server, gateway, port
    finally:
        await server.stop()


async def _until(check: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_call_both_ways_then_the_caller_hangs_up() -> None:
    async with running() as (server, gateway, port):
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}", from_user="13800138000")
        async with caller._connect() as conn:
            await caller._open(conn)
            session = gateway.sessions[caller.call_id]
            heard = bytearray()
            conn.on_audio = heard.extend
            for _ in range(25):
                conn.send_audio(b"\x10\x00" * 160)
                await asyncio.sleep(0.02)
            await conn.send_key("5")
            assert await conn.info("#") == 200
            await _until(lambda: len(session.keys) == 2)
            assert session.keys == ["5", "#"]
            await conn.bye()
        await _until(lambda: caller.call_id in gateway.closed)
        assert gateway.closed[caller.call_id].reason == "caller_hung_up"
        assert len(session.heard) >= 20 * 320 and rms_dbfs(bytes(heard)) > -20
        assert not server.calls


async def test_the_gateway_hangs_up_with_a_reason() -> None:
    async with running() as (_, gateway, port):
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with caller._connect() as conn:
            await caller._open(conn)
            await gateway.sessions[caller.call_id].transport.hang_up(EndReason.COMPLETED, "goodbye")
            await _until(conn.ended.is_set)
            assert conn.close_reason == "hangup: goodbye"


async def test_transfer_sends_a_refer_only_for_configured_queues() -> None:
    agents = {"arbitration": "sip:wage-desk@10.0.0.5", "default": "sip:desk@10.0.0.5"}
    async with running(agents=agents) as (_, gateway, port):
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with caller._connect() as conn:
            await caller._open(conn)
            transport = gateway.sessions[caller.call_id].transport
            handoff = Handoff(HandoffReason.URGENT_WAGE_ARREARS, HandoffQueue.ARBITRATION)
            assert await transport.transfer(handoff) is True
            assert conn.referred_to == "sip:wage-desk@10.0.0.5"
    async with running(agents={}) as (_, gateway, port):
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with caller._connect() as conn:
            await caller._open(conn)
            handoff = Handoff(HandoffReason.URGENT_WAGE_ARREARS, HandoffQueue.ARBITRATION)
            assert await gateway.sessions[caller.call_id].transport.transfer(handoff) is False


async def test_digest_authentication() -> None:
    async with running(user="pbx", password="s3cret") as (_, gateway, port):
        with pytest.raises(SipCallFailed) as refused:
            async with SipCaller(f"sip:12333@127.0.0.1:{port}")._connect() as conn:
                await conn.invite()
        assert refused.value.status == 401
        with pytest.raises(SipCallFailed) as wrong:
            async with SipCaller(f"sip:12333@127.0.0.1:{port}", user="pbx", password="guess")._connect() as conn:
                await conn.invite()
        assert wrong.value.status == 401
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}", user="pbx", password="s3cret")
        async with caller._connect() as conn:
            await caller._open(conn)
            assert caller.call_id in gateway.sessions


async def test_addresses_outside_the_allowlist_are_forbidden() -> None:
    async with running(allow=parse_allow("10.0.0.0/8")) as (_, gateway, port):
        with pytest.raises(SipCallFailed) as refused:
            async with SipCaller(f"sip:12333@127.0.0.1:{port}")._connect() as conn:
                await conn.invite()
        assert refused.value.status == 403 and not gateway.sessions


async def test_a_full_gateway_answers_503() -> None:
    async with running(max_calls=1) as (_, gateway, port):
        first = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with first._connect() as conn:
            await first._open(conn)
            with pytest.raises(SipCallFailed) as full:
                async with SipCaller(f"sip:12333@127.0.0.1:{port}")._connect() as other:
                    await other.invite()
            assert full.value.status == 503 and len(gateway.sessions) == 1


async def test_cancel_before_the_answer() -> None:
    async with running() as (server, gateway, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        me = sock.getsockname()[1]
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        head = (
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKcancel1\r\nFrom: <sip:a@127.0.0.1>;tag=x1\r\n"
            f"To: <sip:12333@127.0.0.1>\r\nCall-ID: cancel-me\r\nMax-Forwards: 70\r\n"
        )
        invite = f"INVITE sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        invite += f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        cancel = f"CANCEL sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
        sock.sendto(invite.encode(), ("127.0.0.1", port))
        sock.sendto(cancel.encode(), ("127.0.0.1", port))  # before the session has started
        answers = set()
        with contextlib.suppress(TimeoutError):
            while not {"200 OK", "487 Request Terminated"} <= answers:
                line = (await asyncio.to_thread(sock.recv, 4096)).split(b"\r\n")[0].decode()
                answers.add(line.split(" ", 1)[1])
        sock.close()
        assert {"100 Trying", "200 OK", "487 Request Terminated"} <= answers
        await _until(lambda: "sip-cancel-me" in gateway.closed and not server.calls)
        assert gateway.closed["sip-cancel-me"].reason == "caller_cancelled"


async def test_rtp_from_another_address_is_ignored() -> None:
    async with running() as (_, gateway, port):
        caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
        async with caller._connect() as conn:
            await caller._open(conn)
            session = gateway.sessions[caller.call_id]
            before = sip.RTP_WRONG_SOURCE._value.get()
            intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for seq in range(10):
                packet = build_rtp(0, seq, seq * 160, 1234, b"\x00" * 160)
                intruder.sendto(packet, conn.remote_rtp)
            intruder.close()
            await asyncio.sleep(0.1)
            assert sip.RTP_WRONG_SOURCE._value.get() - before == 10
            assert rms_dbfs(bytes(session.heard)) == float("-inf")  # only the stall filler: silence


async def test_a_call_over_tcp() -> None:
    gateway = StubGateway()
    port = _free_port()
    server = SipServer(gateway.switchboard, SipSettings(host="127.0.0.1", port=port, tcp=True))
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    me = writer.get_extra_info("sockname")[1]

    async def ask(message: str) -> list[str]:
        writer.write(message.encode())
        await writer.drain()
        lines = []
        async with asyncio.timeout(3):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                length = int(next((h.split(":")[1] for h in head.split("\r\n") if h.startswith("Content-Length")), 0))
                await reader.readexactly(length)
                lines.append(head)
                if not head.startswith("SIP/2.0 1"):
                    return lines

    def request(method: str, cseq: int, to_tag: str = "", body: str = "") -> str:
        head = (
            f"{method} sip:12333@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{me};branch=z9hG4bKtcp{cseq}\r\n"
            f"From: <sip:a@127.0.0.1>;tag=tcp1\r\nTo: <sip:12333@127.0.0.1>{to_tag}\r\nCall-ID: over-tcp\r\n"
            f"CSeq: {cseq} {method}\r\nContent-Length: {len(body)}\r\n"
        )
        return head + ("Content-Type: application/sdp\r\n" if body else "") + "\r\n" + body

    try:
        assert (await ask(request("OPTIONS", 1)))[-1].startswith("SIP/2.0 200 OK")
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
        answer = (await ask(request("INVITE", 2, body=sdp)))[-1]
        assert answer.startswith("SIP/2.0 200 OK") and "transport=tcp" in answer
        to_tag = ";tag=" + next(h for h in answer.split("\r\n") if h.startswith("To:")).split(";tag=")[1]
        writer.write(request("ACK", 2, to_tag).encode())
        assert (await ask(request("BYE", 3, to_tag)))[-1].startswith("SIP/2.0 200 OK")
        await _until(lambda: "sip-over-tcp" in gateway.closed)
        assert (await ask("HELLO\r\n\r\n"))[-1].startswith("SIP/2.0 400 Malformed Request-Line")
    finally:
        writer.close()
        await server.stop()


async def test_stopping_the_server_hangs_up_its_calls() -> None:
    gateway = StubGateway()
    port = _free_port()
    server = SipServer(gateway.switchboard, SipSettings(host="127.0.0.1", port=port, tcp=False))
    await server.start()
    caller = SipCaller(f"sip:12333@127.0.0.1:{port}")
    async with caller._connect() as conn:
        await caller._open(conn)
        await server.stop()
        await _until(conn.ended.is_set)
        assert conn.close_reason == "hangup: gateway_stopping"
