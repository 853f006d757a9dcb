"""Structured mutation of JSON messages: change the tree (types, keys, nesting), then perhaps the text."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.fuzz.harness import mutate

ODD_STRINGS = [
    "",
    " ",
    "0",
    "8000",
    "audio/x-mulaw",
    "start",
    "media",
    "dtmf",
    "stop",
    "\u0000",
    "\ud7ff",
    "é",
    "你好",
    "//8=",
    "not base64",
    "=" * 5,
    "A" * 300,
    "1" * 20,
    "caller_request",
    "*",
    "#",
    "12",
]
ODD_NUMBERS = [0, -1, 1, 8000, 16000, 8000.0, 1e308, -1e308, 2**63, 2**64 + 1, 0.5, 10**30]
TEXT_BOMBS = [
    "[" * 5000,
    '{"a":' * 3000,
    "1" * 5000,
    "-" + "9" * 4400,
    '"\\ud800"',
    "1e999",
    "NaN",
    "-Infinity",
    '{"event": "media", "media": {"payload": ' + "[" * 3000 + "]" * 3000 + "}}",
    "\ufeff{}",
    "{} {}",
    "[]",
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(ODD_NUMBERS) if rng.random() < 0.7 else rng.randrange(-(2**40), 2**40)
    if kind in (3, 4):
        return rng.choice(ODD_STRINGS)
    if kind in (5, 6):
        return {rng.choice(ODD_STRINGS + KEYS): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


KEYS = [
    "event",
    "start",
    "media",
    "payload",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "streamSid",
    "callSid",
    "dtmf",
    "digit",
    "type",
    "callId",
    "sample_rate",
    "call_sid",
    "custom",
    "text",
    "recipient_id",
    "collect_digits",
    "handoff",
    "hangup",
    "slot",
    "max_digits",
    "terminator",
    "star_means",
    "speech_allowed",
    "secret",
    "reason",
    "queue",
    "identity",
    "id_number",
    "verified",
    "slots",
    "summary",
]


def mutate_tree(value: Any, rng: random.Random) -> Any:
    """One change somewhere in the tree: a value replaced, a key dropped or added, a node wrapped or emptied."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        out = dict(value)
        op = rng.randrange(5)
        if op == 0:
            del out[key]
        elif op == 1:
            out[rng.choice(KEYS)] = random_json(rng)
        else:
            out[key] = mutate_tree(out[key], rng)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out = list(value)
        i = rng.randrange(len(out))
        op = rng.randrange(4)
        if op == 0:
            del out[i]
        elif op == 1:
            out.insert(i, out[i])
        else:
            out[i] = mutate_tree(out[i], rng)
        return out
    op = rng.randrange(4)
    if op == 0:
        return [value]
    if op == 1:
        return {"event": value} if rng.random() < 0.5 else {rng.choice(KEYS): value}
    return random_json(rng)


def mutated_text(value: Any, rng: random.Random) -> str:
    """A JSON message as the wire might carry it: the tree mutated, and now and then the text itself."""
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        value = mutate_tree(value, rng)
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(TEXT_BOMBS)
    if roll < 0.25:
        return mutate(text.encode(), rng).decode("utf-8", errors="replace")
    return text
