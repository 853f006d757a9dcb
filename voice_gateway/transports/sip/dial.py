"""Calls we place (a callback an agent works): the INVITE out over UDP, what `OutboundDialog` (uac.py) says done
with real messages and timers, and the callee as a caller leg (`OutboundCall`) on a call of the switchboard.

    SipServer.dial(number, call_id) -> Call      (raises DialFailed with the reason in Chinese)

The place on the switchboard is held from the dial on (a callback counts against max calls like any call); the
`Call` starts when the callee answers, with the bot detached at once: the agent who dialled is the one who speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from aiosipua.dialog import Dialog
from aiosipua.header_codec import parse_uri
from aiosipua.headers import stringify_uri
from aiosipua.message import SipRequest, SipResponse
from aiosipua.utils import generate_branch, generate_tag

from hotline_domain.contract import Handoff
from voice_gateway.bridge import Pacing
from voice_gateway.calls import Admission, Call, Refused
from voice_gateway.flow import EndReason
from voice_gateway.transports.sip.channels import Channel
from voice_gateway.transports.sip.media import RtpStream
from voice_gateway.transports.sip.message import ALLOW, SERVER, build_response, mask_user
from voice_gateway.transports.sip.sdp import MediaOffer, NoCommonCodec, SdpError, answer_sdp, negotiate, offer_sdp
from voice_gateway.transports.sip.uac import (
    Action,
    Answered,
    ByeAnswered,
    Ended,
    Event,
    Forget,
    HangUp,
    OutboundDialog,
    Progress,
    Received,
    RepeatInvite,
    Reply,
    Respond,
    SendAck,
    SendBye,
    SendCancel,
    SendInvite,
    Start,
    StopMedia,
    Tick,
    failure_text,
)

if TYPE_CHECKING:
    from voice_gateway.transports.sip.server import SipServer

log = logging.getLogger("hotline.sip")

NOT_CONFIGURED = "没有配置外呼线路"
OUTCOME_ENDS = {
    "callee_hung_up": EndReason.CALLER_HUNG_UP,
    "gateway_stopping": EndReason.GATEWAY_STOPPING,
    "internal_error": EndReason.INTERNAL_ERROR,
}


class DialFailed(Exception):
    """The call was not placed, or not answered: `reason` in Chinese for the agent; `status` as the desk answers
    it (409 no outbound line, 400 a bad number, 503 the gateway is full, 502 the far end's answer)."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass
class OutboundCall:
    """One call we place: what its messages need, and the callee as a caller leg (voice_gateway.calls.CallerLeg)."""

    server: SipServer
    dialog: OutboundDialog
    name: str
    sip_call_id: str
    uri: str  # the Request-URI: HOTLINE_SIP_OUTBOUND with the number in it
    local_uri: str  # our From
    addr: tuple[str, int]  # where our requests go: the outbound line; the callee's Contact once answered
    channel: Channel
    media: RtpStream
    offer: str  # our SDP
    answered: asyncio.Future[Call]
    sample_rate: int = 8000
    invite: bytes = b""  # the INVITE as last sent (timer A; its branch is the CANCEL's)
    branch: str = ""
    cancel: bytes = b""
    ack: bytes = b""  # the ACK as last sent, for a retransmitted final
    ok: SipResponse | None = None  # the 2xx: the dialog's tags, Contact, route set
    ok_media: MediaOffer | None = None  # the far end's answer, if usable
    sip_dialog: Dialog | None = None
    call: Call | None = None
    media_on: bool = False
    end_reason: EndReason = EndReason.CALLER_HUNG_UP
    up: asyncio.Event = field(default_factory=asyncio.Event)  # answered, or over
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    wire: ClassVar[str] = "sip"
    pacing: ClassVar[Pacing] = Pacing(lead_frames=0, send_silence=True)

    def heard(self, pcm: bytes) -> None:
        if self.call is not None:
            self.call.audio(pcm)

    def key(self, key: str) -> None:
        if self.call is not None:
            self.call.key(key)

    # --- the caller leg ---
    async def send_audio(self, pcm: bytes | None) -> None:
        if not self.media_on:
            return
        if pcm is None:
            self.media.send_silence()
        else:
            self.media.send_frame(pcm)
        self.media.check_inbound(time.monotonic())

    async def clear(self) -> None:
        pass

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        self.server.dialer.handle(self, HangUp(detail or reason.value, time.monotonic()))
        await self.done.wait()

    async def transfer(self, handoff: Handoff) -> bool:
        return False  # an agent already has this call


class Dialer:
    """The calls a SipServer places, by SIP Call-ID (kept until their dialog is forgotten)."""

    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.calls: dict[str, OutboundCall] = {}

    @property
    def configured(self) -> bool:
        return bool(self.server.settings.outbound)

    async def dial(self, number: str, call_id: str) -> Call:
        """Place a call to `number` and wait until it is answered (the call, started) or not (DialFailed)."""
        server, settings = self.server, self.server.settings
        if not settings.outbound:
            raise DialFailed(NOT_CONFIGURED, 409)
        if server.udp is None:
            raise DialFailed("SIP 未启动", 409)
        user = re.sub(r"[^0-9+*#]", "", number)
        if not user:
            raise DialFailed("回电号码无效", 400)
        uri = settings.outbound.replace("{number}", user)
        addr = await self._resolve(uri)
        try:
            admission = server.switchboard.admit()
        except Refused as refused:
            full = refused.why == "full"
            raise DialFailed("线路已满，请稍后再拨" if full else "服务器正在停机维护，请稍后再拨", 503) from None
        try:
            out = await self._place(uri, addr, server.switchboard.unique_id(call_id))
        except BaseException:
            admission.release()
            raise
        log.info("%s: dialling %s via %s:%d", out.name, mask_user(user), *addr)
        server.spawn(self._run(out, admission))
        try:
            return await asyncio.shield(out.answered)
        except asyncio.CancelledError:  # whoever dialled gave up (the desk is closing): so do we
            self.handle(out, HangUp("gateway_stopping", time.monotonic(), at_once=True))
            raise

    async def _resolve(self, uri: str) -> tuple[str, int]:
        try:
            target = parse_uri(uri)
            family = socket.AF_INET6 if ":" in self.server.settings.host else socket.AF_INET
            found = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port or 5060, family=family, type=socket.SOCK_DGRAM
            )
        except (OSError, ValueError, IndexError) as exc:
            log.warning("outbound line %s not resolved: %s", re.sub(r":[^@]*@", ":*@", uri), exc)
            raise DialFailed("外呼线路地址无法解析") from None
        host, port = found[0][4][:2]
        return str(host), int(port)

    async def _place(self, uri: str, addr: tuple[str, int], name: str) -> OutboundCall:
        server, settings = self.server, self.server.settings
        assert server.udp is not None
        _, media = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: RtpStream(MediaOffer(addr[0], 9, 0, "PCMU", None), name, lambda pcm: None, lambda key: None),
            local_addr=(settings.host, 0),
        )
        ip = server.advertised_ip
        host = f"[{ip}]" if ":" in ip else ip
        dialog = OutboundDialog(
            generate_tag(), uri, user=settings.user, password=settings.password, cnonce=secrets.token_hex(8), name=name
        )
        out = OutboundCall(
            server,
            dialog,
            name,
            f"{secrets.token_hex(12)}@{host}",
            uri,
            f"sip:{settings.outbound_from}@{host}",
            addr,
            server.udp,
            media,
            offer_sdp(ip, media.local_port, random.getrandbits(31)),
            asyncio.get_running_loop().create_future(),
        )
        media.on_audio, media.on_key = out.heard, out.key
        self.calls[out.sip_call_id] = out
        self.handle(out, Start(time.monotonic()))
        return out

    async def _run(self, out: OutboundCall, admission: Admission) -> None:
        """Once answered, the call runs on the switchboard until either side ends it."""
        try:
            await out.up.wait()
            if out.media_on:
                await admission.run(out, out.name, lambda call: self._media(out, call))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", out.name)
        finally:
            admission.release()
            if not out.done.is_set():
                self.handle(out, HangUp("internal_error", time.monotonic(), at_once=True))
            if not out.answered.done():
                out.answered.set_exception(DialFailed("通话建立失败", 500))

    async def _media(self, out: OutboundCall, call: Call) -> EndReason:
        out.call = call
        call.take_over()  # the agent who dialled speaks first; the bot stays off this call's bridge
        if not out.answered.done():
            out.answered.set_result(call)
        await out.done.wait()
        return out.end_reason

    # --- from the wire ---
    def owns(self, sip_call_id: str | None) -> bool:
        return bool(sip_call_id) and sip_call_id in self.calls

    def response(self, response: SipResponse) -> None:
        out = self.calls.get(response.call_id or "")
        cseq = response.cseq
        if out is None or cseq is None:
            return
        status = response.status_code
        method = cseq.method.upper()
        if method == "INVITE" and 200 <= status < 300 and out.ok is None:
            out.ok = response
            try:
                out.ok_media = negotiate(response.text)
            except (SdpError, NoCommonCodec) as exc:
                log.warning("%s: the answer's SDP is not usable: %s", out.name, exc)
        to_tag = (response.to_addr.tag if response.to_addr else None) or ""
        challenge = response.get_header("WWW-Authenticate" if status == 401 else "Proxy-Authenticate") or ""
        self.handle(out, Reply(status, method, to_tag, time.monotonic(), challenge))

    def request(self, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        out = self.calls[request.call_id or ""]
        self.handle(out, Received(request, time.monotonic()), (addr, channel))

    # --- the dialog's actions, done ---
    def handle(self, out: OutboundCall, event: Event, peer: tuple[tuple[str, int], Channel] | None = None) -> None:
        self._execute(out, out.dialog.handle(event), peer)
        if out.timer is not None:
            out.timer.cancel()
            out.timer = None
        deadline = out.dialog.deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            out.timer = asyncio.get_running_loop().call_later(delay, self._tick, out)

    def _tick(self, out: OutboundCall) -> None:
        out.timer = None
        self.handle(out, Tick(time.monotonic()))

    def _execute(self, out: OutboundCall, actions: list[Action], peer: tuple[tuple[str, int], Channel] | None) -> None:
        for action in actions:
            match action:
                case SendInvite(cseq=cseq, auth=auth):
                    out.branch, out.invite = generate_branch(), b""
                    out.invite = self._invite(out, cseq, auth)
                    out.channel.send(out.invite, out.addr)
                case RepeatInvite():
                    out.channel.send(out.invite, out.addr)
                case SendCancel(again=again):
                    if not again:
                        out.cancel = self._simple(out, "CANCEL", out.dialog.cseq, "")
                    out.channel.send(out.cancel, out.addr)
                case SendAck(status=status, to_tag=to_tag, again=again):
                    if not again:
                        out.ack = (
                            self._ack_ok(out) if status < 300 else self._simple(out, "ACK", out.dialog.cseq, to_tag)
                        )
                    out.channel.send(out.ack, out.addr)
                case Progress(status=status):
                    log.info("%s: %d %s", out.name, status, "ringing" if status == 180 else "in progress")
                case Answered():
                    self._answered(out)
                case Respond(request=request, status=status, reason=reason, sdp=sdp):
                    addr, channel = peer or (out.addr, out.channel)
                    body, headers = "", {}
                    if sdp and out.ok_media is not None:
                        body = answer_sdp(out.ok_media, self.server.advertised_ip, out.media.local_port, 1)
                        headers = {"Content-Type": "application/sdp"}
                    contact = self.server.contact(out.channel)
                    data = build_response(request, status, reason, headers, body, out.dialog.local_tag, contact)
                    channel.send(data, addr)
                case SendBye(reason=reason, await_answer=await_answer):
                    if out.sip_dialog is None:
                        self._dialog_from_ok(out)
                    text = reason.replace('"', "'")[:60]
                    branch, data = self._bye(out, text)
                    if await_answer:
                        out.tasks.append(asyncio.create_task(self._await_bye(out, branch, data)))
                case StopMedia():
                    out.media_on = False
                    out.media.close()
                case Ended(outcome=outcome, answered=answered):
                    self._ended(out, outcome, answered)
                case Forget():
                    self._forget(out)

    def _answered(self, out: OutboundCall) -> None:
        self._dialog_from_ok(out)
        if out.ok_media is None:  # ACKed, and hung up at once: nothing to talk over
            self.handle(out, HangUp("codec", time.monotonic(), at_once=True))
            if not out.answered.done():
                out.answered.set_exception(DialFailed(failure_text("codec")))
            return
        out.media.negotiated(out.ok_media)
        out.media_on = True
        out.up.set()

    def _ended(self, out: OutboundCall, outcome: str, answered: bool) -> None:
        out.end_reason = OUTCOME_ENDS.get(outcome, EndReason.CALLER_HUNG_UP)
        if out.sip_dialog is not None:
            out.sip_dialog.terminate()
        if not out.answered.done():
            out.answered.set_exception(DialFailed(failure_text(outcome)))
        if not answered:
            log.info("%s: not answered: %s", out.name, outcome)
        out.up.set()
        out.done.set()

    def _forget(self, out: OutboundCall) -> None:
        if out.timer is not None:
            out.timer.cancel()
            out.timer = None
        for task in out.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        out.media.close()
        if self.calls.get(out.sip_call_id) is out:
            del self.calls[out.sip_call_id]

    async def _await_bye(self, out: OutboundCall, branch: str, data: bytes) -> None:
        status = None
        try:
            status = await self.server._await_answer(out, branch, data)
        finally:
            self.handle(out, ByeAnswered(status, time.monotonic()))

    def stop(self) -> None:
        """The server is stopping: every call placed ends now (BYE or CANCEL), and is forgotten."""
        for out in list(self.calls.values()):
            with contextlib.suppress(Exception):
                self.handle(out, HangUp("gateway_stopping", time.monotonic(), at_once=True))
            self._forget(out)

    # --- messages ---
    def _head(self, out: OutboundCall, method: str, cseq: int, to_tag: str) -> list[str]:
        """The INVITE transaction's headers (the INVITE, its CANCEL and the ACK of a failure share its branch)."""
        server = self.server
        to = f"<{out.uri}>" + (f";tag={to_tag}" if to_tag else "")
        via_host = server.advertised_ip if ":" not in server.advertised_ip else f"[{server.advertised_ip}]"
        return [
            f"{method} {out.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {via_host}:{server.settings.port};branch={out.branch};rport",
            "Max-Forwards: 70",
            f"From: <{out.local_uri}>;tag={out.dialog.local_tag}",
            f"To: {to}",
            f"Call-ID: {out.sip_call_id}",
            f"CSeq: {cseq} {method}",
            f"User-Agent: {SERVER}",
        ]

    def _invite(self, out: OutboundCall, cseq: int, auth: tuple[str, str] | None) -> bytes:
        lines = self._head(out, "INVITE", cseq, "")
        lines += [f"Contact: {self.server.contact(out.channel)}", f"Allow: {ALLOW}", "Content-Type: application/sdp"]
        if auth is not None:
            lines.append(f"{auth[0]}: {auth[1]}")
        body = out.offer.encode()
        return ("\r\n".join([*lines, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body

    def _simple(self, out: OutboundCall, method: str, cseq: int, to_tag: str) -> bytes:
        return ("\r\n".join([*self._head(out, method, cseq, to_tag), "Content-Length: 0"]) + "\r\n\r\n").encode()

    def _dialog_from_ok(self, out: OutboundCall) -> None:
        """The dialog the 2xx set up (its tags, the callee's Contact, the route set), and where its requests go."""
        ok = out.ok
        assert ok is not None
        contact = ok.contact[0].uri if ok.contact else None
        route_set = list(reversed(ok.headers.get("record-route")))  # a UAC's, in reverse (RFC 3261 §12.1.2)
        out.sip_dialog = Dialog(
            call_id=out.sip_call_id,
            local_tag=out.dialog.local_tag,
            remote_tag=out.dialog.to_tag,
            local_uri=out.local_uri,
            remote_uri=out.uri,
            remote_target=stringify_uri(contact) if contact is not None else out.uri,
            route_set=route_set,
            local_cseq=out.dialog.cseq,
        )
        out.sip_dialog.confirm()
        if contact is not None and not route_set and _is_ip(contact.host):  # else through the outbound line
            out.addr = (contact.host.strip("[]"), contact.port or 5060)

    def _bye(self, out: OutboundCall, text: str) -> tuple[str, bytes]:
        assert out.sip_dialog is not None
        server = self.server
        message = out.sip_dialog.create_request(
            "BYE", via_host=server.advertised_ip, via_port=server.settings.port, via_transport="UDP"
        )
        message.headers.set_single("User-Agent", SERVER)
        message.headers.set_single("Reason", f'Q.850;cause=16;text="{text}"')
        message.headers.set_single("Content-Length", "0")
        data = bytes(message)
        out.channel.send(data, out.addr)
        return message.via[0].branch or "", data

    def _ack_ok(self, out: OutboundCall) -> bytes:
        """The ACK of the 2xx: a transaction of its own, in the dialog, with the INVITE's CSeq number."""
        if out.sip_dialog is None:
            self._dialog_from_ok(out)
        assert out.sip_dialog is not None
        dialog = out.sip_dialog
        server = self.server
        dialog.local_cseq = out.dialog.cseq - 1
        message = dialog.create_request(
            "ACK", via_host=server.advertised_ip, via_port=server.settings.port, via_transport="UDP"
        )
        message.headers.set_single("User-Agent", SERVER)
        message.headers.set_single("Content-Length", "0")
        return bytes(message)


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+|\[?[0-9a-fA-F:]+\]?", host or ""))
