"""SIP (RFC 3261) over UDP and TCP with G.711 RTP: a PBX, a SIP trunk or a softphone calls the gateway directly.

One INVITE = one call on the switchboard (voice_gateway/calls.py). The bot does turn-taking; this package only
speaks the wire: SDP offer/answer (PCMU or PCMA at 8 kHz, telephone-event), RTP in through a small jitter buffer
and out one packet per tick of the call's bridge, DTMF from RFC 4733 events or SIP INFO, BYE either way, CANCEL,
OPTIONS, and a blind-transfer REFER when the dialogue hands the caller to a person and an agent URI is configured
for the queue. Callers are admitted by source address (HOTLINE_SIP_ALLOW) and, if a password is set, by digest
authentication.

    message   parsing and checking SIP messages, building our responses, header helpers, names for logs
    sdp       offer/answer
    auth      digest authentication
    settings  SipSettings, from the gateway's settings
    dialog    one INVITE dialog as a state machine with no I/O: events in, actions out, RFC 3261 timers
    media     one call's RTP stream
    channels  the UDP socket and TCP connections
    call      SipCall: the per-call caller leg
    server    SipServer: dispatch, admission, the dialog's actions done with real sockets and timers

aiosipua supplies message parsing and serialisation, header codecs, SDP parsing and the dialog identifiers; the
transaction handling here is deliberately small (what a UAS behind a PBX needs).
"""

from voice_gateway.transports.sip.auth import DigestAuth
from voice_gateway.transports.sip.call import SipCall
from voice_gateway.transports.sip.dialog import T1, T2, TIMER_H, InviteDialog, Phase
from voice_gateway.transports.sip.media import RTP_WRONG_SOURCE, RtpStream
from voice_gateway.transports.sip.message import (
    BadRequest,
    bare_response,
    mask_user,
    parse_message,
    session_name,
)
from voice_gateway.transports.sip.sdp import MediaOffer, NoCommonCodec, SdpError, answer_sdp, negotiate
from voice_gateway.transports.sip.server import SipServer
from voice_gateway.transports.sip.settings import SipSettings, parse_agents, parse_allow

__all__ = [
    "RTP_WRONG_SOURCE",
    "T1",
    "T2",
    "TIMER_H",
    "BadRequest",
    "DigestAuth",
    "InviteDialog",
    "MediaOffer",
    "NoCommonCodec",
    "Phase",
    "RtpStream",
    "SdpError",
    "SipCall",
    "SipServer",
    "SipSettings",
    "answer_sdp",
    "bare_response",
    "mask_user",
    "negotiate",
    "parse_agents",
    "parse_allow",
    "parse_message",
    "session_name",
]
