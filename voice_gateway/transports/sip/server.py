"""The SIP server: UDP and TCP channels, admission, one InviteDialog per call, and its actions done for real.

Everything the rest of the gateway sees of a SIP call goes through `SipServer._admit` and `SipServer._run_call`
(the call's place on the switchboard, its start, the answer, the wait, the close) and `SipCall` in call.py (the
caller leg, and the caller's audio and keys on their way to the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from aiosipua.dialog import create_dialog_from_request
from aiosipua.message import SipRequest, SipResponse
from prometheus_client import Counter

from voice_gateway import metrics
from voice_gateway.calls import Admission, Call, Refused, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.transports.sip.auth import DigestAuth
from voice_gateway.transports.sip.call import SipCall
from voice_gateway.transports.sip.channels import Channel, TcpChannel, UdpChannel, read_tcp_message
from voice_gateway.transports.sip.dial import Dialer, OutboundCall
from voice_gateway.transports.sip.dialog import (
    T1,
    T2,
    AckTimedOut,
    Action,
    Admitted,
    Answer,
    ByeAnswered,
    DeliverKey,
    EndCall,
    Event,
    Failed,
    HangUp,
    InviteDialog,
    Phase,
    Received,
    RepeatResponse,
    RetransmitOk,
    SendBye,
    SendResponse,
    StartMedia,
    StopMedia,
    Tick,
)
from voice_gateway.transports.sip.media import RtpStream
from voice_gateway.transports.sip.message import (
    KNOWN_METHODS,
    SERVER,
    BadRequest,
    ascii_text,
    bare_response,
    build_response,
    mask_user,
    media_type,
    minimal_400,
    never_answered,
    parse_message,
    session_name,
)
from voice_gateway.transports.sip.sdp import NoCommonCodec, SdpError, answer_sdp, negotiate
from voice_gateway.transports.sip.settings import SipSettings

log = logging.getLogger("hotline.sip")

REQUEST_TIMEOUT_S = 4.0  # our in-dialog requests (REFER, BYE): no final answer by then (plus one interval): give up

SIP_REQUESTS = Counter(
    "hotline_sip_requests_total", "SIP requests received, by method and our answer", ["method", "status"]
)
SIP_MALFORMED = Counter("hotline_sip_malformed_total", "SIP messages that could not be parsed")

Peer = tuple[tuple[str, int], Channel]  # where a request came from, and so where its answer goes


class SipServer:
    """SIP user agent server for the gateway: admission, offer/answer, and one bridged call per answered INVITE."""

    def __init__(self, switchboard: Switchboard, settings: SipSettings) -> None:
        self.switchboard = switchboard
        self.settings = settings
        self.auth = DigestAuth(settings.user, settings.password) if settings.password else None
        self.calls: dict[str, SipCall] = {}  # by SIP Call-ID
        self._udp: UdpChannel | None = None
        self._tcp: asyncio.Server | None = None
        self._pending: dict[str, asyncio.Future[int]] = {}  # our requests, by Via branch
        self._tasks: set[asyncio.Task] = set()
        self._connections: set[asyncio.StreamWriter] = set()  # TCP peers
        self.dialer = Dialer(self)  # the calls we place (dial.py)

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

    @property
    def udp(self) -> UdpChannel | None:
        return self._udp

    async def dial(self, number: str, call_id: str) -> Call:
        """Call `number` through HOTLINE_SIP_OUTBOUND; the answered call (bot detached), or DialFailed."""
        return await self.dialer.dial(number, call_id)

    @property
    def can_dial(self) -> bool:
        return self.dialer.configured

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
        self.switchboard.dialer = self  # the desk places callbacks through us

    async def stop(self) -> None:
        if self.switchboard.dialer is self:
            self.switchboard.dialer = None
        self.dialer.stop()
        for call in list(self.calls.values()):
            with contextlib.suppress(Exception):
                self.handle(call, HangUp("gateway_stopping", time.monotonic(), at_once=True))
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

    def spawn(self, job: Any) -> asyncio.Task:
        """A task of the server's, cancelled when it stops."""
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
            channel.send(minimal_400(str(exc)), addr)
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
                if answer is None and channel.reliable and not never_answered(data):  # a connection routes it
                    answer = minimal_400(str(exc))
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
        if future is not None:
            if not future.done() and response.status_code >= 200:
                future.set_result(response.status_code)
        elif self.dialer.owns(response.call_id):  # to a call we placed: its INVITE or its CANCEL
            self.dialer.response(response)

    def _request(self, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        method = request.method.upper()
        if self.dialer.owns(request.call_id):  # the far end of a call we placed (its dialog checks the tags)
            self.dialer.request(request, addr, channel)
            return
        if not self.settings.admits(addr[0]):
            metrics.REFUSED.labels("sip_forbidden").inc()
            if method != "ACK":
                log.warning("SIP %s from %s refused: address not allowed", method, addr[0])
                self.respond(request, addr, channel, 403, "Forbidden (address not allowed)")
            return
        call = self.calls.get(request.call_id or "")
        if method == "OPTIONS":  # a dispatcher's probe: a draining gateway gets no new calls
            if self.switchboard.draining:
                self.respond(request, addr, channel, 503, "Service Unavailable (draining)", {"Retry-After": "30"})
            else:
                self.respond(request, addr, channel, 200, "OK", {"Accept": "application/sdp"})
        elif method not in ("INVITE", "ACK", "CANCEL", "BYE", "INFO", "NOTIFY"):
            self.respond(request, addr, channel, 405, "Method Not Allowed")
        elif call is not None:
            self.handle(call, Received(request, time.monotonic()), (addr, channel))
        elif method == "INVITE":
            self._invite(request, addr, channel)
        elif method != "ACK":
            self.respond(request, addr, channel, 481, "Call/Transaction Does Not Exist")

    def _invite(self, request: SipRequest, addr: tuple[str, int], channel: Channel) -> None:
        """A new INVITE: admission, credentials and the offer, then the call starts."""
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
        if not request.body or media_type(request) != "application/sdp":
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
            warning = {"Warning": f'305 {SERVER} "{ascii_text(str(exc))}"'}
            self.respond(request, addr, channel, 488, f"Not Acceptable Here ({ascii_text(str(exc), 60)})", warning)
            return
        try:
            admission = self.switchboard.admit()
        except Refused as refused:
            retry = "30" if refused.why == "draining" else "5"
            self.respond(
                request, addr, channel, 503, f"Service Unavailable (gateway {refused.why})", {"Retry-After": retry}
            )
            return
        name = self.switchboard.unique_id(session_name(request.call_id or ""))
        sip_dialog = create_dialog_from_request(request)
        dialog = InviteDialog(
            request, sip_dialog.local_tag, sip_dialog.remote_tag, reliable=channel.reliable, name=name
        )
        call = SipCall(self, request, sip_dialog, dialog, addr, channel, offer, name)
        self.calls[request.call_id or ""] = call
        caller = request.from_addr.uri.user if request.from_addr and request.from_addr.uri else None
        log.info("%s: INVITE from %s at %s, %s/8000", name, mask_user(caller), addr[0], offer.codec)
        self.handle(call, Admitted(time.monotonic()))
        self.spawn(self._run_call(call, admission))

    # --- the call's life, as the rest of the gateway sees it ---
    async def _run_call(self, call: SipCall, admission: Admission) -> None:
        """Answer, run the call until either side ends it, and clean up whatever happens."""
        try:
            loop = asyncio.get_running_loop()
            latch = call.addr[0] if self.settings.rtp_latch else None
            _, call.media = await loop.create_datagram_endpoint(
                lambda: RtpStream(
                    call.offer, call.name, call.heard, lambda key: call.key(key, "RFC 4733 event"), latch_host=latch
                ),
                local_addr=(self.settings.host, 0),
            )
            await admission.run(call, call.name, lambda started: self._answer_and_wait(call, started))
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad call never disturbs another
            log.exception("%s failed", call.name)
            self.handle(call, Failed(time.monotonic()))
        finally:
            admission.release()
            if not call.done.is_set():
                self.handle(call, HangUp("session_ended", time.monotonic(), at_once=True))
            self._release(call)

    async def _answer_and_wait(self, call: SipCall, started: Call) -> EndReason:
        """The call has started (the bot is greeting): answer the INVITE, then wait for the dialog to end."""
        call.call = started
        if call.dialog.phase is not Phase.PROCEEDING:  # cancelled while the call started
            return EndReason.CALLER_CANCELLED
        answer = answer_sdp(call.offer, self.advertised_ip, call.media.local_port, random.getrandbits(31))  # type: ignore[union-attr]
        self.handle(call, Answer(answer, time.monotonic()))
        await call.done.wait()
        return call.end_reason

    # --- the dialog's actions, done ---
    def handle(self, call: SipCall, event: Event, peer: Peer | None = None) -> None:
        """Feed the call's dialog one event, do what it says, and set its timer. `peer`: where the request came from."""
        self._execute(call, call.dialog.handle(event), peer)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        deadline = call.dialog.deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            call.timer = asyncio.get_running_loop().call_later(delay, self._tick, call)

    def _tick(self, call: SipCall) -> None:
        call.timer = None
        self.handle(call, Tick(time.monotonic()))

    def _execute(self, call: SipCall, actions: list[Action], peer: Peer | None) -> None:
        for action in actions:
            match action:
                case SendResponse():
                    addr, channel = (call.addr, call.channel) if action.request is call.invite or not peer else peer
                    data = self.respond(
                        action.request,
                        addr,
                        channel,
                        action.status,
                        action.reason,
                        action.headers,
                        action.body,
                        action.to_tag,
                        contact=action.contact,
                    )
                    if action.remember:
                        call.last_response = data
                case RepeatResponse() | RetransmitOk():
                    if call.last_response:
                        call.channel.send(call.last_response, call.addr)
                case AckTimedOut():
                    log.warning("%s: no ACK for the 200 OK", call.name)
                case SendBye(reason=reason, await_answer=await_answer):
                    text = reason.replace('"', "'")[:60]
                    branch, data = self._send_request(call, "BYE", {"Reason": f'Q.850;cause=16;text="{text}"'})
                    if await_answer:
                        call.tasks.append(asyncio.create_task(self._await_bye(call, branch, data)))
                case StartMedia():
                    call.media_on = True  # the call's bridge paces the packets: one every 20 ms from now
                case StopMedia():
                    call.media_on = False
                    if call.media is not None:
                        call.media.close()
                case DeliverKey(key=key):
                    call.key(key, "SIP INFO")
                case EndCall(reason=reason):
                    call.sip_dialog.terminate()
                    call.done.set()
                    call.ended(reason)
                    self._release(call)

    async def _await_bye(self, call: SipCall, branch: str, data: bytes) -> None:
        status = None
        try:
            status = await self._await_answer(call, branch, data)
        finally:
            self.handle(call, ByeAnswered(status, time.monotonic()))

    def _release(self, call: SipCall) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        for task in call.tasks:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if call.media is not None:
            call.media.close()
        if self.calls.get(call.invite.call_id or "") is call:
            self.calls.pop(call.invite.call_id or "", None)
            if call.media is not None:
                stats = call.media.jitter.stats
                log.info("%s: RTP in %d packets, %d lost, %d late", call.name, stats.received, stats.lost, stats.late)

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
        data = build_response(
            request, status, reason, headers, body, to_tag, self.contact(channel) if contact else None
        )
        channel.send(data, addr)
        return data

    async def request(self, call: SipCall, method: str, headers: dict[str, str]) -> int | None:
        """An in-dialog request to the caller's side; returns the final status (None: no answer in time)."""
        return await self._await_answer(call, *self._send_request(call, method, headers))

    def _send_request(self, call: SipCall, method: str, headers: dict[str, str]) -> tuple[str, bytes]:
        """Build and send an in-dialog request now; returns its Via branch and its bytes."""
        message = call.sip_dialog.create_request(
            method, via_host=self.advertised_ip, via_port=self.settings.port, via_transport=call.channel.transport_name
        )
        message.headers.set_single("Contact", self.contact(call.channel))
        message.headers.set_single("User-Agent", SERVER)
        for name, value in headers.items():
            message.headers.set_single(name, value)
        data = bytes(message)
        call.channel.send(data, call.addr)
        return message.via[0].branch or "", data

    async def _await_answer(self, call: SipCall | OutboundCall, branch: str, data: bytes) -> int | None:
        """Wait for the final answer to a request just sent, sending it again over UDP (T1 doubling to T2).

        Registered before the first await: the answer's datagram is handled on a later turn of the loop.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        try:
            interval, deadline = T1, time.monotonic() + REQUEST_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        return await asyncio.shield(future)
                if not call.channel.reliable:
                    call.channel.send(data, call.addr)
                interval = min(interval * 2, T2)
            return None
        finally:
            self._pending.pop(branch, None)
