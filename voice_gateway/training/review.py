"""Which caller turns a trainer should look at: the inbox's rules, pure, over one conversation's turns.

A caller turn goes to the inbox when the model fell back (`nlu_fallback`), was unsure (confidence under
`LOW_CONFIDENCE`), the caller denied what the bot just said or guessed, the caller said the same thing again right
after the bot's answer, or the conversation ended in a not_understood handover (its last caller turns).
`reasons_for(turns)` looks at the newest turn of a conversation and says which earlier or current caller turns
it marks, and why; the collector (inbox.py) calls it as each turn arrives.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

from hotline_domain.dialogue_events import CONNECTED_TEXT, KEYPAD_TEXT

LOW_CONFIDENCE = 0.5  # the classifier gives a plain request ~0.7 (我社保卡丢了: 0.72); it falls back under 0.3
REPEAT_SIMILARITY = 0.8  # difflib ratio of two normalised caller turns that count as "said again"
HANDOVER_TURNS = 2  # a not_understood handover marks this many of the caller's last turns
GUESS_OPENING = "您是要"  # the bot's guess question (dialogue/actions/guess.py): a "no" to it is a miss
_PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)


class Reason(str, Enum):
    FALLBACK = "fallback"
    LOW_CONFIDENCE = "low_confidence"
    DENIED = "denied"
    REPEATED = "repeated"
    HANDOVER = "handover"

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation as the inbox keeps it: `who` is "caller" or "bot"."""

    id: int
    who: str
    text: str
    intent: str | None = None
    confidence: float | None = None
    handoff: str | None = None

    @property
    def spoken(self) -> bool:
        """A caller turn with words in it (not keypad input, not the gateway's greeting)."""
        return self.who == "caller" and bool(self.text.strip()) and self.text not in (KEYPAD_TEXT, CONNECTED_TEXT)


def normalised(text: str) -> str:
    return _PUNCTUATION.sub("", unicodedata.normalize("NFKC", text)).lower()


def similar(a: str, b: str) -> bool:
    a, b = normalised(a), normalised(b)
    return bool(a and b) and difflib.SequenceMatcher(None, a, b).ratio() >= REPEAT_SIMILARITY


def _is_question(text: str) -> bool:
    return text.rstrip().endswith(("吗？", "吗?", "吗")) and not text.startswith(GUESS_OPENING)


def reasons_for(turns: list[Turn]) -> dict[int, set[Reason]]:
    """What the newest of `turns` (one conversation, oldest first) marks: {caller turn id: reasons}."""
    if not turns:
        return {}
    newest, marks = turns[-1], {}
    if newest.who == "bot":
        if newest.handoff == "not_understood":
            spoken = [t for t in turns if t.spoken][-HANDOVER_TURNS:]
            marks = {t.id: {Reason.HANDOVER} for t in spoken}
        return marks
    if not newest.spoken:
        return {}
    own: set[Reason] = set()
    if newest.intent == "nlu_fallback":
        own.add(Reason.FALLBACK)
    elif newest.confidence is not None and newest.confidence < LOW_CONFIDENCE:
        own.add(Reason.LOW_CONFIDENCE)
    if own:
        marks[newest.id] = own
    earlier = turns[:-1]
    bot_between = [t for t in reversed(earlier) if t.who == "bot"]
    previous = next((t for t in reversed(earlier) if t.spoken), None)
    if previous is None or not bot_between:
        return marks
    answered = earlier.index(previous) < earlier.index(bot_between[0])  # the bot spoke after the previous turn
    if not answered:
        return marks
    last_bot = bot_between[0].text
    if newest.intent == "deny" and not _is_question(last_bot):
        marks.setdefault(previous.id, set()).add(Reason.DENIED)
    elif similar(newest.text, previous.text):
        marks.setdefault(previous.id, set()).add(Reason.REPEATED)
    return marks
