"""SDP offer/answer (RFC 3264) for one G.711 audio stream: PCMU or PCMA at 8 kHz, plus telephone-event."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aiosipua.sdp import parse_sdp

from voice_gateway.transports.rtp import CLOCK_RATE


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
    if any(line.startswith("m=") and len(line[2:].split()) < 4 for line in lines):
        raise SdpError("m= lines must be <media> <port> <proto> <formats>")  # each is answered, even refused
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
    """Our answer: the chosen codec (and telephone-event) on `ip:port`, the other m-lines refused in place."""
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


OFFER_DTMF_TYPE = 101


def offer_sdp(ip: str, port: int, session_id: int) -> str:
    """Our offer when we place a call: PCMU, then PCMA, at 8 kHz, and telephone-event, on `ip:port`.

    The far end's answer goes through `negotiate` like an offer would: its first G.711 codec is the one used."""
    family = "IP6" if ":" in ip else "IP4"
    return (
        "\r\n".join(
            [
                "v=0",
                f"o=hotline {session_id} {session_id} IN {family} {ip}",
                "s=hotline",
                f"c=IN {family} {ip}",
                "t=0 0",
                f"m=audio {port} RTP/AVP 0 8 {OFFER_DTMF_TYPE}",
                f"a=rtpmap:0 PCMU/{CLOCK_RATE}",
                f"a=rtpmap:8 PCMA/{CLOCK_RATE}",
                f"a=rtpmap:{OFFER_DTMF_TYPE} telephone-event/{CLOCK_RATE}",
                f"a=fmtp:{OFFER_DTMF_TYPE} 0-15",
                "a=ptime:20",
                "a=sendrecv",
            ]
        )
        + "\r\n"
    )
