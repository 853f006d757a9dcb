"""One INVITE dialog as a state machine with no I/O: requests, answers and the time in, actions out.

The server feeds `InviteDialog.handle` what arrives for the call (the INVITE again, a re-INVITE, ACK, CANCEL, BYE,
INFO, NOTIFY), what our side decided (answer with this SDP, hang up, a transfer was accepted, something failed),
the outcome of our BYE, and timer ticks; it returns what to do on the wire: responses, the 200 OK again, a BYE,
media on and off, and the end of the call with its reason. `deadline` says when the next `Tick` is due.

    PROCEEDING --Answer--> ANSWERED --ACK--> CONFIRMED
        |                     |                  |
        |                     +-----HangUp-------+--> ENDING --ByeAnswered--> ENDED
        +--CANCEL--> CANCELLED
    any phase --the caller's BYE, no ACK in time, HangUp(at_once), Failed--> ENDED

Timers (RFC 3261 §13.3.1.4, over UDP only): the 200 OK goes again T1 after it was sent, then at intervals doubling
up to T2, until the ACK arrives; with no ACK 64*T1 after the 200 the call is given up (a BYE, then the end). After
an accepted blind transfer our leg ends when the transfer target answers (NOTIFY) or TRANSFER_WAIT_S at the latest.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field

from aiosipua.message import SipRequest

from voice_gateway.transports.sip.message import branch, media_type, tags

log = logging.getLogger("hotline.sip")

T1, T2 = 0.5, 4.0  # RFC 3261 timers (s): retransmit doubling from T1 to T2
TIMER_H = 64 * T1  # no ACK this long after the 200 OK: give up
TRANSFER_WAIT_S = 30.0  # after an accepted REFER, end our leg by then if the far end has not


class Phase(enum.Enum):
    PROCEEDING = "proceeding"  # INVITE admitted, 100 Trying sent, our side is getting ready
    ANSWERED = "answered"  # 200 OK sent (again and again over UDP) and no ACK yet
    CONFIRMED = "confirmed"  # the ACK arrived: the call is up
    ENDING = "ending"  # our BYE is out, waiting for its answer
    ENDED = "ended"
    CANCELLED = "cancelled"  # CANCEL before the answer: 487 sent, our side hears it when it is ready


IN_CALL = (Phase.ANSWERED, Phase.CONFIRMED)


# --- inputs ---
@dataclass(frozen=True)
class Admitted:
    """The server accepted the INVITE (address, credentials, offer, capacity): say 100 Trying."""

    now: float


@dataclass(frozen=True)
class Received:
    """A request with this dialog's Call-ID: INVITE (again, or re-INVITE), ACK, CANCEL, BYE, INFO or NOTIFY."""

    request: SipRequest
    now: float


@dataclass(frozen=True)
class Answer:
    """Our side is ready: answer the INVITE with this SDP."""

    sdp: str
    now: float


@dataclass(frozen=True)
class HangUp:
    """End the call from our side; `at_once`: send the BYE and end now instead of waiting for its answer."""

    reason: str
    now: float
    at_once: bool = False


@dataclass(frozen=True)
class ByeAnswered:
    """Our BYE got its final answer (None: none came in time)."""

    status: int | None
    now: float


@dataclass(frozen=True)
class TransferAccepted:
    """The far end accepted our REFER to `target`."""

    target: str
    now: float


@dataclass(frozen=True)
class Failed:
    """Something broke on our side."""

    now: float


@dataclass(frozen=True)
class Tick:
    now: float


Event = Admitted | Received | Answer | HangUp | ByeAnswered | TransferAccepted | Failed | Tick


# --- actions ---
@dataclass(frozen=True)
class SendResponse:
    request: SipRequest
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    to_tag: str | None = None
    contact: bool = False
    remember: bool = False  # the INVITE's latest answer: repeated for a retransmitted INVITE and by the 200 timer


@dataclass(frozen=True)
class RepeatResponse:
    """The INVITE came again (a retransmission): its latest answer goes again."""


@dataclass(frozen=True)
class RetransmitOk:
    """No ACK yet: the 200 OK goes again."""


@dataclass(frozen=True)
class AckTimedOut:
    """No ACK for the 200 OK in 64*T1: the call is given up (the BYE and the end follow)."""


@dataclass(frozen=True)
class SendBye:
    """A BYE with this reason; `await_answer`: report its outcome with ByeAnswered (the call ends then)."""

    reason: str
    await_answer: bool


@dataclass(frozen=True)
class StartMedia:
    """The call is answered: start sending RTP."""


@dataclass(frozen=True)
class StopMedia:
    """Stop sending RTP and close the call's RTP port."""


@dataclass(frozen=True)
class DeliverKey:
    """A keypad key from SIP INFO, for the call."""

    key: str


@dataclass(frozen=True)
class EndCall:
    """The dialog is over: our side hears why, and the call is forgotten."""

    reason: str


Action = (
    SendResponse | RepeatResponse | RetransmitOk | AckTimedOut | SendBye | StartMedia | StopMedia | DeliverKey | EndCall
)

_GONE = (481, "Call/Transaction Does Not Exist")
_SDP = {"Content-Type": "application/sdp"}


class InviteDialog:
    """The phases of one INVITE dialog on our side (a UAS), driven with plain calls and the time passed in."""

    def __init__(self, invite: SipRequest, local_tag: str, remote_tag: str, *, reliable: bool, name: str = "sip"):
        self.invite = invite
        self.local_tag, self.remote_tag = local_tag, remote_tag
        self.branch = branch(invite) or ""
        self.reliable = reliable  # TCP: the transport delivers the 200 OK, nothing to retransmit
        self.name = name  # for the logs
        self.phase = Phase.PROCEEDING
        self.answer = ""  # our SDP, the same again for every re-INVITE
        self.transfer_target = ""
        self._ok_due: float | None = None  # the next retransmission of the 200 OK
        self._ok_interval = T1
        self._give_up_at: float | None = None
        self._transfer_ends_at: float | None = None
        self._ending_reason = ""

    @property
    def in_call(self) -> bool:
        """Answered and not ending: re-INVITEs are answered, a transfer or our BYE may start."""
        return self.phase in IN_CALL

    @property
    def deadline(self) -> float | None:
        """When the next Tick is due (None: no timer running)."""
        if self.phase is Phase.ENDED:
            return None
        due = [t for t in (self._ok_due, self._give_up_at, self._transfer_ends_at) if t is not None]
        return min(due, default=None)

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Admitted():
                return [SendResponse(self.invite, 100, "Trying", remember=True)]
            case Answer(sdp=sdp, now=now):
                return self._answer(sdp, now)
            case Received(request=request):
                return self._received(request)
            case HangUp(reason=reason, at_once=at_once):
                return self._hang_up(reason, at_once=at_once)
            case ByeAnswered():
                return self._end(self._ending_reason) if self.phase is Phase.ENDING else []
            case TransferAccepted(target=target, now=now):
                if self.phase is not Phase.ENDED:
                    self.transfer_target, self._transfer_ends_at = target, now + TRANSFER_WAIT_S
                return []
            case Failed():
                return self._failed()
            case Tick(now=now):
                return self._tick(now)
        raise TypeError(f"not a dialog event: {event!r}")

    # --- transitions ---
    def _answer(self, sdp: str, now: float) -> list[Action]:
        if self.phase is not Phase.PROCEEDING:
            return []  # cancelled or ended while our side got ready: nothing to answer
        self.phase, self.answer = Phase.ANSWERED, sdp
        if not self.reliable:
            self._ok_interval, self._ok_due, self._give_up_at = T1, now + T1, now + TIMER_H
        ok = SendResponse(self.invite, 200, "OK", _SDP, sdp, self.local_tag, contact=True, remember=True)
        return [ok, StartMedia()]

    def _received(self, request: SipRequest) -> list[Action]:
        method = request.method.upper()
        from_tag, to_tag = tags(request)
        in_dialog = from_tag == self.remote_tag and to_tag == self.local_tag
        if method == "INVITE":
            if branch(request) == self.branch:
                return [RepeatResponse()]
            if not in_dialog:
                return [SendResponse(request, *_GONE)]
            if self.in_call:  # re-INVITE (refresh, hold): the media stays as it is
                return [SendResponse(request, 200, "OK", _SDP, self.answer, self.local_tag, contact=True)]
            return [SendResponse(request, 491, "Request Pending", to_tag=self.local_tag)]
        if method == "ACK":
            if to_tag == self.local_tag:
                self._ok_due = self._give_up_at = None
                if self.phase is Phase.ANSWERED:
                    self.phase = Phase.CONFIRMED
            return []
        if method == "CANCEL":
            return self._cancel(request)
        if not in_dialog or self.phase is Phase.ENDED:
            return [SendResponse(request, *_GONE)]
        if method == "BYE":
            log.info("%s: caller hung up (BYE)", self.name)
            return [SendResponse(request, 200, "OK", to_tag=self.local_tag), *self._end("caller_hung_up")]
        if method == "INFO":
            return self._info(request)
        if method == "NOTIFY":
            return self._notify(request)
        return [SendResponse(request, 405, "Method Not Allowed")]

    def _cancel(self, request: SipRequest) -> list[Action]:
        if branch(request) != self.branch:
            return [SendResponse(request, *_GONE)]
        actions: list[Action] = [SendResponse(request, 200, "OK", to_tag=self.local_tag)]
        if self.phase is Phase.PROCEEDING:
            self.phase = Phase.CANCELLED
            actions.append(SendResponse(self.invite, 487, "Request Terminated", to_tag=self.local_tag))
            log.info("%s: cancelled by the caller", self.name)
        return actions

    def _info(self, request: SipRequest) -> list[Action]:
        kind = media_type(request)
        if kind == "application/dtmf-relay":
            match = re.search(r"^\s*Signal\s*=\s*([0-9A-Da-d*#])\s*$", request.text, re.MULTILINE)
        elif kind == "application/dtmf":
            match = re.match(r"^\s*([0-9A-Da-d*#])\s*$", request.text)
        else:
            accept = {"Accept": "application/dtmf-relay, application/dtmf"}
            return [SendResponse(request, 415, "Unsupported Media Type", accept, to_tag=self.local_tag)]
        if match is None:
            return [SendResponse(request, 400, "Bad DTMF body", to_tag=self.local_tag)]
        return [SendResponse(request, 200, "OK", to_tag=self.local_tag), DeliverKey(match.group(1).upper())]

    def _notify(self, request: SipRequest) -> list[Action]:
        """Progress of our REFER (a message/sipfrag): once the transfer target answered, our leg is done."""
        actions: list[Action] = [SendResponse(request, 200, "OK", to_tag=self.local_tag)]
        match = re.match(r"^SIP/2\.0 (\d{3})", request.text.strip())
        status = int(match.group(1)) if match else 0
        if status >= 300:
            log.warning("%s: transfer failed (%d)", self.name, status)
        elif status >= 200 and self.transfer_target:
            log.info("%s: transfer completed", self.name)
            actions += self._hang_up("transferred")
        return actions

    def _hang_up(self, reason: str, *, at_once: bool = False) -> list[Action]:
        if self.in_call:
            if at_once:
                return [SendBye(reason, await_answer=False), *self._end(reason)]
            self.phase, self._ending_reason = Phase.ENDING, reason
            return [SendBye(reason, await_answer=True)]
        if self.phase is Phase.ENDED:
            return []
        return self._end(reason)  # not answered (no BYE to send), or our BYE is already out

    def _failed(self) -> list[Action]:
        if self.phase is Phase.PROCEEDING:
            failed = SendResponse(self.invite, 500, "Server Internal Error", to_tag=self.local_tag)
            return [failed, *self._end("internal_error")]
        return self._hang_up("internal_error", at_once=True)

    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._give_up_at is not None and now >= self._give_up_at:
            self._ok_due = self._give_up_at = None
            actions += [AckTimedOut(), *self._hang_up("no_ack", at_once=True)]
        elif self._ok_due is not None and now >= self._ok_due:
            actions.append(RetransmitOk())
            self._ok_interval = min(self._ok_interval * 2, T2)
            self._ok_due = now + self._ok_interval
        if self._transfer_ends_at is not None and now >= self._transfer_ends_at:
            self._transfer_ends_at = None
            actions += self._hang_up("transferred")
        return actions

    def _end(self, reason: str) -> list[Action]:
        self.phase = Phase.ENDED
        self._ok_due = self._give_up_at = self._transfer_ends_at = None
        return [StopMedia(), EndCall(reason)]
