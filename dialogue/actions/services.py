"""The services a verified caller can use: record queries and the card loss report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import prompts
from actions.caller_id import caller_id
from actions.common import anything_else, business_db, handoff
from hotline_domain.business import BackendError, BusinessDb
from hotline_domain.card_rules import loss_rule

Answer = Callable[[BusinessDb, str, Tracker], str]


def _spoken_date(day: date | None) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if day else ""


def _contribution(db: BusinessDb, id_number: str, tracker: Tracker) -> str:
    s = db.contribution_summary(id_number)
    if not s["months"]:
        return "没有查到您的养老保险缴费记录。"
    years, months = divmod(s["months"], 12)
    total = f"{years}年" + (f"零{months}个月" if months else "")
    text = (
        f"您从{s['first_year']}年开始参保，到{s['last_year']}年累计缴费{total}，个人账户累计记入{s['balance']:.0f}元。"
    )
    if s["gap_years"]:
        text += f"其中有{len(s['gap_years'])}年没有缴满十二个月。"
    return text


_PAYMENT_STATUS = {"paid": "已经发放", "pending": "还在发放流程中", "suspended": "已暂停发放"}


def _pension_payment(db: BusinessDb, id_number: str, tracker: Tracker) -> str:
    rows = db.latest_pension_payments(id_number)
    if not rows:
        return "没有查到您的养老金发放记录，可能您还没有办理退休手续。"
    latest = rows[0]
    year, month = latest["month"].split("-")
    text = f"您{year}年{int(month)}月的养老金{latest['amount']:.0f}元{_PAYMENT_STATUS[latest['status']]}"
    if latest["status"] == "paid":
        text += f"，发放日期是{_spoken_date(latest['paid_on'])}，已经打到您的社保卡金融账户。"
    else:
        text += "，一般每月十五日前后到账，请过几天再查。"
    return text


_ORDER_STATUS = {
    "accepted": "已经受理，正在审核",
    "producing": "正在制卡",
    "ready": "已经制好",
    "collected": "已经领取",
}


def _card_progress(db: BusinessDb, id_number: str, tracker: Tracker) -> str:
    orders = db.card_orders(id_number)
    if not orders:
        return "没有查到您正在办理的社保卡申请。"
    order = orders[0]
    text = f"您{_spoken_date(order['applied_on'])}申请的社保卡{_ORDER_STATUS[order['status']]}"
    if order["status"] == "ready":
        text += f"，请带身份证到{order['pickup_place']}领取。"
    elif order["status"] in ("accepted", "producing"):
        text += "，一般二十个工作日左右制好，制好后会短信通知您。"
    else:
        text += "。"
    return text


def _certificate(db: BusinessDb, id_number: str, tracker: Tracker) -> str:
    certs = db.certificates(id_number)
    if not certs:
        return "在您名下没有查到职业技能等级证书。如果证书上的信息和您不符，可能是假证，请向当地人社部门核实。"
    c = certs[0]
    return (
        f"查到您名下有{len(certs)}本证书。最新的一本是{c['title']}{c['level']}，"
        f"{c['issued_on'].year}年由{c['issuer']}颁发，是真实有效的。"
    )


_CASE_STATUS = {
    "accepted": "已经立案受理，等待排期开庭",
    "hearing_scheduled": "已经排期开庭",
    "mediating": "正在调解中",
    "awarded": "已经作出裁决，裁决书会送达给您",
    "closed": "已经结案",
}


def _arbitration(db: BusinessDb, id_number: str, tracker: Tracker) -> str:
    cases = db.arbitration_cases(id_number)
    wanted = tracker.get_slot("case_number")
    match = next((c for c in cases if c["case_number"] == wanted), None)
    if match is None:
        if not cases:
            return "在您名下没有查到劳动仲裁案件。"
        return "您说的案号和您名下的案件对不上，请核对裁决文书上的案号。"
    year, number = match["case_number"].split("-")
    text = f"您{year}年第{number}号案件，被申请人是{match['respondent']}，{_CASE_STATUS[match['status']]}"
    if match["hearing_on"]:
        text += f"，开庭时间是{_spoken_date(match['hearing_on'])}，请按时到{match['commission']}参加。"
    else:
        text += "。"
    return text


QUERIES: dict[str, Answer] = {
    "query_pension_contribution": _contribution,
    "query_pension_payment": _pension_payment,
    "card_progress": _card_progress,
    "skill_certificate": _certificate,
    "arbitration_progress": _arbitration,
}


class ActionRunService(Action):
    """After identity_form: hand over, or carry out the service the caller asked for."""

    def name(self) -> str:
        return "action_run_service"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        service = tracker.get_slot("service")
        if service == "backend_error":
            dispatcher.utter_message(text=prompts.BACKEND_ERROR)
            return [
                *handoff(dispatcher, tracker, "backend_error"),
                SlotSet("service", None),
                SlotSet("identity_failed", False),
            ]
        if tracker.get_slot("identity_failed") or not tracker.get_slot("verified"):
            return handoff(dispatcher, tracker, "verification_failed")
        if tracker.get_slot("elder_offer"):
            return [*handoff(dispatcher, tracker, "elderly_caller"), SlotSet("elder_offer", False)]
        id_number = caller_id(tracker)
        if id_number is None and (service == "card_loss_report" or service in QUERIES):
            # the sealed reference expired or its key changed (actions/caller_id.py): a person verifies again
            return [*handoff(dispatcher, tracker, "verification_failed"), SlotSet("verified", False)]
        try:
            if service == "card_loss_report":
                events = self._card_loss(dispatcher, tracker, id_number)
            elif service in QUERIES:
                dispatcher.utter_message(text=QUERIES[service](business_db(), id_number, tracker))
                events = []
            else:
                dispatcher.utter_message(text=prompts.HOW_CAN_I_HELP)
                return []
        except BackendError:
            dispatcher.utter_message(text=prompts.BACKEND_ERROR)
            return handoff(dispatcher, tracker, "backend_error")
        anything_else(dispatcher)
        return [*events, SlotSet("confirm", None), SlotSet("case_number", None)]

    @staticmethod
    def _card_loss(dispatcher: CollectingDispatcher, tracker: Tracker, id_number: str) -> list[EventType]:
        if not tracker.get_slot("confirm"):
            dispatcher.utter_message(text="好的，没有为您挂失。")
            return []
        db = business_db()
        person = db.citizen(id_number) or {}
        rule = loss_rule(person.get("city"))
        try:
            report = db.report_card_loss(id_number, rule.lapse_on(date.today()))
        except LookupError:
            dispatcher.utter_message(text="您名下没有可以挂失的社保卡，可能已经挂失过了。")
            return []
        reference = " ".join(report.reference[i : i + 4] for i in range(0, len(report.reference), 4))
        dispatcher.utter_message(
            text=f"已经为您办理社保卡临时挂失，卡片已停用。受理编号是{reference}。{rule.spoken(report.lapse_on)}"
        )
        return []
