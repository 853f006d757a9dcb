"""Yes or no from a spoken answer to a yes/no question, with cues that fit the question.

Intent classification of two-character answers (办了, 交满了, 被裁了) is unreliable; a closed list of cues for the
question asked is not. Negative cues are checked before positive ones (不是 contains 是).
"""

from __future__ import annotations

import re

_CANCEL = re.compile(r"算了|取消|不办了|不问了|不查了|不弄了|别问了|不用办了|不挂了吧")
_ALWAYS_YES = re.compile(r"没错|没问题|不错|可不是")
_NO = re.compile(r"不是|不对|没有|没|不用|不要|不需要|不满|不够|不行|不想|别|否|错了|算了|^不")
_YES = re.compile(r"是|对|有|满|可以|好|行|确认|要|嗯|中|妥|当然|肯定|OK|ok")

# cues for one question that say more than yes or no
_QUESTION_CUES: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "involuntary": (
        re.compile(r"辞退|开除|裁员|裁了|被炒|合同到期|倒闭|解除|让我走|不续签|劝退|破产|关门"),
        re.compile(r"自己辞|主动辞|我辞的|主动离职|自己不干|自己走|跳槽|自离"),
    ),
    "insured_one_year": (
        re.compile(r"满了|超过一年|一年多|[两三四五六七八九十\d]+年|好几年|交满|缴满"),
        re.compile(r"不满|不到一年|半年|几个月|[一二三四五六七八九十\d]+个月|刚交|没交够"),
    ),
    "registered_unemployed": (
        re.compile(r"登记了|办了|已经办|已经登记|登记过|办过"),
        re.compile(r"没登记|还没|没办|不知道要登记|没去"),
    ),
}


def is_cancel(text: str) -> bool:
    """The caller calls the whole thing off (算了, 不办了): that is not a no to the question."""
    return bool(_CANCEL.search(text))


def question_cue(text: str, question: str | None) -> bool | None:
    """The answer to `question` when the words say it specifically (办了, 被裁了, 交满了), else None."""
    if question not in _QUESTION_CUES or is_cancel(text):
        return None
    yes, no = _QUESTION_CUES[question]
    if no.search(text):
        return False
    if yes.search(text):
        return True
    return None


def yes_no(text: str, question: str | None = None) -> bool | None:
    """True, False, or None when `text` does not answer the yes/no question."""
    text = text.strip()
    if not text or is_cancel(text):
        return None
    specific = question_cue(text, question)
    if specific is not None:
        return specific
    if _ALWAYS_YES.search(text):
        return True
    if _NO.search(text):
        return False
    if _YES.search(text):
        return True
    return None
