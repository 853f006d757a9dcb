"""The state machine of a call we place (uac.py), without a network: responses, retransmissions, CANCEL, auth."""

from __future__ import annotations

from aiosipua.message import SipRequest

from voice_gateway.transports.sip.auth import DigestAuth
from voice_gateway.transports.sip.dialog import T1, T2
from voice_gateway.transports.sip.message import parse_message
from voice_gateway.transports.sip.uac import (
    LINGER_S,
    RING_TIMEOUT_S,
    Answered,
    ByeAnswered,
    Ended,
    Forget,
    HangUp,
    OutboundDialog,
    Received,
    RepeatInvite,
    Reply,
    Respond,
    SendAck,
    SendBye,
    SendCancel,
    SendInvite,
    Stage,
    Start,
    StopMedia,
    Tick,
    failure_text,
)

URI = "sip:13812345678@pbx.example:5060"


def started(**kwargs: object) -> OutboundDialog:
    dialog = OutboundDialog("ours", URI, **kwargs)  # type: ignore[arg-type]
    assert dialog.handle(Start(0.0)) == [SendInvite(1)]
    return dialog


def reply(status: int, now: float, *, tag: str = "theirs", method: str = "INVITE", challenge: str = "") -> Reply:
    return Reply(status, method, tag if status > 100 else "", now, challenge)


def request(method: str, from_tag: str = "theirs", to_tag: str = "ours") -> SipRequest:
    text = (
        f"{method} sip:hotline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKfar\r\n"
        f"From: <{URI}>;tag={from_tag}\r\nTo: <sip:12333@127.0.0.1>;tag={to_tag}\r\nCall-ID: c1\r\n"
        f"CSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def ticks(dialog: OutboundDialog, until: float) -> list[tuple[float, object]]:
    """Run the dialog's timers up to `until`: each action with the time it was due."""
    out = []
    while (due := dialog.deadline) is not None and due <= until:
        out += [(round(due, 3), a) for a in dialog.handle(Tick(due))]
    return out


def test_the_invite_goes_again_at_doubling_intervals_until_a_response() -> None:
    dialog = started()
    assert [t for t, a in ticks(dialog, 3.6) if isinstance(a, RepeatInvite)] == [T1, 3 * T1, 7 * T1]
    assert dialog.handle(reply(100, 3.6)) == []
    assert dialog.stage is Stage.RINGING
    assert not any(isinstance(a, RepeatInvite) for _, a in ticks(dialog, 20.0))


def test_ringing_then_answered_the_200_is_acked_and_acked_again_when_it_comes_again() -> None:
    dialog = started()
    dialog.handle(reply(100, 0.1))
    assert [type(a).__name__ for a in dialog.handle(reply(180, 0.5))] == ["Progress"]
    assert dialog.handle(reply(200, 3.0)) == [SendAck(200, "theirs", 1), Answered("theirs")]
    assert dialog.stage is Stage.ANSWERED
    assert dialog.handle(reply(200, 3.5)) == [SendAck(200, "theirs", 1, again=True)]  # our ACK was lost
    assert ticks(dialog, 100.0) == []  # no ring timeout once answered


def test_busy_is_acked_and_fails_with_a_reason_and_its_retransmission_is_acked_again() -> None:
    dialog = started()
    dialog.handle(reply(180, 0.2))
    assert dialog.handle(reply(486, 1.0)) == [SendAck(486, "theirs", 1), Ended("busy", False, 486)]
    assert failure_text("busy") == "对方忙"
    assert dialog.handle(reply(486, 1.5)) == [SendAck(486, "theirs", 1, again=True)]
    assert [a for _, a in ticks(dialog, 1.0 + LINGER_S)] == [Forget()]
    assert dialog.stage is Stage.GONE and dialog.deadline is None


def test_other_failures_have_reasons_too() -> None:
    for status, words in [
        (603, "对方拒接"),
        (404, "号码不存在或无法接通"),
        (503, "外呼线路暂时不可用"),
        (499, "线路返回 499"),
    ]:
        dialog = started()
        ended = [a for a in dialog.handle(reply(status, 1.0)) if isinstance(a, Ended)]
        assert failure_text(ended[0].outcome) == words


def test_no_answer_in_30_s_cancels_retransmits_the_cancel_and_acks_the_487() -> None:
    dialog = started()
    dialog.handle(reply(180, 0.5))
    actions = ticks(dialog, RING_TIMEOUT_S)
    assert [a for _, a in actions] == [SendCancel(), StopMedia(), Ended("no_answer", False)]
    assert failure_text("no_answer") == "无人接听"
    again = [t for t, a in ticks(dialog, RING_TIMEOUT_S + 8) if a == SendCancel(again=True)]
    assert again == [
        RING_TIMEOUT_S + T1,
        RING_TIMEOUT_S + 3 * T1,
        RING_TIMEOUT_S + 7 * T1,
        RING_TIMEOUT_S + 7 * T1 + T2,
    ]
    dialog.handle(reply(200, RING_TIMEOUT_S + 8, method="CANCEL"))  # its answer stops timer E
    assert not any(a == SendCancel(again=True) for _, a in ticks(dialog, RING_TIMEOUT_S + 20))
    assert dialog.handle(reply(487, RING_TIMEOUT_S + 20)) == [SendAck(487, "theirs", 1)]
    assert dialog.handle(reply(487, RING_TIMEOUT_S + 21)) == [SendAck(487, "theirs", 1, again=True)]


def test_an_answer_after_we_gave_up_is_acked_and_hung_up_at_once() -> None:
    dialog = started()
    dialog.handle(reply(180, 0.5))
    ticks(dialog, RING_TIMEOUT_S)
    assert dialog.handle(reply(200, RING_TIMEOUT_S + 0.2)) == [
        SendAck(200, "theirs", 1),
        SendBye("no_answer", await_answer=False),
    ]


def test_no_response_at_all_ends_the_call_and_the_cancel_waits_for_a_provisional_response() -> None:
    dialog = started()
    actions = [a for _, a in ticks(dialog, RING_TIMEOUT_S)]
    assert Ended("no_response", False) in actions and SendCancel() not in actions  # RFC 3261 §9.1
    assert dialog.handle(reply(100, RING_TIMEOUT_S + 1)) == [SendCancel()]


def test_a_digest_challenge_is_answered_once_with_the_next_cseq() -> None:
    server = DigestAuth("hotline", "s3cret", realm="pbx")
    challenge = server.challenge()
    dialog = started(user="hotline", password="s3cret")
    actions = dialog.handle(reply(401, 0.3, challenge=challenge))
    assert actions[0] == SendAck(401, "theirs", 1)
    invite = actions[1]
    assert isinstance(invite, SendInvite) and invite.cseq == 2 and invite.auth is not None
    header, value = invite.auth
    assert header == "Authorization" and server.check("INVITE", value) == "ok"
    proxy_challenge = DigestAuth("hotline", "s3cret", realm="proxy").challenge()
    proxy = dialog.handle(reply(407, 0.6, challenge=proxy_challenge))  # a proxy asks too: a new challenge
    assert isinstance(proxy[1], SendInvite) and proxy[1].auth and proxy[1].auth[0] == "Proxy-Authorization"
    again = dialog.handle(reply(407, 0.9, challenge=proxy_challenge))  # the same one again: wrong credentials
    assert again[-1] == Ended("auth_failed", False, 407)


def test_a_challenge_without_credentials_fails() -> None:
    dialog = started()
    assert dialog.handle(reply(401, 0.3, challenge='Digest realm="x", nonce="n"'))[-1] == Ended(
        "auth_failed", False, 401
    )
    assert failure_text("auth_failed") == "外呼线路认证失败"


def test_the_callee_hangs_up_and_a_stranger_gets_481() -> None:
    dialog = started()
    dialog.handle(reply(200, 1.0))
    assert dialog.handle(Received(request("BYE", from_tag="other"), 2.0))[0].status == 481  # type: ignore[union-attr]
    actions = dialog.handle(Received(request("BYE"), 2.0))
    assert isinstance(actions[0], Respond) and actions[0].status == 200
    assert actions[1:] == [StopMedia(), Ended("callee_hung_up", True)]
    reinvite = Received(request("INVITE"), 1.5)
    assert dialog.handle(reinvite)[0].status == 481  # type: ignore[union-attr]  # the dialog is over


def test_our_hang_up_sends_bye_and_ends_on_its_answer() -> None:
    dialog = started()
    dialog.handle(reply(200, 1.0))
    reinvite = dialog.handle(Received(request("INVITE"), 1.5))
    assert isinstance(reinvite[0], Respond) and reinvite[0].sdp
    assert dialog.handle(HangUp("agent_hung_up", 5.0)) == [SendBye("agent_hung_up", await_answer=True)]
    assert dialog.stage is Stage.ENDING
    assert dialog.handle(ByeAnswered(200, 5.1)) == [StopMedia(), Ended("agent_hung_up", True)]


def test_hanging_up_while_it_rings_cancels() -> None:
    dialog = started()
    dialog.handle(reply(180, 0.5))
    assert dialog.handle(HangUp("gateway_stopping", 2.0)) == [
        SendCancel(),
        StopMedia(),
        Ended("gateway_stopping", False),
    ]
