"""Spoken Chinese numbers, as callers say them and recognisers write them, turned into digits.

Callers read long numbers digit by digit (幺 for 1, 两 for 2, 洞 for 0, 拐 for 7, 勾 for 9, 叉 for X)
and say quantities with units (两千零二十四, 十五年). Recognisers write either form, or a mix.
"""

from __future__ import annotations

import re

DIGIT_CHARS: dict[str, str] = {
    "零": "0",
    "〇": "0",
    "洞": "0",
    "○": "0",
    "Ｏ": "0",
    "一": "1",
    "幺": "1",
    "妖": "1",
    "腰": "1",
    "壹": "1",
    "二": "2",
    "两": "2",
    "俩": "2",
    "贰": "2",
    "三": "3",
    "叁": "3",
    "四": "4",
    "肆": "4",
    "五": "5",
    "伍": "5",
    "六": "6",
    "陆": "6",
    "七": "7",
    "拐": "7",
    "柒": "7",
    "八": "8",
    "捌": "8",
    "九": "9",
    "勾": "9",
    "玖": "9",
}
DIGIT_CHARS.update({chr(ord("０") + i): str(i) for i in range(10)})
DIGIT_CHARS.update({str(i): str(i) for i in range(10)})

X_WORDS = ("艾克斯", "叉", "X", "x", "Ｘ", "ｘ", "*")

_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}

_digit_class = "".join(sorted(DIGIT_CHARS))
# separators people put between digit groups when speaking or typing
_SEP = r"[\s,，、.。\-—杠]*"
_DIGIT_RUN = re.compile(rf"[{_digit_class}](?:{_SEP}[{_digit_class}])*")
_QUANTITY = re.compile(rf"[{_digit_class}十拾百佰千仟万亿]+")
_VALUE_CHARS = set(_digit_class) | set(_UNITS) | set(_BIG_UNITS)


def digits_of(text: str) -> str:
    """Map every digit-like character in `text` to an Arabic digit, dropping everything else."""
    return "".join(DIGIT_CHARS.get(ch, "") for ch in text)


def digit_runs(text: str, *, allow_x: bool = False) -> list[tuple[str, int, int]]:
    """Find digit-by-digit runs in `text`: (digits, start, end).

    With `allow_x` a trailing X (叉, X, *) is kept as "X", for ID numbers.
    """
    runs: list[tuple[str, int, int]] = []
    for m in _DIGIT_RUN.finditer(text):
        digits, end = digits_of(m.group()), m.end()
        if allow_x:
            rest = text[end:].lstrip(" ,，、-")
            for word in X_WORDS:
                if rest.startswith(word):
                    digits += "X"
                    end = text.index(word, end) + len(word)
                    break
        runs.append((digits, m.start(), end))
    return runs


def quantity_value(word: str) -> int | None:
    """Value of a spoken quantity: 十五 -> 15, 两千零二十四 -> 2024, 一九七零 -> 1970, 3万5 -> None.

    Digit-only words are read digit by digit. Returns None when `word` is not a number.
    """
    if not word or any(ch not in _VALUE_CHARS for ch in word) or word[0] in "百佰千仟万亿":
        return None
    if all(ch in DIGIT_CHARS for ch in word):
        return int(digits_of(word))
    total, section, digit = 0, 0, None
    for ch in word:
        if ch in DIGIT_CHARS and DIGIT_CHARS[ch] == "0":  # 零 only holds a place: 两千零二
            continue
        if ch in DIGIT_CHARS:
            if digit is not None:  # two digits in a row inside a unit number: 一百二三 is not a number we read
                return None
            digit = int(DIGIT_CHARS[ch])
        elif ch in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
        else:  # 万, 亿
            section += digit or 0
            total = (total + section) * _BIG_UNITS[ch]
            section, digit = 0, None
    return total + section + (digit or 0)


def to_arabic(text: str, *, min_run: int = 3) -> str:
    """Rewrite spoken numbers in `text` with Arabic digits, leaving words alone.

    Digit-by-digit runs of at least `min_run` characters become digit strings (幺三八 -> 138);
    quantities with units become their value (十五年 -> 15年, 两千零二十四年 -> 2024年);
    a single digit before a counter word becomes a digit (三个月 -> 3个月, 五月 -> 5月).
    """

    def quantity(m: re.Match[str]) -> str:
        word = m.group()
        has_unit = any(ch in _UNITS or ch in _BIG_UNITS for ch in word)
        if has_unit:
            if word == "十" and text[m.end() : m.end() + 1] == "分":  # 十分 is "very"
                return word
            value = quantity_value(word)
            return word if value is None else str(value)
        if len(word) >= min_run or word.isascii():
            return digits_of(word)
        follower = text[m.end() : m.end() + 2]
        if len(word) == 1 and re.match(r"(个月|月|年|日|号|岁|元|块|天|周|点)", follower):
            if word in "幺洞拐勾妖腰俩":  # code words are for digit strings, not quantities
                return word
            return digits_of(word)
        # 七零年 is a year, but 两三年 is a span
        if len(word) == 2 and follower.startswith("年") and word[0] in "零〇洞五六七八九" and word[1] in DIGIT_CHARS:
            return digits_of(word)
        return word

    return _QUANTITY.sub(quantity, text)
