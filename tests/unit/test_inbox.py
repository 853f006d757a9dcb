"""The trainer's inbox: the dialogue's events as the broker publishes them (masked), the review rules, the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from hotline_domain.dialogue_events import KEYPAD_TEXT, DialogueEvent, EventKind
from voice_gateway.training.inbox import InboxFilter, InboxStore
from voice_gateway.training.review import Reason, Turn, reasons_for


def user(text: str, intent: str, confidence: float = 0.9, sender: str = "call-1", at: float = 1.0) -> dict:
    ranking = [{"name": intent, "confidence": confidence}, {"name": "card_progress", "confidence": 0.1}]
    return {
        "event": "user",
        "sender_id": sender,
        "timestamp": at,
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "intent_ranking": ranking},
        "input_channel": "rest",
    }


def bot(text: str, sender: str = "call-1", handoff: str | None = None) -> dict:
    data = {"custom": {"handoff": {"reason": handoff, "queue": "general"}}} if handoff else {}
    return {"event": "bot", "sender_id": sender, "timestamp": 2.0, "text": text, "data": data}


def test_a_user_event_keeps_intent_and_runner_ups_and_masks_numbers() -> None:
    event = DialogueEvent.from_rasa(user("我的身份证是110105196805121230", "inform", 0.42))
    assert event is not None and event.kind is EventKind.USER
    assert "110105196805121230" not in event.text and "1230" in event.text
    assert event.intent == "inform" and event.confidence == 0.42
    assert [r.intent for r in event.ranking] == ["inform", "card_progress"]
    assert DialogueEvent.from_fields(event.to_fields()) == event


def test_keypad_input_never_travels_and_bare_payloads_and_actions_are_dropped() -> None:
    keyed = DialogueEvent.from_rasa(user('/inform{"digits": "135790"}', "inform"))
    assert keyed is not None and keyed.text == KEYPAD_TEXT
    assert DialogueEvent.from_rasa(bot("")) is None  # a collect_digits payload alone
    assert DialogueEvent.from_rasa({"event": "action", "name": "action_listen", "sender_id": "x"}) is None
    handed = DialogueEvent.from_rasa(bot("", handoff="not_understood"))
    assert handed is not None and handed.handoff == "not_understood"


def test_a_malformed_stream_entry_is_refused() -> None:
    for fields in ({}, {"event": "not json"}, {"event": '{"kind": "nonsense"}'}):
        with pytest.raises(ValueError):
            DialogueEvent.from_fields(fields)


def turns(*spec: tuple) -> list[Turn]:
    return [
        Turn(i, who, text, intent, confidence, handoff)
        for i, (who, text, intent, confidence, handoff) in enumerate(spec, 1)
    ]


def test_a_fallback_and_an_unsure_turn_are_marked_a_sure_one_is_not() -> None:
    assert reasons_for(turns(("caller", "我的卡怎么弄", "nlu_fallback", 0.3, None))) == {1: {Reason.FALLBACK}}
    assert reasons_for(turns(("caller", "卡的事", "card_progress", 0.41, None))) == {1: {Reason.LOW_CONFIDENCE}}
    assert reasons_for(turns(("caller", "我社保卡丢了", "card_loss_report", 0.72, None))) == {}
    assert reasons_for(turns(("caller", KEYPAD_TEXT, "inform", 0.1, None))) == {}


def test_no_after_an_answer_marks_the_turn_before_but_no_to_a_yes_no_question_does_not() -> None:
    answered = turns(
        ("caller", "养老金怎么领", "retirement_age", 0.8, None),
        ("bot", "男职工六十周岁退休。", None, None, None),
        ("caller", "不是", "deny", 0.95, None),
    )
    assert reasons_for(answered) == {1: {Reason.DENIED}}
    asked = turns(
        ("caller", "我社保卡丢了", "card_loss_report", 0.8, None),
        ("bot", "确认挂失吗？", None, None, None),
        ("caller", "不是", "deny", 0.95, None),
    )
    assert reasons_for(asked) == {}
    guessed = turns(
        ("caller", "我的卡怎么弄", "nlu_fallback", 0.3, None),
        ("bot", "您是要挂失社保卡吗？", None, None, None),
        ("caller", "不是", "deny", 0.95, None),
    )
    assert reasons_for(guessed) == {1: {Reason.DENIED}}


def test_saying_it_again_after_the_answer_marks_the_first_saying() -> None:
    again = turns(
        ("caller", "我想查一下养老金", "query_pension_payment", 0.7, None),
        ("bot", "请说出您的身份证号码。", None, None, None),
        ("caller", "我想查一下养老金啊", "query_pension_payment", 0.7, None),
    )
    assert reasons_for(again) == {1: {Reason.REPEATED}}
    different = turns(
        ("caller", "我想查一下养老金", "query_pension_payment", 0.7, None),
        ("bot", "请说出您的身份证号码。", None, None, None),
        ("caller", "我社保卡丢了", "card_loss_report", 0.7, None),
    )
    assert reasons_for(different) == {}


def test_a_not_understood_handover_marks_the_last_two_spoken_turns() -> None:
    ended = turns(
        ("caller", "你好", "greet", 0.9, None),
        ("caller", "那个东西", "nlu_fallback", 0.2, None),
        ("caller", KEYPAD_TEXT, "inform", 0.9, None),
        ("caller", "就是那个", "nlu_fallback", 0.2, None),
        ("bot", "我帮您转人工。", None, None, "not_understood"),
    )
    assert reasons_for(ended) == {2: {Reason.HANDOVER}, 4: {Reason.HANDOVER}}


@pytest.fixture
def store(tmp_path: Path) -> InboxStore:
    return InboxStore(create_engine(f"sqlite:///{tmp_path / 'inbox.sqlite3'}"))


def add(store: InboxStore, raw: dict, channel: str = "twilio") -> list[int]:
    event = DialogueEvent.from_rasa(raw)
    assert event is not None
    return store.add(event, channel)


def test_the_store_keeps_marked_turns_with_context_filters_and_counts(store: InboxStore) -> None:
    add(store, user("你好", "greet", 0.95))
    add(store, bot("您好，请问有什么可以帮您？"))
    (fallback,) = add(store, user("我的卡怎么弄", "nlu_fallback", 0.3))
    add(store, bot("您是要挂失社保卡吗？"))
    assert add(store, user("不是", "deny", 0.97)) == [fallback]  # the same item, a second reason
    add(store, user("卡的事", "card_progress", 0.4, sender="chat-9"), channel="chat")
    items = store.items()
    assert [(i.text, i.reasons) for i in items] == [
        ("卡的事", ["low_confidence"]),
        ("我的卡怎么弄", ["denied", "fallback"]),
    ]
    assert [i.text for i in store.items(InboxFilter(channel="chat"))] == ["卡的事"]
    assert [i.text for i in store.items(InboxFilter(reason="denied"))] == ["我的卡怎么弄"]
    assert [i.text for i in store.items(InboxFilter(min_confidence=0.35))] == ["卡的事"]
    assert store.counts() == {"card_progress": 1, "nlu_fallback": 1}
    item = store.item(fallback)
    assert item is not None and item.ranking[0]["intent"] == "nlu_fallback"
    context = store.context(item)
    assert [c["text"] for c in context] == [
        "你好",
        "您好，请问有什么可以帮您？",
        "我的卡怎么弄",
        "您是要挂失社保卡吗？",
        "不是",
    ]
    assert [c["current"] for c in context] == [False, False, True, False, False]


def test_a_reviewed_turn_leaves_the_unreviewed_list_and_a_taken_back_turn_goes(store: InboxStore) -> None:
    (first,) = add(store, user("我的卡怎么弄", "nlu_fallback", 0.3))
    store.review(first, "annotated", "trainer1", {"text": "我的卡丢了怎么办", "intent": "card_loss_report"})
    assert store.items() == [] and [i.id for i in store.items(InboxFilter(reviewed=True))] == [first]
    assert [i.annotation["intent"] for i in store.annotated()] == ["card_loss_report"]
    add(store, user("那个", "nlu_fallback", 0.2))
    assert len(store.items()) == 1
    store.add(DialogueEvent("call-1", EventKind.REWIND, 3.0), "twilio")
    assert store.items() == []


def test_old_turns_are_purged(store: InboxStore) -> None:
    add(store, user("我的卡怎么弄", "nlu_fallback", 0.3, at=1.0))
    add(store, user("卡的事", "card_progress", 0.4, at=10**10))
    assert store.purge(now=10**10) == 1
    assert [i.text for i in store.items()] == ["卡的事"]
