"""SIP (RFC 3261) over UDP and TCP with G.711 RTP: a PBX, a SIP trunk or a softphone calls the gateway directly.

One INVITE = one call = one CallSession. The session does turn-taking; this module only speaks the wire: SDP
offer/answer (PCMU or PCMA at 8 kHz, telephone-event), RTP in through a small jitter buffer and out on a 20 ms
clock, DTMF from RFC 4733 events or SIP INFO, BYE either way, CANCEL, OPTIONS, and a blind-transfer REFER when
the dialogue hands the caller to a person and an agent URI is configured for the queue. Callers are admitted by
source address (HOTLINE_SIP_ALLOW) and, if a password is set, by digest authentication.

aiosipua supplies message parsing and serialisation, header codecs, SDP parsing and the dialog bookkeeping; the
transaction handling here is deliberately small (what a UAS behind a PBX needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiosipua.dialog import Dialog, DialogState, create_dialog_from_request
from aiosipua.header_codec import parse_address, parse_auth, parse_via
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.sdp import parse_sdp
from aiosipua.utils import generate_tag
from prometheus_client import Counter

from voice_gateway import metrics
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

log = logging.getLogger("hotline.sip")

SERVER = "hotline-gateway"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
KNOWN_METHODS = {*ALLOW.split(", "), "REFER", "REGISTER", "SUBSCRIBE", "MESSAGE", "UPDATE", "PRACK", "PUBLISH"}
T1, T2, TIMER_H = 0.5, 4.0, 32.0  # RFC 3261 timers (s): retransmit doubling from T1 to T2, give up after 64*T1
MAX_MESSAGE_BYTES = 64 * 1024
OUT_QUEUE_FRAMES = 50  # 1 s of agent audio; the session keeps at most ~100 ms queued
INBOUND_STALL_S = 0.2  # no RTP for this long: release the jitter buffer and feed silence (keeps endpointing going)
REFER_TIMEOUT_S = 4.0
TRANSFER_WAIT_S = 30.0  # after an accepted REFER, end our leg by then if the far end has not
NONCE_TTL_S = 300
DEFAULT_ALLOW = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"

SIP_REQUESTS = Counter(
    "hotline_sip_requests_total", "SIP requests received, by method and our answer", ["method", "status"]
)
SIP_MALFORMED = Counter("hotline_sip_malformed_total", "SIP messages that could not be parsed")
RTP_WRONG_SOURCE = Counter("hotline_rtp_wrong_source_total", "RTP packets ignored: not from the negotiated address")
RTP_BAD = Counter("hotline_rtp_bad_packets_total", "Datagrams on an RTP port that are not usable RTP")
RTP_LOST = Counter("hotline_rtp_lost_packets_total", "Caller RTP packets lost (concealed)")
RTP_LATE = Counter("hotline_rtp_late_packets_total", "Caller RTP packets that arrived too late to play")


# --- settings ---
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(text: str) -> list[Network]:
    """HOTLINE_SIP_ALLOW: comma-separated CIDRs (or single addresses); "any" admits everyone."""
    if text.strip().lower() == "any":
        return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    try:
        return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"HOTLINE_SIP_ALLOW: {exc}") from None


def parse_agents(text: str) -> dict[str, str]:
    """HOTLINE_SIP_AGENTS: `queue=sip:uri,...`; the queue `default` catches the queues not listed."""
    agents = {}
    for part in text.split(","):
        if not part.strip():
            continue
        queue, sep, uri = part.partition("=")
        uri = uri.strip()
        if not sep or not queue.strip() or not re.match(r"^sips?:\S+$", uri):
            raise ValueError(f"HOTLINE_SIP_AGENTS: expected queue=sip:user@host, got {part.strip()!r}")
        agents[queue.strip()] = uri
    return agents


@dataclass
class SipSettings:
    host: str = "127.0.0.1"
    port: int = 5060
    tcp: bool = True
    allow: list[Network] = field(default_factory=lambda: parse_allow(DEFAULT_ALLOW))
    user: str = ""
    password: str = ""
    agents: dict[str, str] = field(default_factory=dict)
    public_ip: str = ""  # advertised in SDP and Contact when the gateway sits behind NAT
    rtp_latch: bool = False  # accept RTP from the signalling address instead of the SDP one (callers behind NAT)

    @classmethod
    def from_env(cls, host: str, port: int) -> SipSettings:
        env = os.environ.get
        return cls(
            host=host,
            port=port,
            tcp=env("HOTLINE_SIP_TCP", "1") != "0",
            allow=parse_allow(env("HOTLINE_SIP_ALLOW", DEFAULT_ALLOW)),
            user=env("HOTLINE_SIP_USER", ""),
            password=env("HOTLINE_SIP_PASSWORD", ""),
            agents=parse_agents(env("HOTLINE_SIP_AGENTS", "")),
            public_ip=env("HOTLINE_SIP_PUBLIC_IP", ""),
            rtp_latch=env("HOTLINE_SIP_RTP_LATCH", "") == "1",
        )

    def admits(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allow)


# --- privacy and names ---
def mask_user(user: str | None) -> str:
    """A SIP user part is usually a phone number: logs show only its last 4 characters."""
    return "*" + (user or "")[-4:] if user else "-"


def session_name(sip_call_id: str) -> str:
    """`sip-<Call-ID>`, with only [A-Za-z0-9._-] kept and at most 40 characters (long ids keep a hash)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", sip_call_id) or "none"
    if len(clean) > 40:
        clean = clean[:28] + "-" + hashlib.sha1(sip_call_id.encode()).hexdigest()[:11]
    return f"sip-{clean}"


# --- SDP offer/answer ---
class SdpError(ValueError):
    """An SDP body we cannot read at all: 400."""


class NoCommonCodec(Exception):
    """A readable offer without PCMU/PCMA at 8 kHz (or without audio): 488."""


@dataclass
class MediaOffer:
    address: str
    port: int
    payload_type: int
    codec: str  # "PCMU" or "PCMA"
    dtmf_type: int | None
    direction: str = "sendrecv"
    rejected: list[str] = field(default_factory=list)  # other m-lines, answered with port 0 (RFC 3264 §6)
    audio_index: int = 0


_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def negotiate(body: str) -> MediaOffer:
    """Pick the caller's first offered G.711 codec (its order is its preference) and telephone-event."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    if any(len(line) < 2 or line[1] != "=" for line in lines):
        raise SdpError("SDP lines must look like x=value")
    try:
        sdp = parse_sdp(body)
    except (ValueError, IndexError) as exc:
        raise SdpError(f"unreadable SDP ({exc})") from None
    if not sdp.media:
        raise SdpError("SDP without an m= line")
    audio_index = next((i for i, m in enumerate(sdp.media) if m.media == "audio" and m.port > 0), None)
    if audio_index is None:
        raise NoCommonCodec("no audio stream offered")
    audio = sdp.media[audio_index]
    connection = audio.connection or sdp.connection
    if connection is None:
        raise SdpError("SDP without a c= connection address")
    try:
        ipaddress.ip_address(connection.address)
    except ValueError:
        raise SdpError(f"c= address {connection.address[:40]!r} is not an IP address") from None
    if not 0 < audio.port < 65536:
        raise SdpError(f"bad audio port {audio.port}")
    if not audio.proto.upper().startswith("RTP/AVP"):
        raise NoCommonCodec(f"media transport {audio.proto[:20]} (RTP/AVP expected)")
    chosen = dtmf = None
    for codec in audio.codecs:
        name, rate = codec.encoding_name.upper(), codec.clock_rate
        if chosen is None and name in ("PCMU", "PCMA") and rate == CLOCK_RATE:
            chosen = codec
        elif name == "TELEPHONE-EVENT" and rate == CLOCK_RATE and dtmf is None:
            dtmf = codec.payload_type
    if chosen is None:
        raise NoCommonCodec("PCMU or PCMA at 8000 Hz required")
    rejected = [
        f"{m.media} 0 {m.proto} {' '.join(m.formats) or '0'}" for i, m in enumerate(sdp.media) if i != audio_index
    ]
    return MediaOffer(
        connection.address,
        audio.port,
        chosen.payload_type,
        chosen.encoding_name.upper(),
        dtmf,
        audio.direction,
        rejected,
        audio_index,
    )


def answer_sdp(offer: MediaOffer, ip: str, port: int, session_id: int) -> str:
    family = "IP6" if ":" in ip else "IP4"
    formats = f"{offer.payload_type}" + (f" {offer.dtmf_type}" if offer.dtmf_type is not None else "")
    audio = [
        f"m=audio {port} RTP/AVP {formats}",
        f"a=rtpmap:{offer.payload_type} {offer.codec}/{CLOCK_RATE}",
    ]
    if offer.dtmf_type is not None:
        audio += [f"a=rtpmap:{offer.dtmf_type} telephone-event/{CLOCK_RATE}", f"a=fmtp:{offer.dtmf_type} 0-15"]
    audio += ["a=ptime:20", f"a={_ANSWER_DIRECTION.get(offer.direction, 'sendrecv')}"]
    media = [[f"m={line}"] for line in offer.rejected]
    media.insert(offer.audio_index, audio)
    head = [
        "v=0",
        f"o=hotline {session_id} {session_id} IN {family} {ip}",
        "s=hotline",
        f"c=IN {family} {ip}",
        "t=0 0",
    ]
    return "\r\n".join(head + [line for block in media for line in block]) + "\r\n"


# --- digest authentication (RFC 2617/7616, MD5, qop=auth) ---
class DigestAuth:
    """Stateless nonces (a timestamp signed with a per-process key), checked against one user and password."""

    def __init__(self, user: str, password: str, realm: str = "hotline") -> None:
        self.user, self.password, self.realm = user, password, realm
        self._key = os.urandom(16)

    def nonce(self, now: float | None = None) -> str:
        stamp = f"{int(now if now is not None else time.time()):x}"
        return stamp + "." + hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:20]

    def challenge(self, *, stale: bool = False) -> str:
        value = f'Digest realm="{self.realm}", nonce="{self.nonce()}", algorithm=MD5, qop="auth"'
        return value + (", stale=true" if stale else "")

    def check(self, method: str, header: str | None, now: float | None = None) -> str:
        """ "ok", "missing", "stale" (an old nonce of ours: retry without asking the user) or "bad"."""
        if not header:
            return "missing"
        try:
            creds = parse_auth(header, credentials=True)
        except (ValueError, IndexError):
            return "bad"
        p = creds.params
        if creds.scheme.lower() != "digest" or p.get("username") != self.user or p.get("realm") != self.realm:
            return "bad"
        nonce = p.get("nonce", "")
        stamp, _, _ = nonce.partition(".")
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        if not hmac.compare_digest(nonce, self.nonce(issued)):
            return "bad"
        if p.get("algorithm", "MD5").upper() != "MD5":
            return "bad"

        def h(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1, ha2 = h(f"{self.user}:{self.realm}:{self.password}"), h(f"{method}:{p.get('uri', '')}")
        if p.get("qop"):
            expected = h(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p.get('qop')}:{ha2}")
        else:
            expected = h(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(p.get("response", ""), expected):
            return "bad"
        if (now if now is not None else time.time()) - issued > NONCE_TTL_S:
            return "stale"
        return "ok"


# --- message checks ---
class BadRequest(ValueError):
    """A request we answer with 400 and this reason phrase."""


_REQUEST_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9.!%*_+`'~-]*) (\S+) SIP/2\.0$")
_RESPONSE_LINE = re.compile(r"^SIP/2\.0 [1-6]\d\d( .*)?$")
_CSEQ = re.compile(r"^(\d{1,10})\s+([A-Za-z][A-Za-z0-9.!%*_+`'~-]*)$")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse and check one SIP message; BadRequest says what is wrong in words a peer's log can show."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Headers are not UTF-8") from None
    start = text.split("\n", 1)[0].strip()
    if _RESPONSE_LINE.match(start):
        try:
            return SipMessage.parse(data)  # type: ignore[return-value]
        except (ValueError, IndexError):
            raise BadRequest("Malformed response") from None
    if not _REQUEST_LINE.match(start):
        raise BadRequest("Malformed Request-Line")
    if not sep:
        raise BadRequest("No blank line after the headers")
    try:
        message = SipMessage.parse(data)
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"Unparsable message: {str(exc)[:60]}") from None
    assert isinstance(message, SipRequest)
    for name in _REQUIRED:
        if not message.get_header(name):
            raise BadRequest(f"Missing {name} header")
    if not re.match(r"^sips?:|^tel:", message.uri, re.IGNORECASE):
        raise BadRequest("Request-URI must be a sip: URI")
    cseq = _CSEQ.match(message.get_header("CSeq") or "")
    if cseq is None:
        raise BadRequest("Malformed CSeq")
    if cseq.group(2).upper() != message.method.upper():
        raise BadRequest("CSeq method does not match the request")
    try:
        via = parse_via(message.get_header("Via") or "")
        from_addr, to_addr = (
            parse_address(message.get_header("From") or ""),
            parse_address(message.get_header("To") or ""),
        )
    except (ValueError, IndexError):
        raise BadRequest("Malformed Via, From or To header") from None
    if not via.host or not via.transport:
        raise BadRequest("Malformed Via header")
    if from_addr.uri is None or to_addr.uri is None or not from_addr.uri.host or not to_addr.uri.host:
        raise BadRequest("Malformed From or To URI")
    length = message.get_header("Content-Length")
    if length is not None:
        if not length.strip().isdigit():
            raise BadRequest("Malformed Content-Length")
        if int(length) > len(body):
            raise BadRequest("Content-Length exceeds the body")
    return message


def _ascii(text: str, limit: int = 100) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def bare_response(data: bytes, status: int, reason: str) -> bytes | None:
    """A response to a request we could not parse, echoing what can be found of its headers (None: give up)."""
    text = data[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n\n", 1)[0].split("\n")
    if not lines or not re.match(r"^[A-Za-z]+ ", lines[0]) or lines[0].startswith("SIP/"):
        return None
    if lines[0].split(" ", 1)[0].upper() == "ACK":
        return None  # never answer an ACK
    names = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To"}
    names |= {"call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
    out = [f"SIP/2.0 {status} {_ascii(reason)}"]
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in names:
            out.append(f"{names[name.strip().lower()]}: {_ascii(value.strip(), 300)}")
    if not any(line.startswith("Via:") for line in out):
        return None  # nowhere to route an answer
    out += [f"Server: {SERVER}", "Content-Length: 0"]
    return ("\r\n".join(out) + "\r\n\r\n").encode()


# --- the wire underneath ---
class Channel:
    """Where a message came from and how to answer it: a UDP socket, or one TCP connection."""

    transport_name = "UDP"
    reliable = False

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        raise NotImplementedError


class UdpChannel(Channel, asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[bytes, tuple[str, int], Channel], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self.on_message(data, (str(addr[0]), int(addr[1])), self)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)


class TcpChannel(Channel):
    transport_name = "TCP"
    reliable = True

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


async def read_tcp_message(reader: asyncio.StreamReader) -> bytes | None:
    """One message from a TCP stream, framed by Content-Length; None at the end of the stream."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = await reader.readline()
        if not line:
            return None
        if head == b"" and line in (b"\r\n", b"\n"):
            continue  # keep-alive CRLFs between messages
        head += line
        if len(head) > MAX_MESSAGE_BYTES:
            raise BadRequest("Headers too long")
    match = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", head, re.IGNORECASE | re.MULTILINE)
    length = int(match.group(1)) if match else 0
    if length > MAX_MESSAGE_BYTES:
        raise BadRequest("Body too long")
    return head + (await reader.readexactly(length) if length else b"")


# --- media ---
class RtpStream(asyncio.DatagramProtocol):
    """One call's RTP: caller audio through the jitter buffer to the session, agent audio out every 20 ms."""

    def __init__(self, call: SipCall, offer: MediaOffer) -> None:
        self.call = call
        self.offer = offer
        self.remote = (offer.address, offer.port)
        self.jitter = JitterBuffer()
        self.dtmf = DtmfDetector()
        self.out: deque[bytes] = deque(maxlen=OUT_QUEUE_FRAMES)
        self.transport: asyncio.DatagramTransport | None = None
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
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

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        if source != self.remote:
            latch = self.call.server.settings.rtp_latch and not self._latched and source[0] == self.call.addr[0]
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
        session = self.call.session
        audio = packet.payload_type == self.offer.payload_type and packet.payload
        pcm = decode(self.offer.codec, packet.payload) if audio else b""  # other types hold their place, silently
        self._deliver(self.jitter.push(packet.sequence, packet.timestamp, pcm))
        if packet.payload_type == self.offer.dtmf_type:
            try:
                key = self.dtmf.feed(packet)
            except RtpError:
                RTP_BAD.inc()
                return
            if key and session is not None:
                log.info("%s: key from RFC 4733 event", self.call.name)
                session.key(key)

    def _deliver(self, frames: list[bytes]) -> None:
        stats = self.jitter.stats
        if (stats.lost, stats.late) != self._reported:
            RTP_LOST.inc(stats.lost - self._reported[0])
            RTP_LATE.inc(stats.late - self._reported[1])
            self._reported = (stats.lost, stats.late)
        if frames and self.call.session is not None:
            self.call.session.audio(b"".join(frames))

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: RTP socket error: %s", self.call.name, exc)

    async def run(self) -> None:
        """The 20 ms clock: one packet out per tick (agent audio or silence), and watch for a stalled caller."""
        next_at = time.monotonic()
        quiet = silence(self.offer.codec)
        while True:
            frame = self.out.popleft() if self.out else None
            payload = encode(self.offer.codec, frame) if frame is not None else quiet
            marker = frame is not None and not self._talking
            self._talking = frame is not None
            if self.transport is not None and self.offer.direction != "inactive":
                self.transport.sendto(
                    build_rtp(self.offer.payload_type, self._seq, self._ts, self.ssrc, payload, marker), self.remote
                )
            self._seq = (self._seq + 1) & 0xFFFF
            self._ts = (self._ts + FRAME_SAMPLES) & 0xFFFFFFFF
            now = time.monotonic()
            if now - self._last_rx > INBOUND_STALL_S:  # caller silent on the wire (DTX, hold): time still passes
                self._deliver([*self.jitter.flush(), b"\x00" * (2 * FRAME_SAMPLES)])
            next_at += FRAME_MS_S
            if next_at < now - 0.2:
                next_at = now  # the loop was starved: start a fresh clock rather than burst
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


FRAME_MS_S = FRAME_SAMPLES / CLOCK_RATE


# --- one call ---
@dataclass
class SipCall:
    """One INVITE dialog, and the way back to the caller that CallSession uses (the CallTransport)."""

    server: SipServer
    invite: SipRequest
    dialog: Dialog
    addr: tuple[str, int]
    channel: Channel
    offer: MediaOffer
    name: str
    sample_rate: int = 8000
    media: RtpStream | None = None
    session: Any = None
    state: str = "proceeding"  # proceeding -> answered -> ended (or cancelled)
    last_response: bytes = b""
    answer: str = ""
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    transfer_target: str = ""
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def branch(self) -> str:
        return self.invite.via[0].branch or ""

    # --- CallTransport ---
    async def send_audio(self, pcm: bytes) -> None:
        if self.media is not None:
            self.media.out.append(pcm)

    async def clear(self) -> None:
        if self.media is not None:
            self.media.out.clear()

    async def hang_up(self, reason: str) -> None:
        await self.server.bye(self, reason)

    async def transfer(self, payload: dict) -> bool:
        """Blind transfer (REFER) to the agent URI configured for the payload's queue; False if none is."""
        agents = self.server.settings.agents
        target = agents.get(str(payload.get("queue") or "")) or agents.get("default")
        if not target or self.state != "answered":
            return False
        status = await self.server.request(
            self, "REFER", {"Refer-To": f"<{target}>", "Referred-By": f"<{self.dialog.local_uri}>"}
        )
        log.info("%s: REFER to queue %s answered %s", self.name, payload.get("queue"), status)
        if status is None or not 200 <= status < 300:
            return False
        self.transfer_target = target
        self.tasks.append(asyncio.create_task(self._end_transferred_leg()))
        return True

    async def _end_transferred_leg(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TRANSFER_WAIT_S):
                await self.done.wait()
        if not self.done.is_set():
            await self.server.bye(self, "transferred")


# --- the server ---
class SipServer:
    """SIP user agent server for the gateway: admission, offer/answer, and one CallSession per answered call."""

    def __init__(self, gateway: Any, settings: SipSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.auth = DigestAuth(settings.user, settings.password) if settings.password else None
        self.calls: dict[str, SipCall] = {}  # by SIP Call-ID
        self._udp: UdpChannel | None = None
        self._tcp: asyncio.Server | None = None
        self._pending: dict[str, asyncio.Future[int]] = {}  # our requests, by Via branch
        self._tasks: set[asyncio.Task] = set()
        self._connections: set[asyncio.StreamWriter] = set()  # TCP peers

    @property
    def advertised_ip(self) -> str:
        if self.settings.public_ip:
            return self.settings.public_ip
        host = self.settings.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    def contact(self, channel: Channel) -> str:
        host = self.advertised_ip
        host = f"[{host}]" if ":" in host else host
        return f"<sip:hotline@{host}:{self.settings.port};transport={channel.transport_name.lower()}>"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._udp = await loop.create_datagram_endpoint(
            lambda: UdpChannel(self._received), local_addr=(self.settings.host, self.settings.port)
        )
        if self.settings.tcp:
            self._tcp = await asyncio.start_server(self._tcp_connection, self.settings.host, self.settings.port)
        log.info(
            "SIP listening on %s:%d (%s)", self.settings.host, self.settings.port, "UDP+TCP" if self._tcp else "UDP"
        )

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            with contextlib.suppress(Exception):
                await self.bye(call, "gateway_stopping", wait=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._tcp.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    def _spawn(self, job: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        addr, channel = (str(peer[0]), int(peer[1])), TcpChannel(writer)
        self._connections.add(writer)
        try:
            while (data := await read_tcp_message(reader)) is not None:
                self._received(data, addr, channel)
        except BadRequest as exc:
            SIP_MALFORMED.inc()
            channel.send(f"SIP/2.0 400 {exc}\r\nServer: {SERVER}\r\nContent-Length: 0\r\n\r\n".encode(), addr)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    # --- incoming ---
    def _received(self, data: bytes, addr: tuple[str, int], channel: Channel) -> None:
        if not data.strip():
            return  # CRLF keep-alive
        try:
            message = parse_message(data)
        except BadRequest as exc:
            SIP_MALFORMED.inc()
            SIP_REQUESTS.labels("malformed", "400").inc()
            log.warning("SIP from %s: 400 %s", addr[0], exc)
            if self.settings.admits(addr[0]):
                answer = bare_response(data, 400, str(exc))
                if answer is None and channel.reliable:  # a connection routes the answer by itself
                    answer = f"SIP/2.0 400 {exc}\r\nServer: {SERVER}\r\nContent-Length: 0\r\n\r\n".encode()
                if answer is not None:
                    channel.send(answer, addr)
            return
        try:
            if isinstance(message, SipResponse):
                self._response(message)
            else:
                self._request(message, addr, channel)
        except Exception:  # one bad message never disturbs other calls
            log.exception("SIP %s from %s failed", getattr(message, "method", "response"), addr[0])
            if isinstance(message, SipRequest) and message.method != "ACK":
                self.respond(message, addr, channel, 500, "Server Internal Error")

    def _response(self, response: SipResponse) -> None:
        vias = response.via
        future = self._pending.get(vias[0].branch or "") if vias else None
        if future is not None and not future.done() and response.status_code >= 200:
            future.set_result(response.status_code)

    def _request(self, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        method = request.method.upper()
        if not self.settings.admits(addr[0]):
            metrics.REFUSED.labels("sip_forbidden").inc()
            if method != "ACK":
                log.warning("SIP %s from %s refused: address not allowed", method, addr[0])
                self.respond(request, addr, channel, 403, "Forbidden (address not allowed)")
            return
        call = self.calls.get(request.call_id or "")
        match method:
            case "INVITE":
                self._invite(request, addr, channel, call)
            case "ACK":
                if call is not None and call.dialog.local_tag == (request.to_addr.tag if request.to_addr else None):
                    call.acked.set()
            case "OPTIONS":
                self.respond(request, addr, channel, 200, "OK", {"Accept": "application/sdp"})
            case "CANCEL":
                self._cancel(request, addr, channel, call)
            case "BYE" | "INFO" | "NOTIFY":
                if call is None or not self._in_dialog(call, request):
                    self.respond(request, addr, channel, 481, "Call/Transaction Does Not Exist")
                elif method == "BYE":
                    self.respond(request, addr, channel, 200, "OK", to_tag=call.dialog.local_tag)
                    log.info("%s: caller hung up (BYE)", call.name)
                    self._ended(call, "caller_hung_up")
                elif method == "INFO":
                    self._info(call, request, addr, channel)
                else:
                    self._notify(call, request, addr, channel)
            case _:
                self.respond(request, addr, channel, 405, "Method Not Allowed")

    def _in_dialog(self, call: SipCall, request: SipRequest) -> bool:
        from_tag = request.from_addr.tag if request.from_addr else None
        to_tag = request.to_addr.tag if request.to_addr else None
        return from_tag == call.dialog.remote_tag and to_tag == call.dialog.local_tag

    def _invite(self, request: SipRequest, addr: tuple[str, int], channel: Channel, call: SipCall | None) -> None:
        if call is not None:
            if request.via[0].branch == call.branch:  # a retransmission: the same answer again
                if call.last_response:
                    call.channel.send(call.last_response, call.addr)
                return
            if not self._in_dialog(call, request):
                self.respond(request, addr, channel, 481, "Call/Transaction Does Not Exist")
            elif call.state == "answered":  # re-INVITE (refresh, hold): the media stays as it is
                sdp = {"Content-Type": "application/sdp"}
                self.respond(request, addr, channel, 200, "OK", sdp, call.answer, call.dialog.local_tag, contact=True)
            else:
                self.respond(request, addr, channel, 491, "Request Pending", to_tag=call.dialog.local_tag)
            return
        if request.to_addr is not None and request.to_addr.tag:
            self.respond(request, addr, channel, 481, "Call/Transaction Does Not Exist")
            return
        if self.auth is not None:
            verdict = self.auth.check("INVITE", request.get_header("Authorization"))
            if verdict != "ok":
                if verdict == "bad":
                    log.warning("SIP INVITE from %s: bad credentials", addr[0])
                metrics.REFUSED.labels("sip_unauthenticated").inc()
                challenge = {"WWW-Authenticate": self.auth.challenge(stale=verdict == "stale")}
                self.respond(request, addr, channel, 401, "Unauthorized", challenge)
                return
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if not request.body or content_type != "application/sdp":
            self.respond(request, addr, channel, 488, "Not Acceptable Here (an SDP offer is required)")
            return
        try:
            offer = negotiate(request.text)
        except SdpError as exc:
            log.warning("SIP INVITE from %s: bad SDP: %s", addr[0], exc)
            self.respond(request, addr, channel, 400, f"Bad SDP: {exc}")
            return
        except NoCommonCodec as exc:
            log.warning("SIP INVITE from %s: 488 %s", addr[0], exc)
            warning = {"Warning": f'305 {SERVER} "{_ascii(str(exc))}"'}
            self.respond(request, addr, channel, 488, f"Not Acceptable Here ({_ascii(str(exc), 60)})", warning)
            return
        busy = len(self.gateway.sessions) + sum(1 for c in self.calls.values() if c.session is None)
        if busy >= self.gateway.config.max_calls:
            metrics.REFUSED.labels("full").inc()
            self.respond(request, addr, channel, 503, "Service Unavailable (gateway full)", {"Retry-After": "5"})
            return
        name = session_name(request.call_id or "")
        while name in self.gateway.sessions:
            name = f"{name[:44]}-{random.getrandbits(16):04x}"
        dialog = create_dialog_from_request(request)
        call = SipCall(self, request, dialog, addr, channel, offer, name)
        self.calls[request.call_id or ""] = call
        caller = request.from_addr.uri.user if request.from_addr and request.from_addr.uri else None
        log.info("%s: INVITE from %s at %s, %s/8000", name, mask_user(caller), addr[0], offer.codec)
        call.last_response = self.respond(request, addr, channel, 100, "Trying")
        self._spawn(self._run_call(call))

    async def _run_call(self, call: SipCall) -> None:
        """Answer, run the session until either side ends it, and clean up whatever happens."""
        reason = "caller_hung_up"
        try:
            loop = asyncio.get_running_loop()
            _, call.media = await loop.create_datagram_endpoint(
                lambda: RtpStream(call, call.offer), local_addr=(self.settings.host, 0)
            )
            session = call.session = self.gateway.new_session(call.name, call, "sip")
            await session.start()
            metrics.CALLS.labels("sip").inc()
            if call.state != "proceeding":  # cancelled while the session started
                await session.close("caller_cancelled")
                return
            call.answer = answer_sdp(call.offer, self.advertised_ip, call.media.local_port, random.getrandbits(31))
            call.dialog.confirm()
            call.state = "answered"
            call.last_response = self.respond(
                call.invite,
                call.addr,
                call.channel,
                200,
                "OK",
                {"Content-Type": "application/sdp"},
                call.answer,
                call.dialog.local_tag,
                contact=True,
            )
            call.tasks.append(asyncio.create_task(call.media.run()))
            if not call.channel.reliable:
                call.tasks.append(asyncio.create_task(self._retransmit_ok(call)))
            await session.wait_closed()
            with contextlib.suppress(TimeoutError):  # the session's own hang-up sends the BYE with its reason
                async with asyncio.timeout(1.0):
                    await call.done.wait()
            if not call.done.is_set():
                await self.bye(call, "session_ended", wait=False)
        except asyncio.CancelledError:
            reason = "gateway_stopping"
            raise
        except Exception:  # one bad call never disturbs another
            reason = "internal_error"
            log.exception("%s failed", call.name)
            if call.state == "proceeding":
                self.respond(
                    call.invite, call.addr, call.channel, 500, "Server Internal Error", to_tag=call.dialog.local_tag
                )
            else:
                await self.bye(call, "internal_error", wait=False)
        finally:
            if call.session is not None:
                await call.session.close(reason)
            self._release(call)

    async def _retransmit_ok(self, call: SipCall) -> None:
        """RFC 3261 §13.3.1.4: the 200 goes again until the ACK arrives; no ACK in 32 s ends the call."""
        interval, waited = T1, 0.0
        while waited < TIMER_H:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await call.acked.wait()
                    return
            waited += interval
            call.channel.send(call.last_response, call.addr)
            interval = min(interval * 2, T2)
        log.warning("%s: no ACK for the 200 OK", call.name)
        await self.bye(call, "no_ack", wait=False)

    def _cancel(self, request: SipRequest, addr: tuple[str, int], channel: Channel, call: SipCall | None) -> None:
        if call is None or request.via[0].branch != call.branch:
            self.respond(request, addr, channel, 481, "Call/Transaction Does Not Exist")
            return
        self.respond(request, addr, channel, 200, "OK", to_tag=call.dialog.local_tag)
        if call.state == "proceeding":
            call.state = "cancelled"
            self.respond(call.invite, call.addr, call.channel, 487, "Request Terminated", to_tag=call.dialog.local_tag)
            log.info("%s: cancelled by the caller", call.name)

    def _info(self, call: SipCall, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        kind = (request.content_type or "").split(";")[0].strip().lower()
        if kind == "application/dtmf-relay":
            match = re.search(r"^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$", request.text, re.MULTILINE)
        elif kind == "application/dtmf":
            match = re.match(r"^\s*([0-9A-Da-d*#])\s*$", request.text)
        else:
            self.respond(
                request,
                addr,
                channel,
                415,
                "Unsupported Media Type",
                {"Accept": "application/dtmf-relay, application/dtmf"},
                to_tag=call.dialog.local_tag,
            )
            return
        if match is None:
            self.respond(request, addr, channel, 400, "Bad DTMF body", to_tag=call.dialog.local_tag)
            return
        self.respond(request, addr, channel, 200, "OK", to_tag=call.dialog.local_tag)
        if call.session is not None:
            log.info("%s: key from SIP INFO", call.name)
            call.session.key(match.group(1).upper())

    def _notify(self, call: SipCall, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        """Progress of our REFER (a message/sipfrag): once the transfer target answered, our leg is done."""
        self.respond(request, addr, channel, 200, "OK", to_tag=call.dialog.local_tag)
        match = re.match(r"^SIP/2\.0 (\d{3})", request.text.strip())
        status = int(match.group(1)) if match else 0
        if status >= 300:
            log.warning("%s: transfer failed (%d)", call.name, status)
        elif status >= 200 and call.transfer_target:
            log.info("%s: transfer completed", call.name)
            self._spawn(self.bye(call, "transferred"))

    # --- outgoing ---
    def respond(
        self,
        request: SipRequest,
        addr: tuple[str, int],
        channel: Channel,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
        body: str = "",
        to_tag: str | None = None,
        *,
        contact: bool = False,
    ) -> bytes:
        method = request.method.upper()
        SIP_REQUESTS.labels(method if method in KNOWN_METHODS else "other", str(status)).inc()
        response = SipResponse(status_code=status, reason_phrase=_ascii(reason))
        for via in request.headers.get("via"):
            response.headers.append("Via", via)
        for name in ("From", "Call-ID", "CSeq"):
            response.headers.set_single(name, request.get_header(name) or "")
        to = request.get_header("To") or ""
        if status > 100 and ";tag=" not in to.replace(" ", ""):
            to += f";tag={to_tag or generate_tag()}"
        response.headers.set_single("To", to)
        if contact:
            response.headers.set_single("Contact", self.contact(channel))
        if status in (200, 405) or status >= 400:
            response.headers.set_single("Allow", ALLOW)
        for name, value in (headers or {}).items():
            response.headers.set_single(name, value)
        response.headers.set_single("Server", SERVER)
        if body:
            response.text = body
        data = bytes(response)
        channel.send(data, addr)
        return data

    async def request(self, call: SipCall, method: str, headers: dict[str, str], *, wait: bool = True) -> int | None:
        """An in-dialog request to the caller's side; returns the final status (None: no answer in time)."""
        host = self.advertised_ip
        message = call.dialog.create_request(
            method, via_host=host, via_port=self.settings.port, via_transport=call.channel.transport_name
        )
        message.headers.set_single("Contact", self.contact(call.channel))
        message.headers.set_single("User-Agent", SERVER)
        for name, value in headers.items():
            message.headers.set_single(name, value)
        branch = message.via[0].branch or ""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        data = bytes(message)
        try:
            call.channel.send(data, call.addr)
            if not wait:
                return None
            interval, deadline = T1, time.monotonic() + REFER_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        return await asyncio.shield(future)
                if not call.channel.reliable:
                    call.channel.send(data, call.addr)
                interval = min(interval * 2, T2)
            return None
        finally:
            if wait or future.done():
                self._pending.pop(branch, None)
            else:
                asyncio.get_running_loop().call_later(TIMER_H, self._pending.pop, branch, None)

    async def bye(self, call: SipCall, reason: str, *, wait: bool = True) -> None:
        """End a call from our side: BYE (if it was answered), then the session and the media."""
        if call.state == "answered" and call.dialog.state == DialogState.CONFIRMED:
            call.state = "ending"
            text = reason.replace('"', "'")[:60]
            await self.request(call, "BYE", {"Reason": f'Q.850;cause=16;text="{text}"'}, wait=wait)
        self._ended(call, reason)

    def _ended(self, call: SipCall, reason: str) -> None:
        if call.done.is_set():
            return
        call.state = "ended"
        call.dialog.terminate()
        call.done.set()
        if call.session is not None:
            self._spawn(call.session.close(reason))
        self._release(call)

    def _release(self, call: SipCall) -> None:
        for task in call.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if call.media is not None:
            call.media.close()
        if self.calls.get(call.invite.call_id or "") is call:
            self.calls.pop(call.invite.call_id or "", None)
            if call.media is not None:
                stats = call.media.jitter.stats
                log.info("%s: RTP in %d packets, %d lost, %d late", call.name, stats.received, stats.lost, stats.late)
