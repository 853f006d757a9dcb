"""The gateway <-> dialogue contract (hotline_domain/contract.py): the wire stays what the actions sent as dicts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from hotline_domain.contract import (
    BotTurn,
    CallerIdentity,
    CollectDigits,
    ContractError,
    Handoff,
    HandoffQueue,
    HandoffReason,
    Hangup,
    HangupReason,
)
from voice_gateway.rasa_client import DialogueError, RasaClient

# the payloads exactly as dialogue/actions sent them as dict literals before the contract was typed
ID_NUMBER_WIRE = {
    "collect_digits": {
        "slot": "id_number",
        "max_digits": 18,
        "terminator": "#",
        "star_means": "X",
        "speech_allowed": True,
    }
}
PASSWORD_WIRE = {
    "collect_digits": {
        "slot": "service_password",
        "max_digits": 6,
        "terminator": "#",
        "speech_allowed": False,
        "secret": True,
    }
}
HANDOFF_WIRE = {
    "handoff": {
        "reason": "caller_request",
        "queue": "card",
        "identity": {"id_number": "440106********3663", "verified": False},
        "slots": {"id_number": "440106********3663", "service": "card_loss_report", "verified": False},
        "summary": "来电人要求转人工；业务：社保卡挂失；最后一句：我要转人工",
    }
}
HANGUP_WIRE = {"hangup": {"reason": "caller_done"}}


def test_keypad_questions_send_the_same_json_as_before() -> None:
    id_number = CollectDigits(slot="id_number", max_digits=18, terminator="#", star_means="X", speech_allowed=True)
    password = CollectDigits(slot="service_password", max_digits=6, terminator="#", speech_allowed=False, secret=True)
    assert id_number.to_payload() == ID_NUMBER_WIRE
    assert password.to_payload() == PASSWORD_WIRE
    assert list(password.to_payload()["collect_digits"]) == list(PASSWORD_WIRE["collect_digits"])  # key order too


@pytest.mark.parametrize("wire", [ID_NUMBER_WIRE, PASSWORD_WIRE])
def test_collect_digits_round_trips(wire: dict[str, Any]) -> None:
    parsed = CollectDigits.from_payload(wire)
    assert parsed.to_payload() == wire
    assert CollectDigits.from_payload(parsed.to_payload()) == parsed


def test_handoff_round_trips_with_names_as_members() -> None:
    parsed = Handoff.from_payload(HANDOFF_WIRE)
    assert parsed.reason is HandoffReason.CALLER_REQUEST and parsed.queue is HandoffQueue.CARD
    assert parsed.identity == CallerIdentity("440106********3663", verified=False)
    assert parsed.to_payload() == HANDOFF_WIRE
    assert Handoff.from_payload(parsed.to_payload()) == parsed
    assert f"{parsed.reason}/{parsed.queue}" == "caller_request/card"  # the same on Python 3.10 and 3.11


def test_hangup_round_trips() -> None:
    assert Hangup(HangupReason.CALLER_DONE).to_payload() == HANGUP_WIRE
    assert Hangup.from_payload(HANGUP_WIRE) == Hangup()


def test_names_given_as_strings_become_members() -> None:
    handoff = Handoff(reason="keypad_zero", queue="general")  # type: ignore[arg-type]
    assert handoff.reason is HandoffReason.KEYPAD_ZERO and handoff.queue is HandoffQueue.GENERAL


def test_the_gateways_own_handoffs_need_only_a_reason() -> None:
    payload = Handoff(HandoffReason.NO_INPUT).to_payload()["handoff"]
    assert payload == {
        "reason": "no_input",
        "queue": "general",
        "identity": {"id_number": None, "verified": False},
        "slots": {},
        "summary": "",
    }


def test_every_reason_and_queue_the_actions_use_is_a_name() -> None:
    # dialogue/actions/common.py REASONS and QUEUES (the action server's env is not importable from here)
    reasons = "caller_request not_understood verification_failed complaint urgent_wage_arrears elderly_caller"
    reasons += " backend_error keypad_zero"
    assert {HandoffReason(name) for name in reasons.split()} <= set(HandoffReason)
    for queue in "social_insurance card employment talent arbitration general".split():
        assert HandoffQueue(queue).value == queue


def with_inner(wire: dict[str, Any], **changes: Any) -> dict[str, Any]:
    [(key, inner)] = wire.items()
    return {key: {**inner, **changes}}


@pytest.mark.parametrize(
    ("kind", "wire", "message"),
    [
        (CollectDigits, with_inner(PASSWORD_WIRE, digits_only=True), "unknown key(s) ['digits_only']"),
        (Handoff, with_inner(HANDOFF_WIRE, priority=1), "unknown key(s) ['priority']"),
        (Hangup, with_inner(HANGUP_WIRE, after_s=2), "unknown key(s) ['after_s']"),
        (CollectDigits, {"collect_digits": {"slot": "id_number"}}, "missing key(s) ['max_digits']"),
        (Handoff, {"handoff": {"reason": "complaint"}}, "missing key(s)"),
    ],
)
def test_unknown_and_missing_keys_are_refused(kind: type, wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=re.escape(message)):
        kind.from_payload(wire)


@pytest.mark.parametrize(
    ("kind", "wire", "message"),
    [
        (CollectDigits, with_inner(PASSWORD_WIRE, max_digits="6"), "collect_digits.max_digits must be int, got str"),
        (CollectDigits, with_inner(PASSWORD_WIRE, max_digits=True), "collect_digits.max_digits must be int, got bool"),
        (CollectDigits, with_inner(PASSWORD_WIRE, max_digits=0), "max_digits must be 1 to 32"),
        (CollectDigits, with_inner(PASSWORD_WIRE, secret="yes"), "collect_digits.secret must be bool, got str"),
        (CollectDigits, with_inner(PASSWORD_WIRE, terminator="##"), "terminator must be one keypad key"),
        (CollectDigits, with_inner(ID_NUMBER_WIRE, star_means=1), "star_means must be str or null, got int"),
        (CollectDigits, with_inner(ID_NUMBER_WIRE, slot=""), "slot must not be empty"),
        (CollectDigits, {"collect_digits": [18]}, "collect_digits must be an object, got list"),
        (Handoff, with_inner(HANDOFF_WIRE, reason="bored"), "handoff.reason: unknown name 'bored'"),
        (Handoff, with_inner(HANDOFF_WIRE, queue="medical"), "handoff.queue: unknown name 'medical'"),
        (Handoff, with_inner(HANDOFF_WIRE, reason=3), "handoff.reason must be a string, got int"),
        (Handoff, with_inner(HANDOFF_WIRE, summary=None), "handoff.summary must be str, got NoneType"),
        (Handoff, with_inner(HANDOFF_WIRE, slots=[]), "handoff.slots must be dict, got list"),
        (Handoff, with_inner(HANDOFF_WIRE, slots={"city": {"name": "北京"}}), r"handoff.slots.city must be str"),
        (Handoff, with_inner(HANDOFF_WIRE, identity={"id_number": None}), r"missing key\(s\) \['verified'\]"),
        (Hangup, {"hangup": {"reason": "bored"}}, "hangup.reason: unknown name 'bored'"),
    ],
)
def test_wrong_types_and_unknown_names_are_refused(kind: type, wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        kind.from_payload(wire)


def test_secrets_and_unmasked_numbers_never_travel_in_a_handoff() -> None:
    with pytest.raises(ContractError, match=re.escape("identity.id_number must be masked")):
        CallerIdentity("110105196805121230", verified=True)
    with pytest.raises(ContractError, match=re.escape("handoff.slots.service_password is secret")):
        Handoff(HandoffReason.COMPLAINT, slots={"service_password": "verified"})
    with pytest.raises(ContractError, match=re.escape("handoff.slots.phone must be masked")):
        Handoff(HandoffReason.COMPLAINT, slots={"phone": "13800138000"})


def test_two_keys_in_one_payload_are_refused() -> None:
    both = {**PASSWORD_WIRE, **HANGUP_WIRE}
    with pytest.raises(ContractError, match="expected exactly the key 'collect_digits'"):
        CollectDigits.from_payload(both)
    with pytest.raises(ContractError, match="a custom payload has exactly one key"):
        BotTurn.from_messages([{"recipient_id": "c1", "custom": both}])


def test_a_payload_of_another_kind_is_refused() -> None:
    with pytest.raises(ContractError, match="expected exactly the key 'handoff', got \\['hangup'\\]"):
        Handoff.from_payload(HANGUP_WIRE)


def test_contract_error_is_a_value_error() -> None:
    assert issubclass(ContractError, ValueError)


# what Rasa 3.6's REST channel returns (CollectingOutputChannel: recipient_id plus one of text or custom; a text
# with a blank line in it comes as two messages)
REST_ANSWER = [
    {"recipient_id": "CA0123", "text": "好的，身份证尾号1230。"},
    {"recipient_id": "CA0123", "text": "请在电话按键上输入六位服务密码，以井号键结束。"},
    {"recipient_id": "CA0123", "custom": PASSWORD_WIRE},
]


def test_a_rest_answer_becomes_a_turn() -> None:
    turn = BotTurn.from_messages(REST_ANSWER)
    assert turn.texts == ["好的，身份证尾号1230。", "请在电话按键上输入六位服务密码，以井号键结束。"]
    assert turn.text == "好的，身份证尾号1230。请在电话按键上输入六位服务密码，以井号键结束。"
    assert turn.collect == CollectDigits.from_payload(PASSWORD_WIRE) and turn.collect.secret
    assert turn.handoff is None and turn.hangup is None


def test_a_handoff_and_a_goodbye_answer() -> None:
    handoff = BotTurn.from_messages([{"recipient_id": "c", "text": "正在为您转接人工客服。"}, {"custom": HANDOFF_WIRE}])
    assert handoff.handoff == Handoff.from_payload(HANDOFF_WIRE) and handoff.collect is None
    goodbye = BotTurn.from_messages(
        [{"recipient_id": "c", "text": "再见。"}, {"recipient_id": "c", "custom": HANGUP_WIRE}]
    )
    assert goodbye.hangup == Hangup(HangupReason.CALLER_DONE)


def test_no_answer_is_an_empty_turn() -> None:
    turn = BotTurn.from_messages([])
    assert turn == BotTurn() and turn.text == "" and turn.parts == []


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"recipient_id": "c", "custom": {"play_music": {"track": 1}}}], "unknown custom payload 'play_music'"),
        ([{"recipient_id": "c", "custom": {}}], "a custom payload has exactly one key, got \\[\\]"),
        ([{"recipient_id": "c", "custom": "hangup"}], "a custom payload has exactly one key, got str"),
        ([{"recipient_id": "c", "custom": with_inner(HANGUP_WIRE, reason=1)}], "hangup.reason must be a string"),
        ([{"recipient_id": "c", "custom": HANGUP_WIRE}, {"custom": HANGUP_WIRE}], "message 1: a second 'hangup'"),
        ([{"recipient_id": "c", "text": 5}], "message 0 text must be str, got int"),
        ([{"recipient_id": "c", "text": "请选择", "buttons": []}], "message 0: cannot be spoken: \\['buttons'\\]"),
        (["你好"], "message 0 must be an object, got str"),
        ({"text": "你好"}, "the answer must be a list of messages, got dict"),
    ],
)
def test_malformed_answers_are_refused(messages: Any, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        BotTurn.from_messages(messages)


async def test_an_answer_outside_the_contract_is_a_dialogue_error() -> None:
    """The gateway's client turns a ContractError into the DialogueError every caller of it handles."""

    async def webhook(request: web.Request) -> web.Response:
        return web.json_response([{"recipient_id": "c", "custom": {"play_music": {}}}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with RasaClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(DialogueError, match=r"outside the contract: .*unknown custom payload 'play_music'"):
                await client.send("c", "你好")
    finally:
        await runner.cleanup()


def test_the_priority_flags_are_optional_and_travel_only_when_set() -> None:
    identity = CallerIdentity("440106********3663", verified=True, senior=True)
    assert identity.to_json() == {"id_number": "440106********3663", "verified": True, "senior": True}
    assert CallerIdentity.from_json(identity.to_json()) == identity
    assert CallerIdentity.from_json({"id_number": None, "verified": False}).repeat is False
    with pytest.raises(ContractError):
        CallerIdentity.from_json({"id_number": None, "verified": False, "senior": "yes"})
