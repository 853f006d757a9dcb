"""Identity verification before any query or transaction: ID number by voice or keypad, password by keypad.

`identity_form` asks for id_number and service_password, then what the chosen service needs: a case number,
the caller's explicit confirmation, and for callers of 65 or more the offer of a human agent. At most
MAX_FAILURES wrong answers in all; then the form ends and action_run_service hands the call over.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import prompts
from actions.caller_id import caller_id, verified_id_slots
from actions.common import SERVICES, business_db, called_before, keyed_digits, latest_intent, log, yes_no_answer
from hotline_domain.business import BackendError
from hotline_domain.identity import IdNumber, IdNumberError
from hotline_domain.numbers import digits_of

MAX_FAILURES = 3
ELDER_AGE = 65


class ActionStartService(Action):
    """Remember which service the caller asked for; reset what a previous service of this call left behind."""

    def name(self) -> str:
        return "action_start_service"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        intent = latest_intent(tracker)
        service = intent if intent in SERVICES else tracker.get_slot("service")
        # a case number counts only if said with this request, never left over from an earlier one
        return [
            SlotSet("service", service),
            SlotSet("confirm", None),
            SlotSet("case_number", _case_from_message(tracker)),
        ]


def _case_from_message(tracker: Tracker) -> str | None:
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "case_number":
            return str(entity.get("value"))
    return None


class ValidateIdentityForm(FormValidationAction):
    def name(self) -> str:
        return "validate_identity_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("identity_failed"):
            return []
        slots = ["id_number", "service_password"]
        if tracker.get_slot("verified") and _is_elder(caller_id(tracker)):
            slots.append("elder_offer")
        if tracker.get_slot("elder_offer"):
            return slots  # the caller takes the human agent: nothing more to ask
        service = tracker.get_slot("service")
        if service == "arbitration_progress":
            slots.append("case_number")
        if service == "card_loss_report":
            slots.append("confirm")
        return slots

    def extract_id_number(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "id_number":
            return {}
        keyed = keyed_digits(tracker)
        if keyed is None or keyed in ("", "0"):
            return {}
        return {"id_number": keyed.replace("*", "X")}

    def extract_service_password(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") != "service_password":
            return {}
        keyed = keyed_digits(tracker)
        if keyed is not None:
            return {"service_password": keyed} if keyed not in ("", "0") else {}
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent == "inform" or len(digits_of(tracker.latest_message.get("text") or "")) >= 4:
            # spoken digits are never taken as a password: remind, and keep waiting for the keypad
            dispatcher.utter_message(text=prompts.KEYPAD_PASSWORD)
            return {"service_password": None}
        return {}

    def extract_confirm(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return yes_no_answer(tracker, "confirm")

    def extract_elder_offer(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return yes_no_answer(tracker, "elder_offer")

    def validate_id_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if isinstance(value, list):
            value = value[-1] if value else ""
        try:
            id_number = IdNumber.parse(str(value))
        except IdNumberError as exc:
            return self._failure(dispatcher, tracker, f"{exc.spoken}。", "id_number")
        try:
            person = business_db().citizen(id_number.value)
        except BackendError:
            return self._backend_failure(dispatcher)
        if person is None:
            return self._failure(dispatcher, tracker, "没有查到这个身份证号的参保信息。", "id_number")
        dispatcher.utter_message(text=f"好的，身份证尾号{id_number.tail}。")
        called_before(id_number.value, tracker.sender_id)  # noted: a call again within 24 h is served first
        return verified_id_slots(id_number.value, tracker)  # masked, and sealed for the actions (caller_id.py)

    def validate_service_password(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        id_number = caller_id(tracker)
        if not value or not id_number:
            return {"service_password": None}
        password = str(value)
        try:
            ok = len(password) == 6 and password.isdigit() and business_db().check_password(id_number, password)
        except BackendError:
            return self._backend_failure(dispatcher)
        if not ok:
            return self._failure(dispatcher, tracker, "密码不正确。", "service_password")
        dispatcher.utter_message(text=prompts.VERIFIED)
        log.info("caller verified")
        return {"service_password": "verified", "verified": True}

    def validate_case_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"case_number": value[-1] if isinstance(value, list) else value}

    def _failure(self, dispatcher: CollectingDispatcher, tracker: Tracker, why: str, slot: str) -> dict[str, Any]:
        failures = int(tracker.get_slot("identity_failures") or 0) + 1
        if failures >= MAX_FAILURES:
            dispatcher.utter_message(text=f"{why}验证已经失败{MAX_FAILURES}次了。")
            return {slot: None, "identity_failures": failures, "identity_failed": True}
        dispatcher.utter_message(text=f"{why}请再试一次。")
        return {slot: None, "identity_failures": failures}

    @staticmethod
    def _backend_failure(dispatcher: CollectingDispatcher) -> dict[str, Any]:
        return {"identity_failed": True, "service": "backend_error"}


def _is_elder(id_number: str | None) -> bool:
    try:
        return bool(id_number) and IdNumber.parse(id_number).age_on(date.today()) >= ELDER_AGE
    except IdNumberError:
        return False
