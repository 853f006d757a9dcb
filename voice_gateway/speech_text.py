"""Text the agent says, made speakable: digits and symbols into Chinese words, before synthesis.

espeak-ng reads Arabic digits badly (12333 becomes 十二千三百三十三), so every number is written out the way a
12333 agent says it: hotline, phone, ID, card and reference numbers digit by digit (幺 for one), years digit by
digit (二零二六年), amounts, ages, months and days as quantities (三千五百元, 六十岁四个月, 十二月四日).
"""

from __future__ import annotations

import re

_DIGIT_WORDS = "零一二三四五六七八九"
_CODE_DIGITS = "洞幺两三四五六拐八九"  # not used for speech: callers use these, agents say 零一二 except 幺
_SPOKEN_DIGITS = "零幺二三四五六七八九"

# a number read digit by digit after these words, whatever its length
_CODE_CUES = r"(?:尾号|号码|编号|卡号|案号|受理编号|电话|热线|拨打|密码|验证码|工号)"
_SYMBOLS = {"＋": "加", "+": "加", "-": "杠", "—": "", "/": "或", "~": "到", "～": "到", "&": "和"}


def digits_spoken(digits: str) -> str:
    """Digit by digit, as agents read codes: 12333 -> 幺二三三三, X stays 叉."""
    return "".join(_SPOKEN_DIGITS[int(d)] if d.isdigit() else ("叉" if d in "Xx" else d) for d in digits)


def cardinal(n: int) -> str:
    """A quantity in Chinese words: 3500 -> 三千五百, 12 -> 十二, 20000 -> 两万, 105 -> 一百零五."""
    if n < 0:
        return "负" + cardinal(-n)
    if n == 0:
        return "零"
    if n >= 10**8:
        high, low = divmod(n, 10**8)
        return cardinal(high) + "亿" + (_with_zero(low, 10**7) if low else "")
    if n >= 10**4:
        high, low = divmod(n, 10**4)
        head = "两" if high == 2 else _below_10000(high, leading=True)
        return head + "万" + (_with_zero(low, 1000) if low else "")
    return _below_10000(n, leading=True)


def _with_zero(low: int, place: int) -> str:
    """The part below 万 or 亿, with 零 where a place is skipped: 一万零五百."""
    return ("零" if low < place else "") + _below_10000(low, leading=False)


def _below_10000(n: int, *, leading: bool) -> str:
    words, zero = [], False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit, n = divmod(n, value)
        if digit == 0:
            zero = bool(words)
            continue
        if zero:
            words.append("零")
            zero = False
        if unit == "十" and digit == 1 and not words and leading:
            words.append("十")  # 十二, not 一十二
        elif digit == 2 and unit in ("千", "百") and not words:
            words.append("两" + unit)
        else:
            words.append(_DIGIT_WORDS[digit] + unit)
    return "".join(words)


def decimal(text: str) -> str:
    whole, _, fraction = text.partition(".")
    spoken = cardinal(int(whole))
    return spoken + ("点" + "".join(_DIGIT_WORDS[int(d)] for d in fraction) if fraction else "")


_CODE_AFTER_CUE = re.compile(rf"({_CODE_CUES}\D{{0,3}}?)(\d[\d\s]*[\dXx]|\d)")
_YEAR = re.compile(r"(?<!\d)(\d{4})(?=\s*年)")
# five digits or more are a code (phone, ID, reference) unless a unit says they count something
_LONG_DIGITS = re.compile(
    r"(?<![\d.])\d{5,}[Xx]?(?:\s+\d+)*(?![\d.])(?!\s*(?:元|块|人(?!社)|个|岁|天|名|次|万|亿|平方|公里|米))"
)
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")
_PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[%％]")


def speakable(text: str) -> str:
    """Rewrite `text` so that a Mandarin synthesiser reads every number and symbol as an agent would say it."""
    text = _CODE_AFTER_CUE.sub(lambda m: m.group(1) + _code(m.group(2)), text)
    text = _PERCENT.sub(lambda m: "百分之" + decimal(m.group(1)), text)
    text = _YEAR.sub(lambda m: digits_spoken(m.group(1)).replace("幺", "一"), text)
    text = _LONG_DIGITS.sub(lambda m: _code(m.group()), text)
    text = _NUMBER.sub(lambda m: decimal(m.group()), text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    return re.sub(r"\s+", "，", text.strip())


def _code(digits: str) -> str:
    """A code in groups: spaces between groups become short pauses."""
    return "，".join(digits_spoken(group) for group in digits.split())


def sentences(text: str) -> list[str]:
    """Split an answer after each sentence's final punctuation, so that its first sentence can be spoken early."""
    pieces = [p for p in re.findall(r"[^。！？；!?;]+[。！？；!?;]*|[。！？；!?;]+", text) if p.strip()]
    return pieces or [text]
