"""One INVITE dialog's state machine with plain calls and virtual time: no sockets, no event loop."""

from __future__ import annotations

from aiosipua.message import SipRequest

from voice_gateway.transports.sip.dialog import (
    T1,
    T2,
    TIMER_H,
    TRANSFER_WAIT_S,
    AckTimedOut,
    Action,
    Admitted,
    Answer,
    ByeAnswered,
    DeliverKey,
    EndCall,
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
    TransferAccepted,
)
from voice_gateway.transports.sip.message import parse_message

OURS, THEIRS = "gw-tag", "caller-tag"
OFFER = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
ANSWER = "v=0\r\no=hotline 7 7 IN IP4 10.0.0.2\r\ns=hotline\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"


def request(
    method: str,
    *,
    branch: str = "z9hG4bKinvite1",
    cseq: int = 1,
    to_tag: str = "",
    from_tag: str = THEIRS,
    body: str = "",
    content_type: str = "",
) -> SipRequest:
    """A request from the caller, through the same parser the server uses."""
    text = (
        f"{method} sip:12333@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n"
        f"From: <sip:13800138000@pbx>;tag={from_tag}\r\nTo: <sip:12333@gw>{';tag=' + to_tag if to_tag else ''}\r\n"
        f"Call-ID: abc@pbx\r\nCSeq: {cseq} {method}\r\n"
    )
    if content_type:
        text += f"Content-Type: {content_type}\r\n"
    text += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def in_dialog(method: str, cseq: int, *, to_tag: str = OURS, **kwargs: str) -> SipRequest:
    """A new request inside the dialog (our tag in To), on a branch of its own."""
    return request(method, branch=f"z9hG4bK{method.lower()}{cseq}", cseq=cseq, to_tag=to_tag, **kwargs)


def sent(actions: list[Action]) -> list[tuple[str, int]]:
    """The responses among the actions, as (method answered, status)."""
    return [(a.request.method, a.status) for a in actions if isinstance(a, SendResponse)]


def proceeding(*, reliable: bool = False) -> tuple[InviteDialog, SipRequest]:
    invite = request("INVITE", body=OFFER, content_type="application/sdp")
    dialog = InviteDialog(invite, OURS, THEIRS, reliable=reliable, name="sip-test")
    assert dialog.handle(Admitted(0.0)) == [SendResponse(invite, 100, "Trying", remember=True)]
    return dialog, invite


def answered(*, reliable: bool = False, acked: bool = True) -> InviteDialog:
    dialog, _ = proceeding(reliable=reliable)
    dialog.handle(Answer(ANSWER, 0.0))
    if acked:
        dialog.handle(Received(in_dialog("ACK", 1), 0.1))
    return dialog


# --- answering and the 200 OK's retransmissions ---
def test_the_answer_is_a_200_with_our_sdp_then_media() -> None:
    dialog, invite = proceeding()
    ok, media = dialog.handle(Answer(ANSWER, 2.0))
    assert ok == SendResponse(
        invite, 200, "OK", {"Content-Type": "application/sdp"}, ANSWER, OURS, contact=True, remember=True
    )
    assert media == StartMedia()
    assert dialog.phase is Phase.ANSWERED and dialog.deadline == 2.0 + T1


def test_the_200_goes_again_until_the_ack_stops_it() -> None:
    dialog = answered(acked=False)
    assert dialog.handle(Tick(0.4)) == []  # not due yet
    assert dialog.handle(Tick(0.5)) == [RetransmitOk()]
    assert dialog.deadline == 1.5  # the interval doubles
    assert dialog.handle(Received(in_dialog("ACK", 1, to_tag="someone-else"), 1.0)) == []
    assert dialog.handle(Tick(1.5)) == [RetransmitOk()]  # an ACK for another dialog changes nothing
    assert dialog.handle(Received(in_dialog("ACK", 1), 2.0)) == []
    assert dialog.phase is Phase.CONFIRMED and dialog.deadline is None
    assert dialog.handle(Tick(3.5)) == [] and dialog.handle(Tick(40.0)) == []


def test_no_ack_within_64_t1_gives_the_call_up() -> None:
    dialog = answered(acked=False)
    retransmitted = []
    while dialog.deadline is not None:
        now = dialog.deadline
        actions = dialog.handle(Tick(now))
        if actions == [RetransmitOk()]:
            retransmitted.append(now)
    assert retransmitted == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1 doubling, capped at T2
    assert retransmitted[-1] - retransmitted[-2] == T2
    assert now == TIMER_H == 32.0
    assert actions == [AckTimedOut(), SendBye("no_ack", await_answer=False), StopMedia(), EndCall("no_ack")]
    assert dialog.phase is Phase.ENDED


def test_over_tcp_the_200_is_sent_once() -> None:
    dialog = answered(reliable=True, acked=False)
    assert dialog.deadline is None and dialog.handle(Tick(40.0)) == []
    assert dialog.phase is Phase.ANSWERED


def test_a_retransmitted_invite_gets_the_latest_answer_again() -> None:
    dialog, _ = proceeding()
    again = request("INVITE", body=OFFER, content_type="application/sdp")
    assert dialog.handle(Received(again, 0.2)) == [RepeatResponse()]
    dialog.handle(Answer(ANSWER, 0.5))
    assert dialog.handle(Received(again, 0.6)) == [RepeatResponse()]


# --- CANCEL ---
def test_cancel_before_the_answer() -> None:
    dialog, invite = proceeding()
    cancel = request("CANCEL")
    actions = dialog.handle(Received(cancel, 0.3))
    assert actions == [
        SendResponse(cancel, 200, "OK", to_tag=OURS),
        SendResponse(invite, 487, "Request Terminated", to_tag=OURS),
    ]
    assert dialog.phase is Phase.CANCELLED
    assert dialog.handle(Answer(ANSWER, 1.0)) == []  # the session got ready too late: nothing is answered
    assert dialog.phase is Phase.CANCELLED and dialog.deadline is None
    assert dialog.handle(HangUp("session_ended", 1.1, at_once=True)) == [StopMedia(), EndCall("session_ended")]


def test_a_cancel_of_another_transaction_or_after_the_answer() -> None:
    dialog, _ = proceeding()
    assert sent(dialog.handle(Received(request("CANCEL", branch="z9hG4bKother"), 0.3))) == [("CANCEL", 481)]
    assert dialog.phase is Phase.PROCEEDING
    dialog.handle(Answer(ANSWER, 0.5))
    assert sent(dialog.handle(Received(request("CANCEL"), 0.6))) == [("CANCEL", 200)]  # too late: no 487
    assert dialog.phase is Phase.ANSWERED


# --- BYE, either way ---
def test_the_caller_hangs_up() -> None:
    dialog = answered()
    bye = in_dialog("BYE", 2)
    actions = dialog.handle(Received(bye, 5.0))
    assert actions == [SendResponse(bye, 200, "OK", to_tag=OURS), StopMedia(), EndCall("caller_hung_up")]
    assert dialog.phase is Phase.ENDED
    assert sent(dialog.handle(Received(in_dialog("BYE", 3), 5.1))) == [("BYE", 481)]


def test_a_bye_from_outside_the_dialog_is_refused() -> None:
    dialog = answered()
    stranger = request("BYE", branch="z9hG4bKx", cseq=2, to_tag=OURS, from_tag="not-the-caller")
    assert sent(dialog.handle(Received(stranger, 5.0))) == [("BYE", 481)]
    assert sent(dialog.handle(Received(request("BYE", branch="z9hG4bKy", cseq=2), 5.0))) == [("BYE", 481)]
    assert dialog.phase is Phase.CONFIRMED


def test_we_hang_up_and_wait_for_the_bye_answer() -> None:
    dialog = answered()
    assert dialog.handle(HangUp("goodbye", 9.0)) == [SendBye("goodbye", await_answer=True)]
    assert dialog.phase is Phase.ENDING and not dialog.in_call
    reinvite = in_dialog("INVITE", 2, body=OFFER, content_type="application/sdp")
    assert sent(dialog.handle(Received(reinvite, 9.1))) == [("INVITE", 491)]
    assert dialog.handle(ByeAnswered(200, 9.2)) == [StopMedia(), EndCall("goodbye")]
    assert dialog.handle(ByeAnswered(200, 9.3)) == [] and dialog.handle(HangUp("again", 9.4)) == []


def test_we_hang_up_at_once() -> None:
    dialog = answered()
    actions = dialog.handle(HangUp("gateway_stopping", 9.0, at_once=True))
    assert actions == [SendBye("gateway_stopping", await_answer=False), StopMedia(), EndCall("gateway_stopping")]


def test_both_sides_hang_up_at_the_same_time() -> None:
    dialog = answered()
    dialog.handle(HangUp("goodbye", 9.0))
    bye = in_dialog("BYE", 2)
    assert dialog.handle(Received(bye, 9.1))[1:] == [StopMedia(), EndCall("caller_hung_up")]
    assert dialog.handle(ByeAnswered(None, 13.0)) == []


def test_no_bye_before_the_answer() -> None:
    dialog, _ = proceeding()
    assert dialog.handle(HangUp("gateway_stopping", 0.2, at_once=True)) == [StopMedia(), EndCall("gateway_stopping")]
    dialog, _ = proceeding()
    assert dialog.handle(HangUp("goodbye", 0.2)) == [StopMedia(), EndCall("goodbye")]


# --- in-dialog requests ---
def test_a_re_invite_keeps_the_media() -> None:
    dialog = answered()
    reinvite = in_dialog("INVITE", 2, body=OFFER, content_type="application/sdp")
    [ok] = dialog.handle(Received(reinvite, 20.0))
    assert isinstance(ok, SendResponse) and (ok.request, ok.status, ok.body, ok.contact) == (
        reinvite,
        200,
        ANSWER,
        True,
    )
    assert dialog.phase is Phase.CONFIRMED
    outsider = request("INVITE", branch="z9hG4bKnew", cseq=2, body=OFFER, content_type="application/sdp")
    assert sent(dialog.handle(Received(outsider, 20.0))) == [("INVITE", 481)]


def test_a_re_invite_before_the_answer_is_pending() -> None:
    dialog, _ = proceeding()
    reinvite = in_dialog("INVITE", 2, body=OFFER, content_type="application/sdp")
    assert sent(dialog.handle(Received(reinvite, 0.2))) == [("INVITE", 491)]


def test_keys_over_sip_info() -> None:
    dialog = answered()
    relay = in_dialog("INFO", 2, body="Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay")
    assert dialog.handle(Received(relay, 3.0)) == [SendResponse(relay, 200, "OK", to_tag=OURS), DeliverKey("5")]
    plain = in_dialog("INFO", 3, body="#", content_type="application/dtmf")
    assert dialog.handle(Received(plain, 3.1))[1:] == [DeliverKey("#")]
    other = in_dialog("INFO", 4, body="hello", content_type="text/plain")
    [unsupported] = dialog.handle(Received(other, 3.2))
    assert isinstance(unsupported, SendResponse) and unsupported.status == 415 and "Accept" in unsupported.headers
    bad = in_dialog("INFO", 5, body="Signal=xyz", content_type="application/dtmf-relay")
    assert sent(dialog.handle(Received(bad, 3.3))) == [("INFO", 400)]


# --- transfer ---
def sipfrag(cseq: int, status_line: str) -> SipRequest:
    return in_dialog("NOTIFY", cseq, body=status_line + "\r\n", content_type="message/sipfrag")


def test_the_transfer_target_answering_ends_our_leg() -> None:
    dialog = answered()
    assert sent(dialog.handle(Received(sipfrag(2, "SIP/2.0 200 OK"), 4.0))) == [("NOTIFY", 200)]  # no transfer yet
    assert dialog.handle(TransferAccepted("sip:desk@10.0.0.5", 5.0)) == []
    assert sent(dialog.handle(Received(sipfrag(3, "SIP/2.0 100 Trying"), 5.1))) == [("NOTIFY", 200)]
    actions = dialog.handle(Received(sipfrag(4, "SIP/2.0 200 OK"), 6.0))
    assert actions[1:] == [SendBye("transferred", await_answer=True)]
    assert dialog.handle(ByeAnswered(200, 6.1)) == [StopMedia(), EndCall("transferred")]


def test_a_failed_transfer_keeps_the_call_until_the_transfer_wait_is_over() -> None:
    dialog = answered()
    dialog.handle(TransferAccepted("sip:desk@10.0.0.5", 5.0))
    assert sent(dialog.handle(Received(sipfrag(2, "SIP/2.0 486 Busy Here"), 6.0))) == [("NOTIFY", 200)]
    assert dialog.in_call and dialog.deadline == 5.0 + TRANSFER_WAIT_S
    assert dialog.handle(Tick(34.9)) == []
    assert dialog.handle(Tick(35.0)) == [SendBye("transferred", await_answer=True)]


# --- failures ---
def test_a_failure_on_our_side() -> None:
    dialog, invite = proceeding()
    assert dialog.handle(Failed(0.3)) == [
        SendResponse(invite, 500, "Server Internal Error", to_tag=OURS),
        StopMedia(),
        EndCall("internal_error"),
    ]
    dialog = answered()
    assert dialog.handle(Failed(7.0)) == [
        SendBye("internal_error", await_answer=False),
        StopMedia(),
        EndCall("internal_error"),
    ]
