"""SIP messages: parsing with the checks a peer's log can explain, building our responses, header helpers.

aiosipua supplies the message objects, serialisation and header codecs; this module adds what a UAS needs on top:
a strict first look at every message (BadRequest says what is wrong), a 400 for what cannot even be parsed, the
one way our responses are built, and the names and masks used in logs.
"""

from __future__ import annotations

import hashlib
import re

from aiosipua.header_codec import parse_address, parse_via
from aiosipua.message import SipMessage, SipRequest, SipResponse
from aiosipua.utils import generate_tag

SERVER = "hotline-gateway"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
KNOWN_METHODS = {*ALLOW.split(", "), "REFER", "REGISTER", "SUBSCRIBE", "MESSAGE", "UPDATE", "PRACK", "PUBLISH"}
MAX_MESSAGE_BYTES = 64 * 1024
MAX_VIAS = 20  # Via lines echoed in a bare 400 (one each of From, To, Call-ID, CSeq)
MAX_VIAS_IN = 71  # Max-Forwards starts at 70: a request through more proxies than that is not real


class BadRequest(ValueError):
    """A request we answer with 400 and this reason phrase."""


_TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"  # RFC 3261 token: a method may start with any of these (RFC 4475 intmeth)
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) SIP/2\.0$")
_RESPONSE_LINE = re.compile(r"^SIP/2\.0 [1-6]\d\d( .*)?$")
_CSEQ = re.compile(rf"^(\d{{1,10}})\s+({_TOKEN})$")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE = ("Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards", "Content-Type")
_VIA = re.compile(rf"^SIP\s*/\s*2\.0\s*/\s*{_TOKEN}\s+[^\s;,]")
_EMPTY_PARAM = re.compile(r";\s*(?:;|$)")
# name-addr: an optional display name (tokens or a quoted string), then <uri> with no spaces inside the brackets;
# unquoted non-ASCII names (张伟 <sip:...>) are let through: phones send them, and they are no ASCII specials
_NAME_ADDR = re.compile(r'^\s*(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9.!%*_+`\'~\- \t\x80-\U0010ffff]*)\s*<(\S[^>]*\S|\S)>')


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse and check one SIP message; BadRequest says what is wrong in words a peer's log can show."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Headers are not UTF-8") from None
    start = text.split("\n", 1)[0].rstrip("\r")  # trailing spaces are not stripped: RFC 4475 trws
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
    if len(message.headers.get("via")) > MAX_VIAS_IN:
        raise BadRequest("Too many Via headers")  # each would be echoed on a line of its own in our answer
    if not re.match(r"^sips?:|^tel:", message.uri, re.IGNORECASE):
        raise BadRequest("Request-URI must be a sip: URI")
    if "?" in message.uri.split("@", 1)[-1]:  # a ? in the user part is allowed (RFC 4475 intmeth), after it not
        raise BadRequest("Request-URI with headers")  # RFC 4475 escruri
    _check_headers(message)
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
        if not re.fullmatch(r"[0-9]{1,10}", length.strip()):  # not isdigit(): "²" is a digit to it, not to int()
            raise BadRequest("Malformed Content-Length")
        if int(length) > len(body):
            raise BadRequest("Content-Length exceeds the body")
    return message


def _check_headers(message: SipRequest) -> None:
    """What aiosipua lets through and RFC 4475 calls malformed: repeated single headers (multi01, mcl01), empty
    Via parameters (badinv01), unquoted or unterminated display names and spaces inside <> (baddn, quotbal,
    badaspec), and an addr-spec with headers outside <> (regbadct)."""
    for name in _SINGLE:
        if len(message.headers.get(name)) > 1:
            raise BadRequest(f"More than one {name} header")
    for value in message.headers.get("via"):
        if not _VIA.match(value) or _EMPTY_PARAM.search(value):
            raise BadRequest("Malformed Via header")
    for name in ("From", "To", "Contact"):
        for value in message.headers.get(name):
            if "<" in value or '"' in value:
                if not _NAME_ADDR.match(value):
                    raise BadRequest(f"Malformed {name} header")
            elif value.strip() != "*" and re.search(r"[?,]", value.split(";", 1)[0]):
                raise BadRequest(f"{name} URI with headers must be in <>")


def ascii_text(text: str, limit: int = 100) -> str:
    """Printable ASCII only (reason phrases and echoed headers), cut at `limit` characters."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def never_answered(data: bytes) -> bool:
    """A response or an ACK, however broken: nothing is ever sent back for these (RFC 3261 §17)."""
    start = data.lstrip()
    return start.startswith(b"SIP/") or [word.upper() for word in start.split(None, 1)[:1]] == [b"ACK"]


def bare_response(data: bytes, status: int, reason: str) -> bytes | None:
    """A response to a request we could not parse, echoing what can be found of its headers (None: give up)."""
    text = data[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n\n", 1)[0].split("\n")
    if not lines or not re.match(r"^[A-Za-z]+ ", lines[0]) or never_answered(data):
        return None
    names = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To"}
    names |= {"call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
    out = [f"SIP/2.0 {status} {ascii_text(reason)}"]
    echoed: dict[str, int] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        header = names.get(name.strip().lower()) if sep else None
        if header and echoed.get(header, 0) < (MAX_VIAS if header == "Via" else 1):  # a flood of headers: not back
            echoed[header] = echoed.get(header, 0) + 1
            out.append(f"{header}: {ascii_text(value.strip(), 300)}")
    if not any(line.startswith("Via:") for line in out):
        return None  # nowhere to route an answer
    out += [f"Server: {SERVER}", "Content-Length: 0"]
    return ("\r\n".join(out) + "\r\n\r\n").encode()


def build_response(
    request: SipRequest,
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
    body: str = "",
    to_tag: str | None = None,
    contact: str | None = None,
) -> bytes:
    """Our response to `request`: its Via, From, Call-ID and CSeq echoed, our To tag on anything above 100."""
    response = SipResponse(status_code=status, reason_phrase=ascii_text(reason))
    for via in request.headers.get("via"):
        response.headers.append("Via", via)
    for name in ("From", "Call-ID", "CSeq"):
        response.headers.set_single(name, request.get_header(name) or "")
    to = request.get_header("To") or ""
    if status > 100 and ";tag=" not in to.replace(" ", ""):
        to += f";tag={to_tag or generate_tag()}"
    response.headers.set_single("To", to)
    if contact:
        response.headers.set_single("Contact", contact)
    if status in (200, 405) or status >= 400:
        response.headers.set_single("Allow", ALLOW)
    for name, value in (headers or {}).items():
        response.headers.set_single(name, value)
    response.headers.set_single("Server", SERVER)
    if body:
        response.text = body
    return bytes(response)


def minimal_400(reason: str) -> bytes:
    """A 400 without any echoed header, for a connection that routes the answer by itself."""
    return f"SIP/2.0 400 {reason}\r\nServer: {SERVER}\r\nContent-Length: 0\r\n\r\n".encode()


# --- header helpers ---
def branch(request: SipRequest) -> str | None:
    """The top Via's branch: what tells a retransmission (or the CANCEL of a request) from a new request."""
    vias = request.via
    return vias[0].branch if vias else None


def tags(request: SipRequest) -> tuple[str | None, str | None]:
    """The From and To tags (None where absent)."""
    return (
        request.from_addr.tag if request.from_addr else None,
        request.to_addr.tag if request.to_addr else None,
    )


def media_type(request: SipRequest) -> str:
    """The Content-Type without its parameters, lower case ("" if none)."""
    return (request.content_type or "").split(";")[0].strip().lower()


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
