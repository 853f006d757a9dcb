"""Half understood: ask "您是要挂失社保卡吗？" instead of a generic reprompt, and act on the answer.

The caller's turn fell back (nlu_fallback: low confidence, or two intents too close), but the classifier's best
guess is a service. `ask()` asks about it and remembers the guess in the `guess` slot. If the next turn is a yes,
`confirmed()` rewrites the conversation as Rasa's two-stage fallback does: both user turns are reverted and the
first is put back with the guessed intent, so the rules answer it as if it had been understood at once. Every
answer is kept for the trainers (redacted) in the Redis list `hotline:nlu:guesses`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, EventType, SlotSet, UserUtteranceReverted, UserUttered
from rasa_sdk.executor import CollectingDispatcher

from actions import prompts
from actions.common import keypad_store
from hotline_domain.identity import redact

log = logging.getLogger("hotline.actions")

GUESSES_KEY = "hotline:nlu:guesses"  # newest first; read by trainers' tools
GUESSES_KEPT = 5000
GUESSES_TTL_S = 30 * 24 * 3600
MIN_GUESS = 0.15  # below this the classifier has no real candidate (chance among 40 intents is 0.025)


def best_guess(tracker: Tracker) -> tuple[str, float] | None:
    """The classifier's best intent for the latest (fallen back) turn, if it is one worth asking about."""
    ranking = tracker.latest_message.get("intent_ranking") or []
    for candidate in ranking:
        name, confidence = candidate.get("name"), float(candidate.get("confidence") or 0.0)
        if name == "nlu_fallback":
            continue
        return (name, confidence) if name in prompts.GUESSES and confidence >= MIN_GUESS else None
    return None


def ask(dispatcher: CollectingDispatcher, intent: str) -> list[EventType]:
    dispatcher.utter_message(text=prompts.guess_question(intent))
    return [SlotSet("guess", intent)]


def pending(tracker: Tracker, last_bot_texts: list[str]) -> str | None:
    """The guess the caller is answering now: asked in the bot's last turn (a stale slot does not count)."""
    guess = tracker.get_slot("guess")
    if guess in prompts.GUESSES and any(t.startswith(prompts.GUESS_PREFIX) for t in last_bot_texts):
        return str(guess)
    return None


def confirmed(tracker: Tracker, guess: str) -> list[EventType]:
    """The caller said yes: replay their earlier turn as the guessed intent."""
    earlier = _earlier_user_turn(tracker)
    _remember(tracker, guess, "affirm", earlier)
    if earlier is None:
        return [SlotSet("guess", None)]
    parse = dict(earlier.get("parse_data") or {})
    parse["intent"] = {"name": guess, "confidence": 1.0}
    parse["intent_ranking"] = [{"name": guess, "confidence": 1.0}]
    return [
        UserUtteranceReverted(),  # the yes
        UserUtteranceReverted(),  # the turn that fell back (and the question, and the guess slot)
        ActionExecuted("action_listen"),
        UserUttered(earlier.get("text"), parse_data=parse, input_channel=earlier.get("input_channel")),
    ]


def denied(dispatcher: CollectingDispatcher, tracker: Tracker, guess: str) -> list[EventType]:
    _remember(tracker, guess, "deny", _earlier_user_turn(tracker))
    dispatcher.utter_message(text=prompts.GUESS_DENIED)
    return [SlotSet("guess", None)]


def _earlier_user_turn(tracker: Tracker) -> dict[str, Any] | None:
    users = [e for e in tracker.events if e.get("event") == "user"]
    return users[-2] if len(users) >= 2 else None


def _remember(tracker: Tracker, guess: str, answer: str, earlier: dict[str, Any] | None) -> None:
    """What the caller said, what was guessed and their answer: a labelled example for the trainers."""
    item = {
        "text": redact((earlier or {}).get("text") or ""),
        "guess": guess,
        "answer": answer,
        "conversation": tracker.sender_id,
        "at": round(time.time(), 3),
    }
    try:
        store = keypad_store()
        store.lpush(GUESSES_KEY, json.dumps(item, ensure_ascii=False))
        store.ltrim(GUESSES_KEY, 0, GUESSES_KEPT - 1)
        store.expire(GUESSES_KEY, GUESSES_TTL_S)
    except redis.RedisError:
        log.warning("the answer to a confirming question could not be kept in Redis")
