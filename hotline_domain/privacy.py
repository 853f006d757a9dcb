"""One redaction for every way caller words leave a call: logs, Redis, events, pages, handoff payloads (PIPL).

Caller text comes as speech recognition writes it: Arabic, full-width or spoken digits (一二三, 幺 for 1, 洞 for 0,
两 for 2, 拐, 勾), with spaces, dashes, dots, commas, 杠 or a hesitation (嗯, 呃) between groups. A *number* here
is such a run of digits with separators; it is judged on its digits, whatever the separators.

The convention, one for everything that masks:

| what                                           | example                     | masked               |
| ---------------------------------------------- | --------------------------- | -------------------- |
| 18-character ID number (also spoken, with X)   | 幺幺洞幺洞五幺九六八洞五…    | 110105********1230   |
| any other run of 15+ digits (bank card, old or | 6222 0212 3456 7890         | ************7890     |
| misheard ID): all but the last 4, 20+: all     |                             |                      |
| mobile, with or without +86 / 0086 / 86        | +86 138-1234-5678           | 138****5678          |
| landline with area code                        | (0592)1234567               | 0592-***4567         |
| password, PIN, code after 密码/口令/验证码       | 我的密码呢是一三五七九零      | 我的密码呢是******   |
| a shorter number after an ID/phone/card cue,   | 电话是62345678, 一三五七九零 | ********, ******     |
| a spoken digit string of 6+, a bare 6 digits   |                             |                      |

The ID keeps its region and last four, as `IdNumber.masked` and the agent's read-back (尾号1230) do; a mobile keeps
what China's apps show. A password keeps nothing, not even its length. Everything else in the text stays as it
was: dates (2024年3月5日, 2024-03-05), amounts (3500元, 13,800,000元), years (2019、2020年), ages, 12333, four
digits after 尾号/后四位 (the hint that is meant to be seen), and case and reference numbers, whether said with
units (二零二四年第一百二十三号) or digit by digit after 案号/受理号/编号. Shapes win over cues: a mobile number
after 编号 is still masked.

`redact_partial` is for streaming partial transcripts, where a number may still be half read out: it also masks
any 4+ digits after an ID, phone, card or password cue, and any 6+ digits anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hotline_domain.numbers import DIGIT_CHARS

__all__ = ["mask_card", "mask_id", "mask_landline", "mask_phone", "redact", "redact_data", "redact_partial"]

PASSWORD_MASK = "******"

_DIGIT_CLASS = re.escape("".join(sorted(DIGIT_CHARS)))
_TOKEN = re.compile(f"[{_DIGIT_CLASS}]+")
# what people and recognisers put between digit groups: at most three in a row
_SEP = r"[\s,，、.．。\-－—–_()（）杠嗯呃啊额]{1,3}"
_NUMBER = re.compile(f"[{_DIGIT_CLASS}]+(?:{_SEP}[{_DIGIT_CLASS}]+)*")
_X_TAIL = re.compile(r"[\s\-－—,，、]{0,2}(?:艾克斯|[XxＸｘ叉])(?![A-Za-z])")
_ALL_DIGITS = "".join(DIGIT_CHARS)
_SPOKEN_DIGITS = {ch for ch in DIGIT_CHARS if not ch.isascii() and not "０" <= ch <= "９"}

_ID18 = re.compile(r"\d{6}(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dX]|\d{17}X")
_MOBILE = re.compile(r"(?:0086|86)?(1[3-9]\d{9})")
_LANDLINE = re.compile(r"(?:0086|86)?(0(?:10|2\d|[3-9]\d{2})\d{7,8})|(?:0086|86)((?:10|2\d|[3-9]\d{2})\d{7,8})")
_THOUSANDS = re.compile(r"\d{1,3}(?:[,，]\d{3})+(?:\.\d{1,4})?")  # money has a few decimals, not 15
_YEAR = re.compile(r"(?:19[5-9]\d|20[0-4]\d)")
_MONTH_DAY = re.compile(r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")

_CUES = {
    "password": "服务密码 查询密码 密码 口令 验证码 校验码 动态码 PIN码 pin码 PIN pin password passwd pwd",
    "id": "公民身份号码 身份证号码 身份证号 身份证 证件号码 证件号 身份号码 社会保障号码 社保号",
    "card": "银行卡号 银行卡 社保卡号 卡号 账号 帐号",
    "phone": "手机号码 手机号 手机 电话号码 联系电话 电话 座机 联系方式 号码",
    # not personal data: what follows is read out digit by digit, and may stay
    "reference": "受理编号 受理号 案件编号 案件号 案号 编号 工单号 订单号 流水号",
}
_CUE_KIND = {word: kind for kind, words in _CUES.items() for word in words.split()}
_CUE = re.compile("|".join(sorted(map(re.escape, _CUE_KIND), key=len, reverse=True)))
_PASSWORD_AFTER = re.compile(r"^[^。？！?!；;\n]{0,6}?(?:密码|口令|验证码)")
_SENTENCE_END = re.compile(r"[。？！?!；;\n]")
_TAIL_HINT = re.compile(r"(?:尾号|后四位|后4位|末四位|末4位)[是为：:\s]{0,2}$")
_UNIT_AFTER = re.compile(r"\s?[年月日号元块岁个次天万千百位分秒%％点周]")
_FILLER_ONLY = re.compile(r"[\s,，。.！!？?嗯呃啊额哦是就我的吧呢]*")
# characters between a cue and its number, in the same sentence: 身份证号是110105，出生年月是19680512
_CUE_WINDOW = 24
_STARS_AFTER = re.compile(r"[-－]?\*")
_NUMBER_OR_MASK = re.compile(f"[+＋(（]?[{_DIGIT_CLASS}*Xx]+(?:{_SEP}[+＋(（]?[{_DIGIT_CLASS}*Xx]+)*")
_LONGEST = 23  # digits in the longest number with a shape: 0086 and a 19-digit card
_MIN_AFTER_CUE = {"password": 4, "id": 6, "card": 6, "phone": 7, "reference": 99}


def mask_id(value: str) -> str:
    """110105********1234 style: region kept, birth date and sequence hidden but the last four."""
    return value[:6] + "*" * (len(value) - 10) + value[-4:] if len(value) > 10 else "*" * len(value)


def mask_phone(value: str) -> str:
    """138****5678: a mobile number as apps show it."""
    return value[:3] + "****" + value[-4:] if len(value) >= 11 else "*" * len(value)


def mask_landline(value: str) -> str:
    """0592-***4567: the area code (with its 0) and the last four of the local number."""
    area = 3 if value.startswith(("010", "02")) else 4
    local = value[area:]
    return value[:area] + "-" + "*" * (len(local) - 4) + local[-4:]


def mask_card(value: str) -> str:
    """************7890: a bank card or another long number, all but the last four hidden (20+ digits: all)."""
    return "*" * (len(value) - 4) + value[-4:] if len(value) <= 19 else "*" * len(value)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    digits: str  # Arabic digits; "X" for an ID's check character
    spoken: bool  # written with 一二三/幺/洞..., not Arabic digits


def _numbers(text: str) -> list[list[_Token]]:
    """Every number in `text` as its digit groups, with an ID's trailing X as a token of its own."""
    found = []
    for m in _NUMBER.finditer(text):
        start, end = m.span()
        # 2024-03-05两次, 3500三个: a spoken digit after Arabic ones, before a measure word, counts, not reads out
        spoken_run = text[end - 2 : end - 1] in _SPOKEN_DIGITS
        run = end - len(text[start:end].rstrip(_ALL_DIGITS)) - start  # digits in a row at the end
        long_run = run >= 15  # 15 digits in a row stay one number, whatever follows: no unit ends a card number
        if text[end - 1] in _SPOKEN_DIGITS and not (spoken_run or long_run) and _UNIT_AFTER.match(text, end):
            end -= 1
            while end > start and text[end - 1] not in DIGIT_CHARS:
                end -= 1
            if end == start:
                continue
        tokens = [
            _Token(
                t.start(),
                t.end(),
                "".join(DIGIT_CHARS[ch] for ch in t.group()),
                any(ch in _SPOKEN_DIGITS for ch in t.group()),
            )
            for t in _TOKEN.finditer(text, start, end)
        ]
        x = _X_TAIL.match(text, end)
        if x and 14 <= sum(len(t.digits) for t in tokens) <= 17:
            tokens.append(_Token(x.start(), x.end(), "X", False))
        found.append(tokens)
    return found


def _calendar(tokens: list[_Token]) -> bool:
    """Only years and dates, listed: 2019、2020、2021年 or 2024-03-05，2024-04-05 is no card number."""
    i, items = 0, 0
    while i < len(tokens):
        head = tokens[i].digits
        month_day = "".join(t.digits.zfill(2) for t in tokens[i + 1 : i + 3] if len(t.digits) <= 2)
        if len(head) == 8 and _YEAR.fullmatch(head[:4]) and _MONTH_DAY.fullmatch(head[4:]):
            i += 1  # 20240305
        elif len(head) == 4 and _YEAR.fullmatch(head) and len(month_day) == 4 and _MONTH_DAY.fullmatch(month_day):
            i += 3  # 2024-03-05
        elif len(head) == 4 and _YEAR.fullmatch(head):
            i += 1  # 2019
        else:
            return False
        items += 1
    return items >= 2


def _amount(text: str, number: list[_Token]) -> bool:
    """13,800,000元: thousands grouped by commas and a currency after it is money, whatever its digits."""
    written = text[number[0].start : number[-1].end]
    return bool(_THOUSANDS.fullmatch(written)) and text[number[-1].end : number[-1].end + 1] in ("元", "块", "万")


def _classify(digits: str) -> str | None:
    if _ID18.fullmatch(digits):
        return "id"
    if _MOBILE.fullmatch(digits):
        return "mobile"
    if _LANDLINE.fullmatch(digits):
        return "landline"
    if 16 <= len(digits) <= 19 and digits.isdigit():
        return "card"
    return None


def _masked(kind: str, digits: str) -> str:
    if kind == "id":
        return mask_id(digits)
    if kind == "mobile":
        match = _MOBILE.fullmatch(digits) or _MOBILE.search(digits)
        return mask_phone(match.group(1) if match else digits)
    if kind == "landline":
        match = _LANDLINE.fullmatch(digits)
        national = (match.group(1) or "0" + match.group(2)) if match else digits
        return mask_landline(national)
    if kind in ("card", "long"):
        return mask_card(digits)
    if kind == "password":
        return PASSWORD_MASK
    return "*" * len(digits)  # a cue-led or spoken number: nothing kept


def _cue_before(text: str, start: int, window: int) -> str | None:
    """The kind of the last cue shortly before `start` in the same sentence, if any."""
    # numbers and masks count as one character each (a 。 between digit groups is no sentence end): masking
    # earlier numbers moves no cue in or out of the window
    reach = 2 * window
    while True:
        collapsed = _NUMBER_OR_MASK.sub("0", text[max(0, start - reach) : start])
        before = _SENTENCE_END.split(collapsed)[-1]
        if len(before) >= window or len(before) < len(collapsed) or reach >= start:
            break
        reach *= 4  # long numbers in the way: look further back
    before = before[-window:]
    cues = list(_CUE.finditer(before))
    return _CUE_KIND[cues[-1].group()] if cues else None


def _span(text: str, tokens: list[_Token], whole: list[_Token]) -> tuple[int, int]:
    """Where the masked tokens sit in `text`; a leading + or ( of the whole number goes with them."""
    start, end = tokens[0].start, tokens[-1].end
    if (
        tokens[0] is whole[0]
        and start > 0
        and text[start - 1] in "+＋(（"
        and text[start - 2 : start - 1] not in DIGIT_CHARS
    ):
        start -= 1
    return start, end


def _replacements(text: str, *, partial: bool) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for number in _numbers(text):
        if _calendar(number) or _amount(text, number):
            continue
        # what a mask left in view (110105********1230, 0592-***4567) stays as it is and joins no other group
        done = [_mask_remnant(text, t) for t in number]
        # 1. the longest run of whole groups that is an ID, a phone or a card, from left to right
        i = 0
        while i < len(number):
            best, digits = None, ""
            for j in range(i if not done[i] else len(number), len(number)):
                digits += number[j].digits
                if len(digits) > _LONGEST or (j > i and done[j]):
                    break
                kind = _classify(digits)
                if kind and not (kind == "card" and _calendar(number[i : j + 1])):
                    best = (j, kind, digits)
            if best is None:
                i += 1
                continue
            j, kind, digits = best
            out.append((*_span(text, number[i : j + 1], number), _masked(kind, digits)))
            done[i : j + 1] = [True] * (j + 1 - i)
            i = j + 1
        # 2. what is left, judged as a whole
        i = 0
        while i < len(number):
            if done[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(number) and not done[j + 1]:
                j += 1
            rest = number[i : j + 1]
            masked = _judge(text, rest, number, partial=partial)
            if masked is not None:
                out.append(masked)
            i = j + 1
    return out


def _mask_remnant(text: str, token: _Token) -> bool:
    """The region, area code or last digits a mask keeps: at most 6 digits right next to its stars."""
    return len(token.digits) <= 6 and (
        text[token.start - 1 : token.start] == "*" or bool(_STARS_AFTER.match(text, token.end))
    )


def _judge(text: str, rest: list[_Token], number: list[_Token], *, partial: bool) -> tuple[int, int, str] | None:
    """Mask for a number (or what is left of one) that is no ID, phone or card by its shape alone."""
    digits = "".join(t.digits for t in rest)
    start, end = _span(text, rest, number)
    if _calendar(rest):
        return None
    if len(digits) >= 15:  # misheard IDs, cards read oddly: whatever it is
        return start, end, _masked("long", digits)  # an X kept in place: the digits after it never join the tail
    if len(digits) >= 12:
        mobile = _MOBILE.search(digits)
        if mobile:  # a mobile number with a digit too many around it
            at, to = mobile.span()
            offset, inside = 0, []
            for t in rest:
                if offset < to and offset + len(t.digits) > at:
                    inside.append(t)
                offset += len(t.digits)
            return (*_span(text, inside, number), _masked("mobile", mobile.group()))
    if text[end : end + 1] == "*" or text[start - 1 : start] == "*":
        return None  # masked already: 138****5678
    if len(digits) == 4 and _TAIL_HINT.search(text[max(0, start - 8) : start]):
        return None  # 尾号1230: the hint meant to be seen
    x = _X_TAIL.match(text, end)  # a unit after an X the number did not take (masking changes what it takes)
    unit = bool(_UNIT_AFTER.match(text, x.end() if x else end))
    cue = _cue_before(text, start, _CUE_WINDOW * 2 if partial else _CUE_WINDOW)
    if cue and not unit and len(digits) >= (4 if partial and cue != "reference" else _MIN_AFTER_CUE[cue]):
        return start, end, _masked("password" if cue == "password" else "cue", digits)
    if not unit and len(digits) >= 4 and _PASSWORD_AFTER.match(text[end:]):
        return start, end, PASSWORD_MASK  # 135790是我的密码
    if cue != "reference" and len(digits) >= 6 and any(t.spoken for t in rest):
        return start, end, _masked("spoken", digits)  # nobody reads an amount digit by digit
    if cue != "reference" and len(digits) == 6 and _FILLER_ONLY.fullmatch(text[:start] + text[end:]):
        return start, end, PASSWORD_MASK  # a bare six digits as the whole answer: a service password
    if partial and len(digits) >= 6 and not unit:
        return start, end, _masked("partial", digits)
    return None


def _apply(text: str, replacements: list[tuple[int, int, str]]) -> str:
    for start, end, masked in sorted(replacements, reverse=True):
        text = text[:start] + masked + text[end:]
    return text


def redact(text: str) -> str:
    """Caller (or bot) text with ID, phone, bank card numbers and passwords masked, for logs, Redis and pages."""
    return _apply(text, _replacements(text, partial=False)) if text else text


def redact_partial(text: str) -> str:
    """`redact` for a partial transcript: also 4+ digits after a cue and 6+ digits anywhere, half-read numbers."""
    return _apply(text, _replacements(text, partial=True)) if text else text


def redact_data(value: Any) -> Any:
    """Every string in a JSON-like value (dicts, lists) redacted; keys and other values as they were."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value
