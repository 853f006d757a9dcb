"""A call we place (a UAC INVITE dialog) as a state machine with no I/O: responses, requests and the time in,
actions out. The transport (dial.py) builds and sends the messages; this says which, and when.

    CALLING --1xx--> RINGING --2xx (ACK)--> ANSWERED --our HangUp: BYE--> ENDING --ByeAnswered--> ENDED
       |                |                      +--the callee's BYE (200)----------------------------> ENDED
       |                +--3xx-6xx (ACK): failed, a reason-----------------------------------------> ENDED
       |                +--no answer in RING_TIMEOUT_S, or our HangUp: CANCEL ---------------------> ENDED
       +--401/407 (ACK): the INVITE again, with credentials (once per challenge)
       +--no response at all by RING_TIMEOUT_S: failed ("no_response") -------------------------> ENDED

`Ended` is said once, with the outcome: "answered" calls end with who hung up ("callee_hung_up", or our reason);
the others with why they failed ("busy", "no_answer", "rejected", ...: `FAILURES` has the words for people).
ENDED still absorbs the far end's retransmissions for LINGER_S (RFC 3261 timer D and the 2xx the UAS repeats
until it hears our ACK): each retransmitted final is ACKed again; a CANCEL still owed (we gave up before any
provisional answer, when no CANCEL may be sent) goes once one arrives; a 200 that comes after we gave up is ACKed
and hung up at once (BYE). Then `Forget`.

Timers, over UDP (RFC 3261 §17.1.1.2, §17.1.2.2): the INVITE goes again T1 after it was sent, then at doubling
intervals (timer A) until any response arrives; our CANCEL likewise, doubling up to T2 (timer E), until its answer.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from aiosipua.message import SipRequest

from voice_gateway.transports.sip.auth import digest_authorization
from voice_gateway.transports.sip.dialog import T1, T2
from voice_gateway.transports.sip.message import tags

log = logging.getLogger("hotline.sip")

RING_TIMEOUT_S = 30.0  # nobody answers by then: CANCEL
LINGER_S = 64 * T1  # after the end: retransmitted finals are still ACKed, then the dialog is forgotten

# why a call we placed did not get through, in the words the agent sees ("回拨未接通：对方忙")
FAILURES = {
    "busy": "对方忙",
    "no_answer": "无人接听",
    "rejected": "对方拒接",
    "not_found": "号码不存在或无法接通",
    "unavailable": "对方暂时无法接通",
    "no_response": "外呼线路没有响应",
    "auth_failed": "外呼线路认证失败",
    "forbidden": "外呼线路拒绝了这次呼叫",
    "codec": "对方不支持我们的语音编码",
    "line_down": "外呼线路暂时不可用",
    "cancelled": "呼叫已取消",
}
_STATUS_OUTCOMES = {
    486: "busy",
    600: "busy",
    603: "rejected",
    404: "not_found",
    604: "not_found",
    410: "not_found",
    484: "not_found",
    480: "unavailable",
    408: "no_answer",
    401: "auth_failed",
    407: "auth_failed",
    403: "forbidden",
    488: "codec",
    606: "codec",
    415: "codec",
}


def outcome_of(status: int) -> str:
    """A final failure status as an outcome of `FAILURES` (other statuses: "line_down" for 5xx, else "failed_<n>")."""
    if status in _STATUS_OUTCOMES:
        return _STATUS_OUTCOMES[status]
    return "line_down" if 500 <= status < 600 else f"failed_{status}"


def failure_text(outcome: str) -> str:
    """The outcome in Chinese for the agent; unknown ones name the status the line answered."""
    if outcome in FAILURES:
        return FAILURES[outcome]
    return f"线路返回 {outcome.removeprefix('failed_')}" if outcome.startswith("failed_") else outcome


class Stage(enum.Enum):
    CALLING = "calling"  # INVITE out, no response yet (retransmitted over UDP)
    RINGING = "ringing"  # a provisional response (100, 180, 183): waiting for the callee
    ANSWERED = "answered"  # 200 OK and our ACK: the call is up
    ENDING = "ending"  # our BYE is out
    ENDED = "ended"  # the outcome is said; retransmissions are still absorbed until LINGER_S
    GONE = "gone"  # forgotten


# --- inputs ---
@dataclass(frozen=True)
class Start:
    now: float


@dataclass(frozen=True)
class Reply:
    """A response with this dialog's Call-ID: to our INVITE or our CANCEL (`method`, from its CSeq)."""

    status: int
    method: str
    to_tag: str
    now: float
    challenge: str = ""  # WWW-Authenticate / Proxy-Authenticate, for 401 / 407


@dataclass(frozen=True)
class Received:
    """A request from the far end with this dialog's Call-ID (BYE, a re-INVITE, INFO, ...)."""

    request: SipRequest
    now: float


@dataclass(frozen=True)
class HangUp:
    """End the call from our side; `at_once`: the BYE goes and the call ends without waiting for its answer."""

    reason: str
    now: float
    at_once: bool = False


@dataclass(frozen=True)
class ByeAnswered:
    status: int | None
    now: float


@dataclass(frozen=True)
class Tick:
    now: float


Event = Start | Reply | Received | HangUp | ByeAnswered | Tick


# --- actions ---
@dataclass(frozen=True)
class SendInvite:
    """A new INVITE transaction (a new branch) with this CSeq; `auth`: (header name, value) answering a challenge."""

    cseq: int
    auth: tuple[str, str] | None = None


@dataclass(frozen=True)
class RepeatInvite:
    """Timer A: the same INVITE bytes again."""


@dataclass(frozen=True)
class SendAck:
    """ACK a final response: for a 2xx a transaction of its own to the callee's Contact, for the others the
    INVITE's branch (RFC 3261 §17.1.1.3). `again`: the same ACK as before, for a retransmitted final."""

    status: int
    to_tag: str
    cseq: int
    again: bool = False


@dataclass(frozen=True)
class SendCancel:
    """CANCEL the INVITE (its branch, its CSeq number); `again`: timer E, the same bytes."""

    again: bool = False


@dataclass(frozen=True)
class Progress:
    """A provisional response, for the log (180 ringing, 183 progress)."""

    status: int


@dataclass(frozen=True)
class Answered:
    """The callee answered (200 OK, ACKed): the media starts; the call is admitted."""

    to_tag: str


@dataclass(frozen=True)
class Respond:
    """Answer a request of the far end's; `sdp`: with our SDP answer (a re-INVITE)."""

    request: SipRequest
    status: int
    reason: str
    sdp: bool = False


@dataclass(frozen=True)
class SendBye:
    reason: str
    await_answer: bool


@dataclass(frozen=True)
class StopMedia:
    """Stop RTP and close the call's port."""


@dataclass(frozen=True)
class Ended:
    """The outcome, said once: `answered` calls end with who hung up, the others with why they failed."""

    outcome: str
    answered: bool
    status: int | None = None  # the final failure status, if one came


@dataclass(frozen=True)
class Forget:
    """Nothing more can arrive that needs an answer: the dialog is dropped."""


Action = (
    SendInvite
    | RepeatInvite
    | SendAck
    | SendCancel
    | Progress
    | Answered
    | Respond
    | SendBye
    | StopMedia
    | Ended
    | Forget
)


class OutboundDialog:
    """The stages of one INVITE we send, driven with plain calls and the time passed in."""

    def __init__(
        self,
        local_tag: str,
        uri: str,
        *,
        user: str = "",
        password: str = "",
        cnonce: str = "0a4f113b",
        reliable: bool = False,
        ring_timeout_s: float = RING_TIMEOUT_S,
        name: str = "dial",
    ) -> None:
        self.local_tag, self.uri = local_tag, uri
        self.user, self.password, self.cnonce = user, password, cnonce
        self.reliable = reliable
        self.ring_timeout_s = ring_timeout_s
        self.name = name
        self.stage = Stage.CALLING
        self.cseq = 0
        self.to_tag = ""  # the callee's, from the 2xx
        self.outcome = ""
        self._answered = False
        self._final: int | None = None  # the final non-2xx status ACKed (its retransmissions are ACKed again)
        self._challenged: set[str] = set()  # challenges answered once already
        self._provisional = False
        self._invite_due: float | None = None
        self._invite_interval = T1
        self._ring_ends: float | None = None
        self._cancel_owed = False  # we gave up before any provisional answer: CANCEL once one comes
        self._cancel_due: float | None = None  # timer E for our CANCEL
        self._cancel_interval = T1
        self._forget_at: float | None = None
        self._ending_reason = ""

    @property
    def deadline(self) -> float | None:
        due = [t for t in (self._invite_due, self._ring_ends, self._cancel_due, self._forget_at) if t is not None]
        return min(due, default=None) if self.stage is not Stage.GONE else None

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Start(now=now):
                self._ring_ends = now + self.ring_timeout_s
                return self._invite(now)
            case Reply():
                return self._reply(event)
            case Received(request=request, now=now):
                return self._request(request, now)
            case HangUp(reason=reason, now=now, at_once=at_once):
                return self._hang_up(reason, now, at_once=at_once)
            case ByeAnswered(now=now):
                if self.stage is Stage.ENDING:
                    return [StopMedia(), *self._end(self._ending_reason, now)]
                return []
            case Tick(now=now):
                return self._tick(now)
        raise TypeError(f"not a dialog event: {event!r}")

    # --- transitions ---
    def _invite(self, now: float, auth: tuple[str, str] | None = None) -> list[Action]:
        self.cseq += 1
        self.stage, self._provisional = Stage.CALLING, False
        if not self.reliable:
            self._invite_interval, self._invite_due = T1, now + T1
        return [SendInvite(self.cseq, auth)]

    def _reply(self, reply: Reply) -> list[Action]:
        if reply.method == "CANCEL":
            self._cancel_due = None  # its answer came (the INVITE's 487 follows)
            return []
        if reply.method != "INVITE":
            return []
        self._invite_due = None  # any response stops timer A
        status = reply.status
        if status < 200:
            return self._provisional_reply(reply)
        if status < 300:
            return self._ok(reply)
        return self._final_reply(reply)

    def _provisional_reply(self, reply: Reply) -> list[Action]:
        self._provisional = True
        if self.stage is Stage.CALLING:
            self.stage = Stage.RINGING
            return [Progress(reply.status)] if reply.status > 100 else []
        if self.stage is Stage.ENDED and self._cancel_owed:
            self._cancel_owed = False
            return self._cancel(reply.now)
        return [Progress(reply.status)] if self.stage is Stage.RINGING and reply.status > 100 else []

    def _ok(self, reply: Reply) -> list[Action]:
        if self.stage in (Stage.CALLING, Stage.RINGING):
            self.stage, self.to_tag, self._answered = Stage.ANSWERED, reply.to_tag, True
            self._ring_ends = None
            log.info("%s: answered", self.name)
            return [SendAck(reply.status, reply.to_tag, self.cseq), Answered(reply.to_tag)]
        if self._answered and reply.to_tag == self.to_tag:  # the UAS repeats its 200 until our ACK reaches it
            return [SendAck(reply.status, reply.to_tag, self.cseq, again=True)] if self.stage is not Stage.GONE else []
        if self.stage is Stage.ENDED and not self._answered:  # answered after we gave up: ACK it and hang up
            self._answered, self.to_tag, self._cancel_due, self._cancel_owed = True, reply.to_tag, None, False
            log.info("%s: answered after we gave up: hung up at once", self.name)
            return [SendAck(reply.status, reply.to_tag, self.cseq), SendBye(self.outcome, await_answer=False)]
        return []

    def _final_reply(self, reply: Reply) -> list[Action]:
        status, now = reply.status, reply.now
        if self.stage in (Stage.CALLING, Stage.RINGING):
            ack = SendAck(status, reply.to_tag, self.cseq)
            self._final = status
            if status in (401, 407) and self.password and reply.challenge and reply.challenge not in self._challenged:
                self._challenged.add(reply.challenge)
                try:
                    value = digest_authorization(
                        reply.challenge, self.user, self.password, "INVITE", self.uri, self.cnonce
                    )
                except ValueError as exc:
                    log.warning("%s: %d with a challenge we cannot answer: %s", self.name, status, exc)
                else:
                    self._final = None
                    header = "Authorization" if status == 401 else "Proxy-Authorization"
                    return [ack, *self._invite(now, (header, value))]
            log.info("%s: not answered: %d", self.name, status)
            return [ack, *self._end(outcome_of(status), now, status)]
        if self.stage is Stage.ENDED and not self._answered:
            if self._final is None:  # the 487 to our CANCEL (or a final that crossed it)
                self._final, self._cancel_due = status, None
                return [SendAck(status, reply.to_tag, self.cseq)]
            if status == self._final:  # a retransmission: our ACK was lost (timer D)
                return [SendAck(status, reply.to_tag, self.cseq, again=True)]
        return []

    def _request(self, request: SipRequest, now: float) -> list[Action]:
        method = request.method.upper()
        from_tag, to_tag = tags(request)
        if method == "ACK":
            return []
        in_dialog = self._answered and from_tag == self.to_tag and to_tag == self.local_tag
        if not in_dialog or self.stage not in (Stage.ANSWERED, Stage.ENDING):
            return [Respond(request, 481, "Call/Transaction Does Not Exist")]
        if method == "BYE":
            log.info("%s: the callee hung up (BYE)", self.name)
            return [Respond(request, 200, "OK"), StopMedia(), *self._end("callee_hung_up", now)]
        if method == "INVITE":  # a re-INVITE (session refresh, hold): the media stays as it is
            return [Respond(request, 200, "OK", sdp=True)]
        if method in ("INFO", "OPTIONS", "UPDATE", "NOTIFY"):
            return [Respond(request, 200, "OK")]
        return [Respond(request, 405, "Method Not Allowed")]

    def _hang_up(self, reason: str, now: float, *, at_once: bool) -> list[Action]:
        if self.stage is Stage.ANSWERED:
            if at_once:
                return [SendBye(reason, await_answer=False), StopMedia(), *self._end(reason, now)]
            self.stage, self._ending_reason = Stage.ENDING, reason
            return [SendBye(reason, await_answer=True)]
        if self.stage is Stage.ENDING and at_once:
            return [StopMedia(), *self._end(self._ending_reason, now)]
        if self.stage in (Stage.CALLING, Stage.RINGING):
            return self._give_up(reason, now)
        return []

    def _give_up(self, outcome: str, now: float) -> list[Action]:
        """Before any answer: CANCEL if a provisional response came (else once one does), and the end now."""
        cancel: list[Action] = []
        if self._provisional:
            cancel = self._cancel(now)
        else:
            self._cancel_owed = True
        return [*cancel, StopMedia(), *self._end(outcome, now)]

    def _cancel(self, now: float) -> list[Action]:
        if not self.reliable:
            self._cancel_interval, self._cancel_due = T1, now + T1
        return [SendCancel()]

    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._invite_due is not None and now >= self._invite_due:
            actions.append(RepeatInvite())
            self._invite_interval *= 2  # timer A doubles without a cap
            self._invite_due = now + self._invite_interval
        if self._cancel_due is not None and now >= self._cancel_due:
            actions.append(SendCancel(again=True))
            self._cancel_interval = min(self._cancel_interval * 2, T2)
            self._cancel_due = now + self._cancel_interval
        if self._ring_ends is not None and now >= self._ring_ends:
            self._ring_ends = None
            if self.stage in (Stage.CALLING, Stage.RINGING):
                log.info("%s: no answer in %g s", self.name, self.ring_timeout_s)
                actions += self._give_up("no_answer" if self._provisional else "no_response", now)
        if self._forget_at is not None and now >= self._forget_at:
            self.stage = Stage.GONE
            self._invite_due = self._cancel_due = self._ring_ends = self._forget_at = None
            actions.append(Forget())
        return actions

    def _end(self, outcome: str, now: float, status: int | None = None) -> list[Action]:
        self.stage, self.outcome = Stage.ENDED, outcome
        self._invite_due = self._ring_ends = None
        self._forget_at = now + LINGER_S
        return [Ended(outcome, self._answered, status)]
