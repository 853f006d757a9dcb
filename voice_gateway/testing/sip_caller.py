"""A simulated caller over SIP/RTP: INVITE with a PCMU (or PCMA) offer, RTP from a local port, ACK, BYE.

It reuses `SimulatedCaller.run` (turns, timings, reports) and only swaps the wire: the connection is a small
SIP user agent client on its own UDP sockets (one for SIP, one for RTP), so many callers share one process and
one event loop. Keys go as RFC 4733 telephone-events (or SIP INFO with `dtmf="info"`). A BYE from the gateway
ends the call with `close_reason` "hangup: <reason>", as the WebSocket callers report it.

The gateway's RTP stream is continuous (digital silence between the agent's words); packets of pure digital
silence are not counted as heard audio, so reports mean what they mean over the WebSocket wires, where nothing is
sent between the agent's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from aiosipua.auth import SipDigestAuth, answer_challenge
from aiosipua.header_codec import stringify_uri
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.sdp import parse_sdp

from voice_gateway.testing.ws_caller import SimulatedCaller
from voice_gateway.transports.rtp import FRAME_SAMPLES, RtpError, build_dtmf, build_rtp, decode, encode, parse_rtp
from voice_gateway.transports.sip import T1, T2, session_name

INVITE_TIMEOUT_S = 10.0
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}
SILENCE = {"PCMU": b"\xff\x7f", "PCMA": b"\xd5\x55"}  # G.711 codes of digital silence (+0 and -0)
DTMF_TYPE = 101


class SipCallFailed(ConnectionError):
    """The gateway did not answer the INVITE with a 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"INVITE answered {status} {reason}")
        self.status, self.reason = status, reason


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self.on_datagram(data, (str(addr[0]), int(addr[1])))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


@dataclass
class SipConnection:
    """One SIP dialog from the caller's side, with its RTP stream."""

    target: tuple[str, int]  # the gateway's SIP address
    request_uri: str
    call_id: str
    codec: str = "PCMU"
    local_ip: str = "127.0.0.1"
    from_user: str = "caller"
    credentials: SipDigestAuth | None = None
    sip: _Socket | None = None
    rtp: _Socket | None = None
    remote_rtp: tuple[str, int] | None = None
    remote_dtmf: int | None = None
    from_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    to_tag: str = ""
    remote_target: str = ""
    cseq: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = ""
    referred_to: str = ""  # Refer-To of a transfer the gateway asked for
    on_audio: Any = None
    _responses: dict[str, asyncio.Queue[SipResponse]] = field(default_factory=dict)  # by branch
    _seq: int = field(default_factory=lambda: random.getrandbits(16))
    _ts: int = field(default_factory=lambda: random.getrandbits(32))
    _ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    _ok: bytes = b""  # the last 2xx to our INVITE, to ACK its retransmissions

    @property
    def payload_type(self) -> int:
        return PAYLOAD_TYPES[self.codec]

    # --- SIP ---
    def _request(self, method: str, body: str = "", content_type: str = "", cseq: int | None = None) -> SipRequest:
        request = SipRequest(method=method, uri=self.remote_target if self.to_tag else self.request_uri)
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        assert self.sip is not None
        request.headers.append("Via", f"SIP/2.0/UDP {self.local_ip}:{self.sip.port};branch={branch};rport")
        request.headers.set_single("Max-Forwards", "70")
        request.headers.set_single("From", f"<sip:{self.from_user}@{self.local_ip}>;tag={self.from_tag}")
        request.headers.set_single("To", f"<{self.request_uri}>" + (f";tag={self.to_tag}" if self.to_tag else ""))
        request.headers.set_single("Call-ID", self.call_id)
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        request.headers.set_single("CSeq", f"{cseq} {method}")
        request.headers.set_single("Contact", f"<sip:{self.from_user}@{self.local_ip}:{self.sip.port}>")
        request.headers.set_single("User-Agent", "hotline-sip-caller")
        if body:
            request.headers.set_single("Content-Type", content_type)
            request.text = body
        return request

    async def _transact(self, request: SipRequest, timeout: float = 8.0) -> SipResponse:
        """Send a request (retransmitted on UDP) and return its final response."""
        assert self.sip is not None
        branch = request.via[0].branch or ""
        queue: asyncio.Queue[SipResponse] = asyncio.Queue()
        self._responses[branch] = queue
        data, interval, provisional = bytes(request), T1, False
        deadline = time.monotonic() + timeout
        try:
            self.sip.send(data, self.target)
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(interval if not provisional else deadline - time.monotonic()):
                        response = await queue.get()
                except TimeoutError:
                    if not provisional:
                        self.sip.send(data, self.target)
                        interval = min(interval * 2, T2)
                    continue
                if response.status_code >= 200:
                    return response
                provisional = True  # a 1xx: the server has it, stop retransmitting
            raise TimeoutError(f"no final answer to {request.method}")
        finally:
            self._responses.pop(branch, None)

    def _ack(self, response: SipResponse, invite: SipRequest) -> None:
        """ACK a final answer to the INVITE (a 2xx is acknowledged end to end, an error hop by hop)."""
        assert self.sip is not None
        cseq = int((response.get_header("CSeq") or "1").split()[0])
        ack = self._request("ACK", cseq=cseq)
        if response.status_code >= 300:
            ack.uri = invite.uri
            ack.headers.remove("Via")
            ack.headers.append("Via", invite.headers.get("via")[0])
            ack.headers.set_single("To", response.get_header("To") or "")
        self.sip.send(bytes(ack), self.target)

    async def invite(self) -> None:
        assert self.rtp is not None
        pt = self.payload_type
        sdp = (
            f"v=0\r\no=caller {random.getrandbits(31)} 1 IN IP4 {self.local_ip}\r\ns=call\r\n"
            f"c=IN IP4 {self.local_ip}\r\nt=0 0\r\nm=audio {self.rtp.port} RTP/AVP {pt} {DTMF_TYPE}\r\n"
            f"a=rtpmap:{pt} {self.codec}/8000\r\na=rtpmap:{DTMF_TYPE} telephone-event/8000\r\n"
            f"a=fmtp:{DTMF_TYPE} 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        request = self._request("INVITE", sdp, "application/sdp")
        response = await self._transact(request, INVITE_TIMEOUT_S)
        if response.status_code in (401, 407) and self.credentials is not None:
            self._ack(response, request)
            answer = answer_challenge(self.credentials, response, response.status_code, "INVITE", request.uri)
            if answer is None:
                raise SipCallFailed(response.status_code, "cannot answer the challenge")
            request = self._request("INVITE", sdp, "application/sdp")
            request.headers.set_single(*answer)
            response = await self._transact(request, INVITE_TIMEOUT_S)
        if not 200 <= response.status_code < 300:
            self._ack(response, request)
            raise SipCallFailed(response.status_code, response.reason_phrase)
        self.to_tag = (response.to_addr.tag if response.to_addr else "") or ""
        contacts = response.contact
        self.remote_target = stringify_uri(contacts[0].uri) if contacts and contacts[0].uri else self.request_uri
        answer_sdp = parse_sdp(response.text)
        self.remote_rtp = answer_sdp.rtp_address
        audio = answer_sdp.audio
        if audio is not None:
            self.remote_dtmf = next(
                (c.payload_type for c in audio.codecs if c.encoding_name.lower() == "telephone-event"), None
            )
        self._ok = bytes(response)
        self._ack(response, request)

    async def bye(self) -> int | None:
        if self.ended.is_set() or not self.to_tag:
            return None
        self.ended.set()
        self.close_reason = self.close_reason or "caller"
        with contextlib.suppress(TimeoutError):
            return (await self._transact(self._request("BYE"), 4.0)).status_code
        return None

    async def info(self, key: str) -> int:
        body = f"Signal={key}\r\nDuration=160\r\n"
        return (await self._transact(self._request("INFO", body, "application/dtmf-relay"))).status_code

    def on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = SipMessage.parse(data)
        except (ValueError, IndexError):
            return
        if isinstance(message, SipResponse):
            vias = message.via
            queue = self._responses.get(vias[0].branch or "") if vias else None
            if queue is not None:
                queue.put_nowait(message)
            elif self._ok and message.status_code == 200 and (message.get_header("CSeq") or "").endswith("INVITE"):
                cseq = int((message.get_header("CSeq") or "1").split()[0])
                if self.sip is not None:  # our ACK was lost: the gateway repeats its 200
                    self.sip.send(bytes(self._request("ACK", cseq=cseq)), self.target)
            return
        self._answer(message, addr)

    def _answer(self, request: SipRequest, addr: tuple[str, int]) -> None:
        """Requests from the gateway: BYE ends the call, REFER is noted (a real phone would dial the agent)."""
        status = 200
        if request.method == "BYE":
            reason = re.search(r'text="([^"]*)"', request.get_header("Reason") or "")
            self.close_reason = f"hangup: {reason.group(1) if reason else 'bye'}"
            self.ended.set()
        elif request.method == "REFER":
            self.referred_to = (request.get_header("Refer-To") or "").strip("<>")
            status = 202
        elif request.method not in ("OPTIONS", "NOTIFY", "INFO", "ACK"):
            status = 405
        if request.method == "ACK":
            return
        response = SipResponse(status_code=status, reason_phrase="OK" if status < 300 else "Method Not Allowed")
        for via in request.headers.get("via"):
            response.headers.append("Via", via)
        for name in ("From", "To", "Call-ID", "CSeq"):
            response.headers.set_single(name, request.get_header(name) or "")
        if self.sip is not None:
            self.sip.send(bytes(response), addr)

    # --- RTP ---
    def send_audio(self, pcm: bytes) -> None:
        if self.rtp is None or self.remote_rtp is None or self.ended.is_set():
            return
        packet = build_rtp(self.payload_type, self._seq, self._ts, self._ssrc, encode(self.codec, pcm))
        self.rtp.send(packet, self.remote_rtp)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(pcm) // 2) & 0xFFFFFFFF

    async def send_key(self, key: str) -> None:
        """One RFC 4733 event of 100 ms: three updates 20 ms apart, then the end packet three times."""
        if self.rtp is None or self.remote_rtp is None:
            return
        pt = self.remote_dtmf if self.remote_dtmf is not None else DTMF_TYPE
        start = self._ts
        for i in range(1, 4):
            payload = build_dtmf(key, end=False, duration=i * FRAME_SAMPLES)
            self.rtp.send(build_rtp(pt, self._seq, start, self._ssrc, payload, marker=i == 1), self.remote_rtp)
            self._seq = (self._seq + 1) & 0xFFFF
            await asyncio.sleep(0.02)
        for _ in range(3):
            payload = build_dtmf(key, end=True, duration=5 * FRAME_SAMPLES)
            self.rtp.send(build_rtp(pt, self._seq, start, self._ssrc, payload), self.remote_rtp)
            self._seq = (self._seq + 1) & 0xFFFF

    def on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.remote_rtp or self.on_audio is None:
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        if packet.payload_type == self.payload_type and packet.payload.strip(SILENCE[self.codec]):
            self.on_audio(decode(self.codec, packet.payload))


class SipCaller(SimulatedCaller):
    """A caller that dials the gateway's SIP port, e.g. `SipCaller("sip:12333@127.0.0.1:5060")`."""

    sends_clear = False  # RTP is played as it arrives: a barge-in shows as the agent's audio stopping

    def __init__(
        self,
        url: str,
        *,
        codec: str = "PCMU",
        dtmf: str = "rfc4733",
        from_user: str = "caller",
        user: str = "",
        password: str = "",
        local_ip: str = "127.0.0.1",
    ) -> None:
        super().__init__(url)
        match = re.match(r"^sips?:(?:([^@;]+)@)?([^:;>]+)(?::(\d+))?", url)
        if match is None:
            raise ValueError(f"not a SIP URI: {url!r}")
        self.target = (match.group(2), int(match.group(3) or 5060))
        self.codec, self.dtmf, self.from_user, self.local_ip = codec, dtmf, from_user, local_ip
        self.credentials = SipDigestAuth(user, password) if password else None
        self.sip_call_id = uuid.uuid4().hex
        self.connection: SipConnection | None = None

    @property
    def call_id(self) -> str:
        return session_name(self.sip_call_id)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[SipConnection]:
        loop = asyncio.get_running_loop()
        conn = SipConnection(
            self.target,
            self.url.split(";")[0],
            self.sip_call_id,
            codec=self.codec,
            local_ip=self.local_ip,
            from_user=self.from_user,
            credentials=self.credentials,
            on_audio=self._heard_audio,
        )
        _, conn.sip = await loop.create_datagram_endpoint(lambda: _Socket(conn.on_sip), local_addr=(self.local_ip, 0))
        _, conn.rtp = await loop.create_datagram_endpoint(lambda: _Socket(conn.on_rtp), local_addr=(self.local_ip, 0))
        self.connection = conn
        try:
            yield conn
        finally:
            if not conn.ended.is_set() and conn.to_tag:
                with contextlib.suppress(Exception):
                    await conn.bye()
            for sock in (conn.sip, conn.rtp):
                if sock.transport is not None:
                    sock.transport.close()

    async def _open(self, conn: SipConnection) -> None:
        await conn.invite()

    async def _receive(self, conn: SipConnection) -> None:
        try:
            await conn.ended.wait()
        finally:
            self.close_reason = self.close_reason or conn.close_reason or "closed"
            self._closed.set()

    async def _send_frame(self, conn: SipConnection, frame: bytes) -> None:
        conn.send_audio(frame)

    async def _key(self, conn: SipConnection, key: str) -> None:
        if self.dtmf == "info":
            await conn.info(key)
        else:
            await conn.send_key(key)

    async def _stop(self, conn: SipConnection) -> None:
        await conn.bye()
