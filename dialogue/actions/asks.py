"""The forms' questions: one `action_ask_<slot>` per slot, from the table QUESTIONS.

Questions are actions rather than `utter_ask_*` responses so that each can carry the gateway's keypad
instructions (`CollectDigits` in hotline_domain/contract.py) and so that `action_ask_confirm` can read back the
caller's card.
"""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.caller_id import caller_id
from actions.common import business_db
from hotline_domain.business import BackendError
from hotline_domain.contract import CollectDigits

# slot -> (question, keypad instructions for the gateway or None)
QUESTIONS: dict[str, tuple[str, CollectDigits | None]] = {
    "id_number": (
        "请说出您的十八位身份证号码，也可以在电话按键上输入，字母叉请按星号键，以井号键结束。",
        CollectDigits(slot="id_number", max_digits=18, terminator="#", star_means="X", speech_allowed=True),
    ),
    "service_password": (
        "请在电话按键上输入六位服务密码，以井号键结束。",
        CollectDigits(slot="service_password", max_digits=6, terminator="#", speech_allowed=False, secret=True),
    ),
    "elder_offer": ("您年满六十五岁，可以优先为您转接人工客服。需要现在转人工吗？", None),
    "case_number": ("请说出您的仲裁案号，比如二零二四年第一百二十三号。", None),
    "confirm": ("您要挂失社保卡，挂失后卡片会马上停用。确认挂失吗？", None),
    "birth_year": ("请问您是哪一年出生的？", None),
    "birth_month": ("请问是几月份出生的？", None),
    "gender": ("请问您是男性还是女性？", None),
    "job_type": ("请问您是工人岗位，还是管理或者专业技术岗位？灵活就业也请告诉我。", None),
    "insured_one_year": ("第一个问题，失业前您和单位一起缴纳失业保险满一年了吗？", None),
    "involuntary": ("第二个问题，您是被单位解除合同、合同到期不续签这类非本人意愿离职的吗？", None),
    "registered_unemployed": ("第三个问题，您已经办理了失业登记，并且有求职要求吗？", None),
    "city": ("请问您想在哪个城市找工作？", None),
    "job_category": ("想找哪一类工作？比如司机、电工、厨师、保安、服务员，都可以的话请说不限。", None),
}


def ask(dispatcher: CollectingDispatcher, tracker: Tracker, slot: str) -> None:
    """Say the question for `slot` (with its keypad instructions, if any)."""
    question, keypad = QUESTIONS[slot]
    if slot == "confirm":
        question = _confirm_question(tracker) or question
    dispatcher.utter_message(text=question)
    if keypad:
        dispatcher.utter_message(json_message=keypad.to_payload())


def _confirm_question(tracker: Tracker) -> str | None:
    """Read back only the last four digits of the card that is about to be frozen."""
    try:
        card = business_db().active_card(caller_id(tracker) or "")
    except BackendError:
        return None
    if card is None:
        return None
    return f"您要挂失卡号尾号{card['card_no'][-4:]}的社保卡，挂失后卡片会马上停用。确认挂失吗？"


class _AskAction(Action):
    slot = ""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        ask(dispatcher, tracker, self.slot)
        return []


# one Action subclass per question: rasa_sdk registers every subclass it finds
ASK_ACTIONS = [type(f"ActionAsk_{slot}", (_AskAction,), {"slot": slot}) for slot in QUESTIONS]
