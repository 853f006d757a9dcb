"""Whole conversations through the real Rasa server, action server, Redis and business database."""

from __future__ import annotations

import json
import re

import pytest
import redis
import yaml
from sqlalchemy import create_engine, select

from hotline_domain import schema
from hotline_domain.contract import CollectDigits, HandoffQueue, HandoffReason, Hangup, HangupReason
from hotline_domain.seed import DEMO_CALLERS
from tests.conftest import Caller
from voice_gateway.config import PROJECT_ROOT

ZHANG, LI, WANG, LIU, CHEN = DEMO_CALLERS
RESPONSES_NOT_UNDERSTOOD = "抱歉，我没有听明白。您可以换个说法，比如查养老金、挂失社保卡、找工作，或者说转人工。"
DOMAIN_INTENTS = yaml.safe_load((PROJECT_ROOT / "dialogue" / "domain.yml").read_text(encoding="utf-8"))["intents"]
RESPONSES = yaml.safe_load((PROJECT_ROOT / "dialogue" / "domain.yml").read_text(encoding="utf-8"))["responses"]


def spoken_digits(digits: str) -> str:
    """An ID number as callers read it: digit by digit, 幺 for one, 两 for two (sometimes), 叉 for X."""
    words = dict(zip("0123456789X", ["洞", "幺", "两", "三", "四", "五", "六", "拐", "八", "九", "叉"], strict=True))
    return "".join(words[d] for d in digits)


def response_text(name: str) -> str:
    """The text of a domain response."""
    return RESPONSES[name][0]["text"]


async def verify(caller: Caller, who, *, by_keypad: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Answer the identity questions for a demo caller; the bot must ask for them in this order."""
    assert caller.turns[-1].collect is not None and caller.turns[-1].collect.slot == "id_number"
    turn = await (
        caller.keys(who.id_number + "#") if by_keypad else caller.say(f"身份证号是{spoken_digits(who.id_number)}")
    )
    assert f"尾号{who.id_number[-4:]}" in turn.text
    assert who.id_number not in turn.text  # never read back in full
    assert turn.collect == CollectDigits(
        slot="service_password", max_digits=6, terminator="#", speech_allowed=False, secret=True
    )
    turn = await caller.keys(who.password + "#")
    assert "身份验证通过" in turn.text


async def test_card_loss_report_from_greeting_to_goodbye(caller: Caller, stack) -> None:  # type: ignore[no-untyped-def]
    turn = await caller.say("喂你好")
    assert turn.text == response_text("utter_greet")
    turn = await caller.say("我社保卡丢了要挂失一下")
    assert "身份证号码" in turn.text
    await verify(caller, ZHANG)
    confirm = caller.turns[-1].text
    assert "确认挂失吗" in confirm and re.search(r"尾号\d{4}", confirm)
    turn = await caller.say("对，确认挂失")
    assert "已经为您办理社保卡临时挂失" in turn.text
    reference = re.search(r"受理编号是([\d ]+)。", turn.text).group(1).replace(" ", "")
    assert "有效期5天" in turn.text  # Beijing's rule in card_loss_rules.yaml
    assert turn.text.endswith("还有其他问题吗？")
    turn = await caller.say("没有了谢谢")
    assert turn.text == response_text("utter_goodbye")
    assert turn.hangup == Hangup(HangupReason.CALLER_DONE)
    engine = create_engine(stack.settings.db_url)
    with engine.connect() as conn:
        report = conn.execute(
            select(schema.card_loss_reports).where(schema.card_loss_reports.c.reference == reference)
        ).one()
        card = conn.execute(select(schema.cards).where(schema.cards.c.card_no == report.card_no)).one()
    assert report.id_number == ZHANG.id_number and card.status == "lost"


async def test_card_loss_report_declined_changes_nothing(caller: Caller) -> None:
    await caller.say("社保卡被偷了帮我冻结")
    await verify(caller, CHEN, by_keypad=True)
    turn = await caller.say("不对，先不挂了")
    assert "没有为您挂失" in turn.text


async def test_pension_contribution_with_id_keyed_in(caller: Caller) -> None:
    await caller.say("我想查一下我的养老保险交了多少年")
    await verify(caller, ZHANG, by_keypad=True)
    assert re.search(r"累计缴费\d+年", caller.turns[-1].text)


async def test_elderly_caller_is_offered_a_person_and_may_decline(caller: Caller) -> None:
    await caller.say("我这个月养老金怎么还没到账")
    await verify(caller, LI)
    assert "六十五岁" in caller.turns[-1].text and "转人工" in caller.turns[-1].text
    turn = await caller.say("不用了")
    assert "还在发放流程中" in turn.text and turn.handoff is None


async def test_elderly_caller_takes_the_offer(caller: Caller) -> None:
    await caller.say("查一下养老金发了没有")
    await verify(caller, LI)
    turn = await caller.say("好的")
    handoff = turn.handoff
    assert handoff is not None
    assert handoff.reason is HandoffReason.ELDERLY_CALLER and handoff.queue is HandoffQueue.SOCIAL_INSURANCE
    identity = handoff.identity  # `repeat` depends on whether this ID number called earlier in the session
    assert (identity.id_number, identity.verified, identity.senior) == ("310104********2422", True, True)


@pytest.mark.parametrize(
    ("ask", "who", "expect"),
    [
        ("我的社保卡做好了没有", WANG, "已经制好"),
        ("帮我查一下我的焊工证是不是真的", LIU, "焊工三级"),
    ],
)
async def test_queries_answer_from_the_database(caller: Caller, ask: str, who, expect: str) -> None:  # type: ignore[no-untyped-def]
    await caller.say(ask)
    await verify(caller, who)
    assert expect in caller.turns[-1].text


async def test_arbitration_progress_asks_for_the_case_number(caller: Caller) -> None:
    await caller.say("我的仲裁案子到哪一步了")
    await verify(caller, LIU)
    assert "案号" in caller.turns[-1].text
    turn = await caller.say("案号是深劳人仲字二零二四第一二三号")
    assert "已经作出裁决" in turn.text


async def test_three_failed_verifications_go_to_a_person(caller: Caller) -> None:
    await caller.say("查社保缴费记录")
    turn = await caller.say("身份证号是幺幺零幺零五幺九六八零五幺两幺两三幺")  # checksum wrong
    assert "校验不通过" in turn.text and "请再试一次" in turn.text
    turn = await caller.say(f"身份证号是{spoken_digits(ZHANG.id_number)}")
    turn = await caller.keys("000000#")
    assert "密码不正确" in turn.text
    turn = await caller.keys("111111#")
    handoff = turn.handoff
    assert handoff is not None and handoff.reason is HandoffReason.VERIFICATION_FAILED
    assert handoff.identity.verified is False
    wire = str(handoff.to_payload())
    assert ZHANG.id_number not in wire and ZHANG.password not in wire


async def test_a_spoken_password_is_refused(caller: Caller) -> None:
    await caller.say("查养老保险")
    await caller.say(f"身份证号是{spoken_digits(ZHANG.id_number)}")
    turn = await caller.say(f"密码是{spoken_digits(ZHANG.password)}")
    assert "请不要说出来" in turn.text and "身份验证通过" not in turn.text
    turn = await caller.keys(ZHANG.password + "#")
    assert "身份验证通过" in turn.text


async def test_password_digits_never_reach_the_tracker(caller: Caller) -> None:
    await caller.say("查养老保险缴费")
    await verify(caller, ZHANG)
    tracker = await caller.client.tracker(caller.sender)
    assert ZHANG.password not in str(tracker)


async def test_retirement_age_from_one_sentence(caller: Caller) -> None:
    turn = await caller.say("我是一九七六年一月出生的女工人，延迟退休以后我啥时候能退")
    assert "50岁7个月" in turn.text and "2026年8月" in turn.text


async def test_retirement_age_step_by_step(caller: Caller) -> None:
    turn = await caller.say("我哪年能退休")
    assert "哪一年出生" in turn.text
    turn = await caller.say("六六年")
    assert "几月份" in turn.text
    turn = await caller.say("一月份")
    assert "男性还是女性" in turn.text
    turn = await caller.say("男的")
    assert "60岁4个月" in turn.text and "2026年5月" in turn.text  # men are not asked the job type


@pytest.mark.parametrize(
    ("answers", "expect"),
    [(("是的", "对", "办了"), "符合领取失业保险金的条件"), (("交满了", "不是，我自己辞职的", "没有"), "主动辞职")],
)
async def test_unemployment_benefit_eligibility(caller: Caller, answers, expect: str) -> None:  # type: ignore[no-untyped-def]
    turn = await caller.say("失业金怎么领")
    assert "第一个问题" in turn.text
    for answer in answers:
        turn = await caller.say(answer)
    assert expect in turn.text


async def test_job_search_recommends_jobs_from_the_table(caller: Caller) -> None:
    turn = await caller.say("我在成都想找个司机的活")
    assert turn.text.startswith("为您找到成都") and "司机" in turn.text and "月薪" in turn.text
    turn = await caller.say("帮我找个工作")
    assert "哪个城市" in turn.text
    await caller.say("深圳")
    turn = await caller.say("都行")
    assert turn.text.startswith("为您找到深圳3个")


INFO_QUESTIONS = {
    "pension_certification": "养老金资格认证怎么做",
    "insurance_transfer": "换城市工作了社保怎么转过去",
    "work_injury": "上班受伤了怎么认定工伤",
    "flexible_employment_insurance": "个体户怎么交养老保险",
    "contribution_certificate": "怎么开社保缴费证明",
    "card_application": "社保卡坏了怎么补办",
    "card_activation": "新社保卡怎么激活",
    "electronic_card": "电子社保卡在哪里领",
    "unemployment_registration": "失业登记在哪里办",
    "vocational_training": "有没有免费的技能培训",
    "entrepreneurship_support": "创业担保贷款怎么申请",
    "career_guidance": "我不知道自己适合做什么工作",
    "talent_policy": "硕士毕业来这边有什么补贴",
    "professional_title": "中级职称怎么评",
    "personnel_archive": "我的档案在哪里",
    "labor_arbitration": "劳动仲裁怎么申请要带什么材料",
    "labor_contract": "公司不跟我签合同怎么办",
    "wage_arrears": "我想问问单位不按时发工资怎么处理",
}


@pytest.mark.parametrize("intent", sorted(INFO_QUESTIONS))
async def test_every_info_intent_is_answered(caller: Caller, intent: str) -> None:
    turn = await caller.say(INFO_QUESTIONS[intent])
    assert turn.texts == [response_text(f"utter_{intent}"), response_text("utter_anything_else")]


async def test_repeat_says_the_last_answer_again(caller: Caller) -> None:
    first = await caller.say("新社保卡怎么激活")
    again = await caller.say("你再说一遍，我没听清")
    assert again.texts == first.texts


async def test_a_question_inside_a_form_is_answered_then_the_form_resumes(caller: Caller) -> None:
    await caller.say("我社保卡丢了")
    turn = await caller.say("对了失业登记在哪里办啊")
    assert turn.texts[0] == response_text("utter_unemployment_registration")
    assert "身份证号码" in turn.text  # the form asks its question again
    await verify(caller, WANG)
    assert "确认挂失吗" in caller.turns[-1].text


async def test_stop_cancels_a_form(caller: Caller) -> None:
    await caller.say("我哪年退休")
    turn = await caller.say("算了不问了")
    assert "已经取消" in turn.text
    turn = await caller.say("你好")
    assert turn.text == response_text("utter_greet")


async def test_request_for_a_person_mid_form_hands_off_with_context(caller: Caller) -> None:
    await caller.say("社保卡丢了要挂失")
    await caller.say(f"身份证号是{spoken_digits(WANG.id_number)}")
    turn = await caller.say("我要转人工")
    handoff = turn.handoff
    assert handoff is not None
    assert handoff.reason is HandoffReason.CALLER_REQUEST and handoff.queue is HandoffQueue.CARD
    identity = handoff.identity
    assert (identity.id_number, identity.verified) == ("440106********3663", False)
    assert handoff.slots["service"] == "card_loss_report" and "社保卡挂失" in handoff.summary


async def test_complaint_goes_to_a_person(caller: Caller) -> None:
    turn = await caller.say("你们这个服务太差了我要投诉")
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.COMPLAINT and "抱歉" in turn.text


async def test_two_turns_not_understood_go_to_a_person(caller: Caller) -> None:
    turn = await caller.say("阿巴阿巴咕噜咕噜")
    assert turn.handoff is None and "没有听明白" in turn.text
    turn = await caller.say("咕噜叽里呱啦布拉布拉")
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.NOT_UNDERSTOOD


async def test_urgent_wage_arrears_goes_to_a_person(caller: Caller) -> None:
    turn = await caller.say("老板跑路了，我们三十多个工友半年工资都没拿到")
    assert turn.texts[0] == response_text("utter_wage_arrears")
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.URGENT_WAGE_ARREARS
    assert turn.handoff.queue is HandoffQueue.ARBITRATION


@pytest.mark.parametrize(("text", "hotline"), [("医保报销怎么弄", "12393"), ("公积金怎么提取", "12329")])
async def test_out_of_scope_redirects_to_the_right_hotline(caller: Caller, text: str, hotline: str) -> None:
    turn = await caller.say(text)
    assert hotline in turn.text


@pytest.mark.parametrize("text", ["", "   ", "啊" * 10000, "嗯" * 3000 + "社保卡丢了"])
async def test_bad_input_gets_a_short_answer_and_the_call_goes_on(caller: Caller, text: str) -> None:
    turn = await caller.say(text)
    assert turn.texts and len(turn.text) < 120
    assert turn.handoff is None
    turn = await caller.say("你好")
    assert turn.text == response_text("utter_greet")


@pytest.mark.parametrize(
    "text", ["😀😀😀🎉", "hello can you help me with my account", "asdf qwer zxcv 1234", "!!!???", "阿巴阿巴咕噜咕噜"]
)
async def test_nonsense_is_not_understood_and_reprompted(caller: Caller, text: str) -> None:
    turn = await caller.say(text)
    assert turn.text == RESPONSES_NOT_UNDERSTOOD
    assert turn.handoff is None


async def test_keypad_zero_reaches_a_person_and_unknown_keys_are_explained(caller: Caller) -> None:
    turn = await caller.keys("99#")
    assert "按键无效" in turn.text
    turn = await caller.keys("0")
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.KEYPAD_ZERO


async def test_capabilities_and_thanks(caller: Caller) -> None:
    assert (await caller.say("你都能办什么业务")).text == response_text("utter_capabilities")
    assert (await caller.say("好的谢谢你")).text == response_text("utter_thank")


async def test_after_repeat_or_not_understood_inside_a_form_the_next_answer_fills_it(caller: Caller) -> None:
    await caller.say("帮我找个工作")
    turn = await caller.say("你再说一遍")
    assert turn.texts == ["请问您想在哪个城市找工作？"]  # asked once, not twice
    turn = await caller.say("阿巴阿巴咕噜")
    assert turn.texts == ["不好意思，我没有听清楚。", "请问您想在哪个城市找工作？"]
    turn = await caller.say("北京")
    assert "哪一类工作" in turn.text
    turn = await caller.say("好的")  # not an answer to this question
    assert turn.texts[0] == "不好意思，这个回答我没法用。" and turn.text.count("哪一类工作") == 1
    turn = await caller.say("保安")
    assert turn.text.startswith("为您找到北京")


# A request too vague for the classifier to choose between neighbouring services: the caller is asked about the
# best guess, which the answer confirms or rejects.
HALF_UNDERSTOOD = "我的卡怎么弄"
NOT_A_REPROMPT = ("没有听明白", "请问您要办理什么业务", "您是要")


async def test_a_half_understood_request_is_confirmed_and_then_served(caller: Caller) -> None:
    turn = await caller.say(HALF_UNDERSTOOD)
    guess = re.fullmatch(r"您是要(.+)吗？", turn.text)
    assert guess and turn.handoff is None, turn.text
    turn = await caller.say("对")
    assert turn.texts and not any(cue in turn.text for cue in NOT_A_REPROMPT), turn.text  # served as understood
    item = json.loads(redis.Redis.from_url(caller.redis_url).lindex("hotline:nlu:guesses", 0))
    assert item["answer"] == "affirm" and item["conversation"] == caller.sender and item["text"] == HALF_UNDERSTOOD
    assert item["guess"] in DOMAIN_INTENTS


async def test_a_wrong_guess_is_asked_again_and_a_second_miss_goes_to_a_person(caller: Caller) -> None:
    assert (await caller.say(HALF_UNDERSTOOD)).text.startswith("您是要")
    turn = await caller.say("不是")
    assert turn.text == "好的，请您再说一下要办理什么业务。" and turn.handoff is None
    turn = await caller.say("咕噜叽里呱啦布拉布拉")
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.NOT_UNDERSTOOD
