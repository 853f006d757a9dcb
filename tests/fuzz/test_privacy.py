"""The privacy redaction fuzzed with caller wordings as recognisers write them, mutated and built from parts.

Properties, for `redact` and `redact_partial` alike: never raises; idempotent (masking masked text changes
nothing, so text masked twice on its way, in the turns and again in the events, reads the same); the output
never holds a run of 15 or more digits (Arabic, full-width or spoken: whatever `DIGIT_CHARS` reads as a digit).
"""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline_domain.numbers import DIGIT_CHARS
from hotline_domain.privacy import redact, redact_partial
from tests.fuzz.harness import Harness, budget, corpus_lines, explicit

WORDINGS = corpus_lines("privacy", "wordings.txt")
REGRESSIONS = corpus_lines("privacy", "regressions.txt")  # what this harness found, kept as explicit examples
LONG_RUN = re.compile(f"[{re.escape(''.join(DIGIT_CHARS))}]{{15,}}")

PRIVACY = Harness("privacy-redaction")

ARABIC = "0123456789"
SPOKEN = "零一二三四五六七八九幺两洞拐勾"
PARTS = [
    "身份证号",
    "身份证号码是",
    "证件号",
    "手机号",
    "电话是",
    "联系电话",
    "座机",
    "银行卡号",
    "卡号",
    "密码是",
    "服务密码",
    "口令",
    "验证码",
    "PIN",
    "编号",
    "受理号",
    "案号",
    "尾号",
    "后四位",
    "是",
    "的",
    "我",
    "嗯",
    "呃",
    "啊",
    "就是",
    "吧",
    "，",
    "。",
    "、",
    " ",
    "-",
    "－",
    "—",
    ".",
    "(",
    ")",
    "（",
    "）",
    "+",
    "＋",
    "+86",
    "0086",
    "86",
    "X",
    "x",
    "叉",
    "艾克斯",
    "*",
    "****",
    "年",
    "月",
    "日",
    "号",
    "元",
    "块",
    "岁",
    "个",
    "万",
    "%",
    "点",
    "？",
    "！",
    "\n",
    "；",
]


def digits(rng: random.Random) -> str:
    n = rng.choice((1, 2, 3, 4, 4, 6, 6, 7, 8, 11, 11, 12, 15, 16, 17, 18, 18, 19, 20, 24))
    style = rng.random()
    if style < 0.5:
        alphabet = ARABIC
    elif style < 0.8:
        alphabet = SPOKEN
    elif style < 0.9:
        alphabet = "０１２３４５６７８９"
    else:
        alphabet = ARABIC + SPOKEN
    return "".join(rng.choice(alphabet) for _ in range(n))


def built(rng: random.Random) -> str:
    """A caller sentence from parts: cues, separators, fillers and digit runs in any order."""
    return "".join(digits(rng) if rng.random() < 0.35 else rng.choice(PARTS) for _ in range(rng.randrange(1, 16)))


def mutated(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.choice((1, 2, 3, 5))):
        at = rng.randrange(len(chars) + 1)
        op = rng.randrange(6)
        if op == 0:
            chars[at:at] = list(digits(rng))
        elif op == 1:
            chars[at:at] = list(rng.choice(PARTS))
        elif op == 2 and chars:
            del chars[at : at + rng.choice((1, 2, 5))]
        elif op == 3 and chars:  # a digit said another way
            i = rng.randrange(len(chars))
            if chars[i] in DIGIT_CHARS:
                same = [c for c, d in DIGIT_CHARS.items() if d == DIGIT_CHARS[chars[i]]]
                chars[i] = rng.choice(same)
        elif op == 4 and chars:  # a part heard twice
            piece = chars[at : at + rng.choice((2, 4, 8))]
            chars[at:at] = piece
        else:
            chars.insert(at, rng.choice(" ，-、嗯"))
    return "".join(chars)


def check_text(text: str) -> None:
    for mask in (redact, redact_partial):
        once = mask(text)
        assert isinstance(once, str)
        assert not LONG_RUN.search(once), f"{mask.__name__}: a long digit run survives in {once!r}"
        twice = mask(once)
        assert twice == once, f"{mask.__name__} is not idempotent: {once!r} -> {twice!r}"


@settings(max_examples=budget(len(WORDINGS) + len(REGRESSIONS) + 600))
@explicit(*WORDINGS, *REGRESSIONS)
@given(st.lists(st.sampled_from([*ARABIC, *SPOKEN, *PARTS]), max_size=30).map("".join) | st.text(max_size=60))
@PRIVACY
def test_wordings_and_generated_text(text: str) -> None:
    PRIVACY.check(check_text, text)


@settings(max_examples=budget(1200))
@given(pick=st.integers(0, len(WORDINGS) - 1), seed=st.integers(0, 2**32 - 1))
@PRIVACY
def test_mutated_wordings(pick: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(8):
        PRIVACY.check(check_text, mutated(WORDINGS[pick], rng))


@settings(max_examples=budget(1200))
@given(seed=st.integers(0, 2**32 - 1))
@PRIVACY
def test_sentences_built_from_parts(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(8):
        PRIVACY.check(check_text, built(rng))
