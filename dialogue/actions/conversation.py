"""Conversation control: handoff, repeat, cancel, fallback, re-asking, yes/no, hang-up, keypad, out of scope."""

from __future__ import annotations

import re

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import guess, prompts
from actions.common import anything_else, handoff, keyed_digits, latest_intent
from hotline_domain.contract import Hangup, HangupReason

_FORM_SLOTS = (
    "birth_year",
    "birth_month",
    "gender",
    "job_type",
    "insured_one_year",
    "involuntary",
    "registered_unemployed",
    "city",
    "job_category",
    "confirm",
    "case_number",
    "elder_offer",
)


def _has_entity(tracker: Tracker, name: str) -> bool:
    return any(e.get("entity") == name for e in tracker.latest_message.get("entities") or [])


def _in_form(tracker: Tracker) -> bool:
    return bool(tracker.active_loop.get("name"))


def keep_form_open(tracker: Tracker) -> list[EventType]:
    """After a turn handled outside the open form (repeat, re-ask): go back to the form.

    The form rejected this turn, and Rasa keeps a rejected form out of predictions until it runs again.
    Re-stating the active loop clears that: Rasa runs the form right after this action, and the form asks
    its question again. So these actions never ask the question themselves.
    """
    name = tracker.active_loop.get("name")
    return [ActiveLoop(name)] if name else []


def last_bot_turn(tracker: Tracker) -> list[dict]:
    """The bot messages sent between the caller's previous message and the current one."""
    turn: list[dict] = []
    users_seen = 0
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            users_seen += 1
            if users_seen == 2:
                break
        elif kind == "bot" and users_seen == 1:
            turn.append(event)
    return list(reversed(turn))


class ActionUrgencyCheck(Action):
    """After a wage-arrears answer: a caller in an emergency goes straight to a person."""

    def name(self) -> str:
        return "action_urgency_check"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if _has_entity(tracker, "urgency"):
            return handoff(dispatcher, tracker, "urgent_wage_arrears", text=prompts.HANDOFF_URGENT)
        if not _in_form(tracker):
            anything_else(dispatcher)
        return []


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if latest_intent(tracker) == "complain":
            return handoff(dispatcher, tracker, "complaint", text=prompts.HANDOFF_COMPLAINT)
        return handoff(dispatcher, tracker, "caller_request")


class ActionRepeat(Action):
    def name(self) -> str:
        return "action_repeat"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        said = [e["text"] for e in last_bot_turn(tracker) if e.get("text")]
        if _in_form(tracker):
            said = said[:-1]  # the last was the form's question, which the form asks again
        elif not said:
            said = [prompts.HOW_CAN_I_HELP]
        for text in said:
            dispatcher.utter_message(text=text)
        return keep_form_open(tracker)


class ActionCancel(Action):
    """Stop what is going on (a form, a pending confirmation) and offer further help."""

    def name(self) -> str:
        return "action_cancel"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(text=prompts.CANCELLED)
        events: list[EventType] = [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("service", None)]
        return events + [SlotSet(name, None) for name in _FORM_SLOTS]


class ActionFallback(Action):
    """Not understood: ask about the best guess if there is one (guess.py), else reprompt; after two such turns
    in three, hand the call to a person."""

    def name(self) -> str:
        return "action_fallback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        user_turns = [e for e in tracker.events if e.get("event") == "user"]
        recent = [(e.get("parse_data") or {}).get("intent", {}).get("name") for e in user_turns[-3:-1]]
        if "nlu_fallback" in recent:
            return handoff(dispatcher, tracker, "not_understood", text=prompts.STILL_NOT_UNDERSTOOD)
        if _in_form(tracker):
            dispatcher.utter_message(text=prompts.NOT_AN_ANSWER + "我没有听清楚。")
            return keep_form_open(tracker)
        best = guess.best_guess(tracker)
        if best is not None:
            return guess.ask(dispatcher, best[0])
        dispatcher.utter_message(text=prompts.NOT_UNDERSTOOD)
        return []


class ActionReask(Action):
    """Inside a form the caller said something that answers nothing: ask the question again."""

    def name(self) -> str:
        return "action_reask"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if keyed_digits(tracker) == "0":
            return handoff(dispatcher, tracker, "keypad_zero")
        dispatcher.utter_message(text=prompts.NOT_AN_ANSWER + "这个回答我没法用。")
        if tracker.get_slot("requested_slot") == "confirm":
            dispatcher.utter_message(text="确认的话请说确认，不办了请说取消。")
        return keep_form_open(tracker)


_OPEN_QUESTION = re.compile(r"还有其他问题吗|请问有什么可以帮您|请问您要办理什么业务")


class ActionYesNo(Action):
    """A yes or no outside any form: answers "还有其他问题吗", or asks what the caller wants."""

    def name(self) -> str:
        return "action_yes_no"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        texts = [e.get("text") or "" for e in last_bot_turn(tracker)]
        said, intent = " ".join(texts), latest_intent(tracker)
        asked = guess.pending(tracker, texts)
        if asked is not None:  # 您是要挂失社保卡吗？
            return guess.confirmed(tracker, asked) if intent == "affirm" else guess.denied(dispatcher, tracker, asked)
        if intent == "deny" and "还有其他问题吗" in said:
            dispatcher.utter_message(response="utter_goodbye")
            return hang_up(dispatcher)
        if intent == "affirm" and _OPEN_QUESTION.search(said):
            dispatcher.utter_message(text=prompts.PLEASE_GO_AHEAD)
        else:
            dispatcher.utter_message(text=prompts.HOW_CAN_I_HELP)
        return []


def hang_up(dispatcher: CollectingDispatcher) -> list[EventType]:
    dispatcher.utter_message(json_message=Hangup(HangupReason.CALLER_DONE).to_payload())
    return []


class ActionHangUp(Action):
    """After the goodbye: tell the gateway to end the call."""

    def name(self) -> str:
        return "action_hang_up"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        return hang_up(dispatcher)


_MEDICAL = re.compile(r"医保|医疗保险|报销|看病|住院|药费|门诊|医药费")
_HOUSING_FUND = re.compile(r"公积金|公鸡金|住房基金")


class ActionOutOfScope(Action):
    def name(self) -> str:
        return "action_out_of_scope"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        if _MEDICAL.search(text):
            dispatcher.utter_message(text=prompts.OUT_OF_SCOPE_MEDICAL)
        elif _HOUSING_FUND.search(text):
            dispatcher.utter_message(text=prompts.OUT_OF_SCOPE_HOUSING_FUND)
        else:
            dispatcher.utter_message(text=prompts.OUT_OF_SCOPE)
        if not _in_form(tracker):
            anything_else(dispatcher)
        return []


class ActionInform(Action):
    """A value or keypad input outside any form: 0 reaches a person, anything else asks what the caller wants."""

    def name(self) -> str:
        return "action_inform"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        keyed = keyed_digits(tracker)
        if keyed == "0":
            return handoff(dispatcher, tracker, "keypad_zero")
        dispatcher.utter_message(text=prompts.KEYPAD_INVALID if keyed is not None else prompts.HOW_CAN_I_HELP)
        return []
