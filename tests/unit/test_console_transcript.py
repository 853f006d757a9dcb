"""The dashboard's transcript lines and frustration flags, from stored turns."""

from __future__ import annotations

from voice_gateway.console.redis_backend import frustration, transcript


def heard(seq: int, text: str, confidence: float = 0.9) -> dict:
    return {"kind": "heard", "seq": seq, "caller": text, "confidence": confidence}


def answer(seq: int, text: str, intent: str | None) -> dict:
    return {"kind": "answer", "seq": seq, "bot": text, "intent": intent}


def test_a_caller_line_carries_the_intent_its_answer_understood() -> None:
    lines = transcript(
        [answer(0, "您好", "greet"), heard(1, "我社保卡丢了"), answer(1, "请说身份证号", "card_loss_report")]
    )
    assert [(x["speaker"], x["text"], x["intent"]) for x in lines] == [
        ("bot", "您好", "greet"),
        ("caller", "我社保卡丢了", "card_loss_report"),
        ("bot", "请说身份证号", "card_loss_report"),
    ]
    assert lines[1]["confidence"] == 0.9


def test_a_calm_call_is_not_flagged() -> None:
    assert frustration(transcript([heard(1, "养老金怎么查"), answer(1, "好的", "query_pension_payment")])) == []


def test_complaints_fallbacks_repetition_and_silence_are_flagged() -> None:
    turns = [
        heard(1, "你们太差了"),
        answer(1, "抱歉", "complain"),
        heard(2, "啊啊"),
        answer(2, "没听清", "nlu_fallback"),
        heard(3, "啊啊"),
        answer(3, "没听清", "nlu_fallback"),
        answer(3, "您好，您还在吗？请说出您要办理的业务。", None),
    ]
    assert frustration(transcript(turns)) == ["来电人投诉", "两次没听懂", "来电人在重复", "长时间沉默"]
