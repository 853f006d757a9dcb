"""Caller text helpers with no Rasa in them: leading greetings and fillers, and near-identical sentences.

Shared by the pipeline (components.filler_stripper), the evaluation tool (tools/nlu_eval.py) and the tests, so
"a greeting before the request" and "the same sentence as a training example" mean one thing everywhere.
"""

from __future__ import annotations

import difflib
import re

# what callers put before a request without meaning anything by it (recognisers write these, too)
GREETINGS = ("喂", "你好", "您好", "哈喽", "嗨", "早上好", "上午好", "中午好", "下午好", "晚上好")
FILLERS = ("嗯", "啊", "呃", "额", "哎", "诶", "欸", "唉", "哦", "噢", "那个", "就是", "这个", "请问", "然后", "呀")
PUNCTUATION = " \t,，.。!！?？、~～…:：;；'\"“”‘’()（）-—"

_WORD = "|".join(sorted((re.escape(w) for w in GREETINGS + FILLERS), key=len, reverse=True))
_PUNCT = "[" + re.escape(PUNCTUATION) + "]"
_LEADING = re.compile(rf"(?:(?:{_WORD})|{_PUNCT})+")
# for comparing sentences only the commonest fillers go: 早上好 and 哦 say something
COMPARE_FILLERS = ("喂", "嗯", "啊", "呃", "那个", "请问", "你好", "您好")
_ANYWHERE = re.compile("|".join(re.escape(w) for w in COMPARE_FILLERS) + f"|{_PUNCT}")
_CONTENT = re.compile(r"[\u3400-\u9fff0-9A-Za-z]")

NEAR_DUPLICATE_RATIO = 0.85


def leading_filler_end(text: str) -> int:
    """Where the request starts after leading greetings/fillers; 0 if there are none or nothing follows them."""
    match = _LEADING.match(text)
    if not match or not _CONTENT.search(text, match.end()):
        return 0
    return match.end()


def comparable(text: str) -> str:
    """The text without punctuation and fillers anywhere, for deciding whether two sentences are the same."""
    return _ANYWHERE.sub("", text).lower()


def near_duplicate(a: str, b: str, ratio: float = NEAR_DUPLICATE_RATIO) -> bool:
    """The same after comparable(), or difflib's ratio of the two at least `ratio`."""
    ca, cb = comparable(a), comparable(b)
    if ca == cb:
        return True
    matcher = difflib.SequenceMatcher(None, ca, cb, autojunk=False)
    return matcher.real_quick_ratio() >= ratio and matcher.quick_ratio() >= ratio and matcher.ratio() >= ratio


def leaks(sentences: list[str], training: list[str], ratio: float = NEAR_DUPLICATE_RATIO) -> dict[str, str]:
    """Each sentence that is (nearly) a training example, with the training example it matches."""
    prepared = sorted({comparable(t): t for t in training}.items(), key=lambda kv: len(kv[0]))
    lengths = [len(c) for c, _ in prepared]
    found: dict[str, str] = {}
    for sentence in sentences:
        cs = comparable(sentence)
        matcher = difflib.SequenceMatcher(None, b=cs, autojunk=False)
        # ratio = 2M/(la+lb) >= r needs the lengths within a factor r/(2-r) of each other
        low, high = len(cs) * ratio / (2 - ratio), len(cs) * (2 - ratio) / ratio
        for (ct, original), length in zip(prepared, lengths, strict=True):
            if length < low or length > high:
                continue
            if ct == cs:
                found[sentence] = original
                break
            matcher.set_seq1(ct)
            if matcher.real_quick_ratio() >= ratio and matcher.quick_ratio() >= ratio and matcher.ratio() >= ratio:
                found[sentence] = original
                break
    return found
