"""The SIP dialog state machine driven by random event sequences: requests of every kind (in and out of the
dialog, retransmitted, mutated), our side's decisions, BYE outcomes and timer ticks, in any order.

Properties: `handle` never raises; the call ends at most once and an ended dialog stays ended with no timer and no
media started again; a tick at the deadline moves the deadline on (no busy timer loop); media starts at most once
and only with a 200 OK to the INVITE; and whatever happened, the server's clean-up (HangUp at once, what
SipServer._run_call does when the call's task ends) or our hang-up answered or not, then the timers, always end
the call: no call is ever left without an end.
"""

from __future__ import annotations

import random

from aiosipua.message import SipRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Harness, budget, corpus, mutants
from voice_gateway.transports.sip.dialog import (
    Admitted,
    Answer,
    ByeAnswered,
    EndCall,
    Event,
    Failed,
    HangUp,
    InviteDialog,
    Phase,
    Received,
    SendBye,
    SendResponse,
    StartMedia,
    Tick,
    TransferAccepted,
)
from voice_gateway.transports.sip.message import BadRequest, parse_message

OURS, THEIRS = "gw-tag", "caller-tag"
OFFER = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP = "v=0\r\no=hotline 7 7 IN IP4 10.0.0.2\r\ns=hotline\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"

DIALOG = Harness("sip-dialog")


def request(
    method: str,
    *,
    branch: str = "z9hG4bKinvite1",
    to_tag: str = "",
    from_tag: str = THEIRS,
    cseq: int = 1,
    body: str = "",
    content_type: str = "",
) -> SipRequest:
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


INVITE = request("INVITE", body=OFFER, content_type="application/sdp")


def _pool() -> list[SipRequest]:
    """The requests a dialog may see: right, retransmitted, out of the dialog, odd bodies, and mutants that parse."""
    pool = [
        INVITE,
        request("INVITE", branch="z9hG4bKre2", to_tag=OURS, cseq=2, body=OFFER, content_type="application/sdp"),
        request("INVITE", branch="z9hG4bKother", cseq=1, body=OFFER, content_type="application/sdp"),
        request("INVITE", branch="z9hG4bKre3", to_tag="stranger", cseq=3),
        request("ACK", to_tag=OURS),
        request("ACK", branch="z9hG4bKack2", to_tag=OURS, cseq=2),
        request("ACK"),
        request("ACK", to_tag="stranger"),
        request("CANCEL"),
        request("CANCEL", branch="z9hG4bKnot-the-invite"),
        request("BYE", branch="z9hG4bKbye", to_tag=OURS, cseq=4),
        request("BYE", branch="z9hG4bKbye2", to_tag="stranger", cseq=4),
        request("BYE", branch="z9hG4bKbye3", to_tag=OURS, from_tag="someone-else", cseq=4),
        request("BYE", branch="z9hG4bKbye4", cseq=4),
        request("OPTIONS", branch="z9hG4bKopt", to_tag=OURS, cseq=5),
        request("UPDATE", branch="z9hG4bKupd", to_tag=OURS, cseq=5),
        request(
            "NOTIFY",
            branch="z9hG4bKn200",
            to_tag=OURS,
            cseq=6,
            body="SIP/2.0 200 OK\r\n",
            content_type="message/sipfrag",
        ),
        request(
            "NOTIFY",
            branch="z9hG4bKn180",
            to_tag=OURS,
            cseq=6,
            body="SIP/2.0 180 Ringing\r\n",
            content_type="message/sipfrag",
        ),
        request(
            "NOTIFY",
            branch="z9hG4bKn486",
            to_tag=OURS,
            cseq=6,
            body="SIP/2.0 486 Busy Here\r\n",
            content_type="message/sipfrag",
        ),
        request("NOTIFY", branch="z9hG4bKnx", to_tag=OURS, cseq=6, body="garbage", content_type="message/sipfrag"),
        request("NOTIFY", branch="z9hG4bKn9", to_tag=OURS, cseq=6, body="SIP/2.0 999 Odd\r\n"),
    ]
    for key in ["5", "#", "*", "A", "d"]:
        pool.append(
            request(
                "INFO",
                branch=f"z9hG4bKi{key}",
                to_tag=OURS,
                cseq=7,
                body=f"Signal={key}\r\nDuration=160\r\n",
                content_type="application/dtmf-relay",
            )
        )
        pool.append(
            request("INFO", branch=f"z9hG4bKj{key}", to_tag=OURS, cseq=7, body=key, content_type="application/dtmf")
        )
    for body, kind in [
        ("Signal=55\r\n", "application/dtmf-relay"),
        ("", "application/dtmf"),
        ("x", "application/json"),
        ("Signal=5", ""),
    ]:
        pool.append(request("INFO", branch="z9hG4bKbad", to_tag=OURS, cseq=8, body=body, content_type=kind))
    # mutants of the seed corpus that still parse: odd values where the dialog reads them (tags, branch, body)
    rng = random.Random(4475)
    seeds = corpus("sip", ".sip")
    while len(pool) < 120:
        data = next(mutants(seeds, rng.randrange(len(seeds)), rng.randrange(2**32), 1))
        try:
            message = parse_message(data)
        except BadRequest:
            continue
        if isinstance(message, SipRequest):
            pool.append(message)
    return pool


POOL = _pool()


ACK = POOL[4]


def events(rng: random.Random, length: int) -> list[Event]:
    """Any events in any order; half of the scripts start as a call does (answered, perhaps ACKed)."""
    now, out = 0.0, []
    if rng.random() < 0.5:
        out.append(Answer(SDP, 0.1))
        if rng.random() < 0.7:
            out.append(Received(ACK, 0.2))
        now = 0.2
    for _ in range(length):
        now += rng.choice((0.0, 0.001, 0.1, 0.5, 1.0, 4.0, 33.0))
        kind = rng.random()
        if kind < 0.45:
            out.append(Received(rng.choice(POOL), now))
        elif kind < 0.55:
            out.append(Answer(SDP, now))
        elif kind < 0.62:
            out.append(HangUp(rng.choice(["completed", "handed_off", "no_input"]), now, at_once=rng.random() < 0.3))
        elif kind < 0.7:
            out.append(ByeAnswered(rng.choice([200, 481, 408, None]), now))
        elif kind < 0.75:
            out.append(TransferAccepted("sip:agent@10.0.0.5", now))
        elif kind < 0.78:
            out.append(Failed(now))
        elif kind < 0.8:
            out.append(Admitted(now))
        else:
            out.append(Tick(now))
    return out


class Witness:
    """Runs a dialog and checks every step's actions against the properties."""

    def __init__(self, reliable: bool) -> None:
        self.dialog = InviteDialog(INVITE, OURS, THEIRS, reliable=reliable, name="fuzz")
        self.ends = 0
        self.media_started = 0

    def feed(self, event: Event) -> list:
        before, was_ended = self.dialog.deadline, self.dialog.phase is Phase.ENDED
        actions = self.dialog.handle(event)
        for action in actions:
            if isinstance(action, EndCall):
                self.ends += 1
            elif isinstance(action, StartMedia):
                self.media_started += 1
                ok = [a for a in actions if isinstance(a, SendResponse) and a.status == 200 and a.request is INVITE]
                assert ok, f"media started without a 200 OK to the INVITE: {actions}"
            elif isinstance(action, SendResponse):
                assert 100 <= action.status < 700, action
        assert self.ends <= 1, "the call ended twice"
        assert self.media_started <= 1, "media started twice"
        if self.dialog.phase is Phase.ENDED:
            assert self.ends == 1 and self.dialog.deadline is None, (self.ends, self.dialog.deadline)
        if was_ended:
            assert self.dialog.phase is Phase.ENDED, "an ended dialog came back"
            assert not any(isinstance(a, (StartMedia, SendBye, EndCall)) for a in actions), actions
        if isinstance(event, Tick) and before is not None and event.now >= before:
            after = self.dialog.deadline
            assert after is None or after > before, f"a tick at the deadline left it at {after} (was {before})"
        return actions

    def run_out_the_timers(self, now: float) -> float:
        for _ in range(100):
            deadline = self.dialog.deadline
            if deadline is None:
                break
            now = max(now, deadline)
            self.feed(Tick(now))
        return now


def run_dialog(script: list[Event], reliable: bool, ending: str) -> None:
    witness = Witness(reliable)
    witness.feed(Admitted(0.0))
    for event in script:
        witness.feed(event)
    now = script[-1].now if script else 0.0
    if ending == "clean-up":  # the call's task ended, as SipServer._run_call's finally does it
        witness.feed(HangUp("session_ended", now, at_once=True))
    else:  # our side hangs up and the BYE is answered (or not: _await_bye reports None), then time passes
        actions = witness.feed(HangUp("completed", now))
        if any(isinstance(a, SendBye) and a.await_answer for a in actions):
            now = witness.run_out_the_timers(now)
            witness.feed(ByeAnswered(None, now + 4.0))
        witness.run_out_the_timers(now + 4.0)
    assert witness.dialog.phase is Phase.ENDED and witness.ends == 1, (witness.dialog.phase, witness.ends)


@settings(max_examples=budget(2000))
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(0, 40),
    reliable=st.booleans(),
    ending=st.sampled_from(["clean-up", "hang-up"]),
)
@DIALOG
def test_random_event_sequences_never_raise_and_always_end(seed: int, length: int, reliable: bool, ending: str) -> None:
    DIALOG.check(run_dialog, events(random.Random(seed), length), reliable, ending)
