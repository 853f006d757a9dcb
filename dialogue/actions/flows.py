"""Guided flows: retirement age, unemployment benefit eligibility, job search."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import prompts
from actions.common import anything_else, business_db, handoff, yes_no_answer
from hotline_domain.business import BackendError
from hotline_domain.retirement import statutory_retirement

_RETIREMENT_SLOTS = ("birth_year", "birth_month", "gender", "job_type")


def _single(value: Any) -> Any:
    return value[-1] if isinstance(value, list) else value


class ValidateRetirementForm(FormValidationAction):
    def name(self) -> str:
        return "validate_retirement_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("gender") == "male":  # only women's original age depends on the job
            return [s for s in domain_slots if s != "job_type"]
        return domain_slots

    def validate_birth_year(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        year = int(float(_single(value)))
        if not 1940 <= year <= 2010:
            dispatcher.utter_message(text="这个出生年份好像不对，请再说一遍，比如一九七零年。")
            return {"birth_year": None}
        return {"birth_year": year}

    def validate_birth_month(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        month = int(float(_single(value)))
        return {"birth_month": month if 1 <= month <= 12 else None}

    def validate_gender(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"gender": _single(value)}

    def validate_job_type(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"job_type": _single(value)}


class ActionRetirementAge(Action):
    def name(self) -> str:
        return "action_retirement_age"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        year, month = tracker.get_slot("birth_year"), tracker.get_slot("birth_month")
        gender, job_type = tracker.get_slot("gender"), tracker.get_slot("job_type")
        result = statutory_retirement(int(year), int(month), gender, job_type)
        dispatcher.utter_message(text=result.spoken())
        anything_else(dispatcher)
        return [SlotSet(name, None) for name in _RETIREMENT_SLOTS]


_UNEMPLOYMENT_SLOTS = ("insured_one_year", "involuntary", "registered_unemployed")


class ValidateUnemploymentForm(FormValidationAction):
    """Read the three eligibility answers with cues that fit each question (办了, 被裁了, 交满了)."""

    def name(self) -> str:
        return "validate_unemployment_form"

    def extract_insured_one_year(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return yes_no_answer(tracker, "insured_one_year")

    def extract_involuntary(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return yes_no_answer(tracker, "involuntary")

    def extract_registered_unemployed(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return yes_no_answer(tracker, "registered_unemployed")


class ActionUnemploymentBenefit(Action):
    """Social Insurance Law art. 45: all three conditions must hold."""

    def name(self) -> str:
        return "action_unemployment_benefit"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        insured, involuntary, registered = (tracker.get_slot(s) for s in _UNEMPLOYMENT_SLOTS)
        if insured and involuntary and registered:
            text = (
                "按您说的情况，符合领取失业保险金的条件。可以在电子社保卡、掌上12333或者当地人社APP上直接申领，"
                "也可以到参保地的公共就业服务机构办理。缴费满一年不满五年的，最长可以领十二个月。"
            )
        elif not insured:
            text = (
                "失业前单位和个人缴纳失业保险要满一年，才能领失业保险金。不满一年的，可以咨询当地是否有失业补助政策。"
            )
        elif not involuntary:
            text = "主动辞职属于本人意愿中断就业，一般不能领失业保险金。"
        else:
            text = "其他条件您都符合，先到常住地办理失业登记就可以申领了，失业登记可以在人社APP或者社区服务站办理。"
        dispatcher.utter_message(text=text)
        anything_else(dispatcher)
        return [SlotSet(name, None) for name in _UNEMPLOYMENT_SLOTS]


_ANY_JOB = re.compile(r"都行|都可以|随便|不限|什么都|啥都|无所谓|没要求")


class ValidateJobSearchForm(FormValidationAction):
    def name(self) -> str:
        return "validate_job_search_form"

    def extract_job_category(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if tracker.get_slot("requested_slot") == "job_category" and _ANY_JOB.search(
            tracker.latest_message.get("text") or ""
        ):
            return {"job_category": "不限"}
        return {}

    def validate_city(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"city": _single(value)}

    def validate_job_category(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        return {"job_category": _single(value)}


class ActionJobSearch(Action):
    def name(self) -> str:
        return "action_job_search"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        city, category = tracker.get_slot("city"), tracker.get_slot("job_category")
        try:
            jobs = business_db().jobs(city, category)
        except BackendError:
            dispatcher.utter_message(text=prompts.BACKEND_ERROR)
            return handoff(dispatcher, tracker, "backend_error")
        kind = "" if category in (None, "不限") else category
        if not jobs:
            dispatcher.utter_message(text=f"暂时没有查到{city}的{kind or ''}岗位，您可以换个城市或者工种再试试。")
        else:
            spoken = "；".join(
                f"{j['employer']}招{j['title']}，在{j['district']}，月薪{j['salary_min']}到{j['salary_max']}元"
                for j in jobs
            )
            dispatcher.utter_message(
                text=f"为您找到{city}{len(jobs)}个{kind}岗位：{spoken}。想报名可以到当地公共就业服务机构或者人社APP上投递。"
            )
        anything_else(dispatcher)
        return [SlotSet("city", None), SlotSet("job_category", None)]
