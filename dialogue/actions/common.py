"""What the actions share: the business database, the handoff (hotline_domain/contract.py), service metadata."""

from __future__ import annotations

import logging
import time
from datetime import date
from functools import lru_cache
from typing import Any

import redis
import redis_link
from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import prompts
from actions.caller_id import caller_id, caller_key
from actions.settings import SETTINGS
from hotline_domain.answers import question_cue, yes_no
from hotline_domain.business import BusinessDb
from hotline_domain.contract import CallerIdentity, Handoff, HandoffQueue, HandoffReason
from hotline_domain.identity import IdNumber, IdNumberError, mask_id, mask_phone, redact
from hotline_domain.keypad import take_secret_digits

log = logging.getLogger("hotline.actions")

# which human agent queue (service domain) an intent belongs to
QUEUES: dict[HandoffQueue, str] = {
    HandoffQueue.SOCIAL_INSURANCE: (
        "query_pension_contribution query_pension_payment pension_certification retirement_age insurance_transfer "
        "unemployment_benefit work_injury flexible_employment_insurance contribution_certificate"
    ),
    HandoffQueue.CARD: "card_loss_report card_application card_progress card_activation electronic_card",
    HandoffQueue.EMPLOYMENT: (
        "job_search unemployment_registration vocational_training entrepreneurship_support career_guidance"
    ),
    HandoffQueue.TALENT: "talent_policy professional_title skill_certificate personnel_archive",
    HandoffQueue.ARBITRATION: "wage_arrears labor_arbitration arbitration_progress labor_contract",
}
QUEUE_OF = {intent: queue for queue, intents in QUEUES.items() for intent in intents.split()}

SERVICE_NAMES = {
    "query_pension_contribution": "养老保险缴费查询",
    "query_pension_payment": "养老金发放查询",
    "card_loss_report": "社保卡挂失",
    "card_progress": "社保卡办理进度查询",
    "skill_certificate": "技能证书查询",
    "arbitration_progress": "仲裁案件进度查询",
}
SERVICES = tuple(SERVICE_NAMES)  # intents that need identity verification

# slots whose values are never sent out unmasked
_SECRET_SLOTS = {"service_password", "id_ref"}  # id_ref: the sealed ID (caller_id.py)
_MASKERS = {"id_number": mask_id, "phone": mask_phone}


@lru_cache(maxsize=1)
def business_db() -> BusinessDb:
    """One database handle per action server process (the engine pools connections)."""
    return BusinessDb(SETTINGS.db_url)


def last_topic(tracker: Tracker) -> str | None:
    """The latest intent that names a service domain, to pick the human agent queue."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            name = (event.get("parse_data") or {}).get("intent", {}).get("name")
            if name in QUEUE_OF:
                return name
    return None


def masked_slots(tracker: Tracker) -> dict[str, Any]:
    """Filled slots as a human agent may see them: secrets dropped, numbers masked."""
    shown: dict[str, Any] = {}
    for name, value in tracker.current_slot_values().items():
        if value in (None, [], "") or name in _SECRET_SLOTS or name == "requested_slot":
            continue
        shown[name] = _MASKERS[name](str(value)) if name in _MASKERS else value
    return shown


# what a person reads first in the handoff summary
REASONS: dict[HandoffReason, str] = {
    HandoffReason.CALLER_REQUEST: "来电人要求转人工",
    HandoffReason.NOT_UNDERSTOOD: "连续两次未能理解来电人",
    HandoffReason.VERIFICATION_FAILED: "身份验证三次失败",
    HandoffReason.COMPLAINT: "来电人投诉",
    HandoffReason.URGENT_WAGE_ARREARS: "疑似紧急欠薪维权",
    HandoffReason.ELDERLY_CALLER: "六十五岁以上老人，按适老化规则优先人工",
    HandoffReason.BACKEND_ERROR: "业务系统故障",
    HandoffReason.KEYPAD_ZERO: "来电人按零转人工",
}


def handoff(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    reason: HandoffReason | str,
    *,
    text: str | None = prompts.HANDOFF,
) -> list[EventType]:
    """End the bot's turn with a handoff payload the gateway acts on, and close any open form.

    `reason` is a `HandoffReason` or its name; an unknown name raises `ContractError` before anything is said.
    """
    topic = tracker.get_slot("service") or last_topic(tracker)
    id_number = tracker.get_slot("id_number")
    last_text = redact(tracker.latest_message.get("text") or "")
    service = SERVICE_NAMES.get(topic or "", topic or "未明确")
    clear = caller_id(tracker)
    request = Handoff(
        reason=reason,
        queue=QUEUE_OF.get(topic or "", HandoffQueue.GENERAL),
        identity=CallerIdentity(
            mask_id(id_number) if id_number else None,
            bool(tracker.get_slot("verified")),
            senior=is_senior(clear),
            repeat=clear is not None and called_before(clear, tracker.sender_id),
        ),
        slots=masked_slots(tracker),
        summary=f"{REASONS.get(reason, reason)}；业务：{service}；最后一句：{last_text[:60]}",
    )
    if text:
        dispatcher.utter_message(text=text)
    dispatcher.utter_message(json_message=request.to_payload())
    log.info("handoff reason=%s queue=%s", request.reason, request.queue)
    return [ActiveLoop(None), SlotSet("requested_slot", None)]


SENIOR_AGE = 65
REPEAT_WINDOW_S = 24 * 3600


def is_senior(id_number: str | None, today: date | None = None) -> bool:
    """65 or older today, by the birth date in the 18-digit ID number."""
    try:
        return bool(id_number) and IdNumber.parse(str(id_number)).age_on(today or date.today()) >= SENIOR_AGE
    except IdNumberError:
        return False


def called_before(id_number: str, conversation_id: str, now: float | None = None) -> bool:
    """Note this call of the caller's and say whether the same ID number was given in another call in the last
    24 h. "The same caller" is the same identity (the gateway does not know every line's caller number): a keyed
    hash of the ID number (`caller_key`) in Redis, `hotline:caller:<hash>` zset of conversation ids by time."""
    now = time.time() if now is None else now
    key = f"hotline:caller:{caller_key(id_number)}"
    try:
        store = keypad_store()
        store.zremrangebyscore(key, "-inf", now - REPEAT_WINDOW_S)
        others = [m.decode() if isinstance(m, bytes) else m for m in store.zrange(key, 0, -1)]
        earlier = [m for m in others if m != conversation_id]
        store.zadd(key, {conversation_id: now})
        store.expire(key, int(REPEAT_WINDOW_S))
    except redis.RedisError:
        log.warning("earlier calls of this caller could not be read from Redis")
        return False
    return bool(earlier)


def anything_else(dispatcher: CollectingDispatcher) -> None:
    dispatcher.utter_message(response="utter_anything_else")


# intents that are never an answer to a form's yes/no question when the model is sure of them
_NOT_AN_ANSWER = {"stop", "request_human", "complain", "goodbye", "repeat"}


def yes_no_answer(tracker: Tracker, slot: str) -> dict[str, Any]:
    """Fill the yes/no `slot` the form asked for from the caller's words (extract_<slot> in form validation)."""
    if tracker.get_slot("requested_slot") != slot:
        return {}
    text = tracker.latest_message.get("text") or ""
    answer = question_cue(text, slot)  # words specific to the question beat the intent: 办了 is not 不办了
    if answer is None:
        intent = tracker.latest_message.get("intent") or {}
        if intent.get("name") in _NOT_AN_ANSWER and float(intent.get("confidence") or 0) >= 0.7:
            return {}
        answer = yes_no(text, slot)
    return {} if answer is None else {slot: answer}


def latest_intent(tracker: Tracker) -> str | None:
    return (tracker.latest_message.get("intent") or {}).get("name")


@lru_cache(maxsize=1)
def keypad_store() -> redis.Redis:
    """The Redis that holds secret keypad input (the same one as Rasa's tracker store)."""
    return redis_link.client(
        SETTINGS.redis_host,
        SETTINGS.redis_port,
        db=SETTINGS.redis_db,
        password=SETTINGS.redis_password,
        socket_timeout=2,
    )


def keyed_digits(tracker: Tracker) -> str | None:
    """Digits keyed in on the phone, or None when the caller spoke.

    The gateway sends /inform{"digits": "..."}, or /inform{"digits_ref": "..."} for secret input, whose digits
    wait in Redis for one read. An unknown or expired reference gives "".
    """
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "digits":
            return str(entity.get("value") or "").strip().rstrip("#")
        if entity.get("entity") == "digits_ref":
            try:
                value = take_secret_digits(keypad_store(), str(entity.get("value")))
            except redis.RedisError:
                log.warning("secret keypad input could not be read from Redis")
                value = None
            return (value or "").strip().rstrip("#")
    return None
