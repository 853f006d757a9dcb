"""Secret keypad input (service passwords) passed to the dialogue by reference, never as message text.

Whatever text reaches Rasa is stored in its tracker. So the gateway puts secret digits into Redis under a
random one-time key that expires within `TTL` seconds and sends `/inform{"digits_ref": "<key>"}`; the action
server takes the digits out (GETDEL), so they are read once and never stored with the conversation.
"""

from __future__ import annotations

import secrets
from typing import Any

TTL = 120
_PREFIX = "hotline:keypad:"


def put_secret_digits(redis: Any, digits: str, ttl: int = TTL) -> str:
    """Store `digits` for one read; returns the reference to send instead of them (sync redis client)."""
    ref = secrets.token_urlsafe(12)
    redis.set(_PREFIX + ref, digits, ex=ttl)
    return ref


async def put_secret_digits_async(redis: Any, digits: str, ttl: int = TTL) -> str:
    """The same for an asyncio redis client."""
    ref = secrets.token_urlsafe(12)
    await redis.set(_PREFIX + ref, digits, ex=ttl)
    return ref


def take_secret_digits(redis: Any, ref: str) -> str | None:
    """The digits behind `ref`, deleted as they are read; None if unknown or expired."""
    value = redis.getdel(_PREFIX + ref)
    return value.decode() if isinstance(value, bytes) else value


def keypad_message(digits: str | None = None, *, ref: str | None = None) -> str:
    """How keypad input reaches Rasa: the `inform` intent with a `digits` (or `digits_ref`) entity."""
    if ref is not None:
        return f'/inform{{"digits_ref": "{ref}"}}'
    clean = "".join(ch for ch in digits or "" if ch in "0123456789*#")
    return f'/inform{{"digits": "{clean}"}}'
