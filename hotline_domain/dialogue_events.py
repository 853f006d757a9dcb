"""What the dialogue tells the trainer's inbox about each conversation: one typed event per turn, masked.

The Rasa side (dialogue/masked_broker.py, Python 3.10) turns each tracker event it publishes into a
`DialogueEvent` with `from_rasa` and writes `to_fields()` to the Redis stream `STREAM`; the gateway side
(voice_gateway/training/, Python 3.11) reads them back with `from_fields`. Only what the inbox needs travels:
the caller's text and what the model made of it, what the bot said, a handoff's reason, and the marks of a new
session or a taken-back turn. Text is masked with the one redaction of privacy.py before it leaves Rasa.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from hotline_domain.privacy import redact

STREAM = "hotline:dialogue:events"
STREAM_MAXLEN = 200_000  # about a week of a busy line's turns; older ones are trimmed (approximately)
RANKING_KEPT = 4
KEYPAD_TEXT = "（按键）"  # keypad input: never the digits, which may be a password
CONNECTED_TEXT = "（接通）"  # the gateway's own /greet when a call is answered


class EventKind(str, Enum):
    USER = "user"  # the caller's turn, with the model's intent and runner-ups
    BOT = "bot"  # what the bot said (and the handoff reason if the turn handed over)
    SESSION = "session"  # a new conversation session (or a restart)
    REWIND = "rewind"  # the caller's last turn was taken back (the gateway's barge-in replacement)

    def __str__(self) -> str:
        return str(self.value)


def _caller_text(text: str) -> str:
    """What a trainer may read of a caller's message: a marker for the gateway's own intents, masked words."""
    if text.startswith("/greet"):
        return CONNECTED_TEXT
    return KEYPAD_TEXT if text.startswith("/") else redact(text)


@dataclass(frozen=True)
class Ranked:
    intent: str
    confidence: float


@dataclass(frozen=True)
class DialogueEvent:
    sender: str  # the conversation: a call's id, or a chat's sender id
    kind: EventKind
    at: float  # Unix seconds
    text: str = ""
    intent: str | None = None
    confidence: float | None = None
    ranking: tuple[Ranked, ...] = field(default_factory=tuple)
    channel: str = ""  # Rasa's input channel ("rest", ...)
    handoff: str | None = None  # a bot turn that handed the caller over: its reason
    model: str = ""  # the id of the model that understood a caller's turn (Rasa's metadata.model_id)

    @staticmethod
    def from_rasa(event: dict[str, Any]) -> DialogueEvent | None:
        """A serialised Rasa event with its `sender_id` (what a tracker store streams), or None for the kinds
        the inbox has no use for (actions, slots, ...). Text is masked here."""
        kind, sender = event.get("event"), str(event.get("sender_id") or "")
        at = float(event.get("timestamp") or 0.0)
        if kind == "user":
            parse = event.get("parse_data") if isinstance(event.get("parse_data"), dict) else {}
            intent = parse.get("intent") if isinstance(parse.get("intent"), dict) else {}
            ranking = tuple(
                Ranked(str(r.get("name")), round(float(r.get("confidence") or 0.0), 4))
                for r in (parse.get("intent_ranking") or [])[:RANKING_KEPT]
                if isinstance(r, dict) and r.get("name")
            )
            confidence = intent.get("confidence")
            text = str(event.get("text") or "")
            return DialogueEvent(
                sender,
                EventKind.USER,
                at,
                text=_caller_text(text),
                intent=intent.get("name"),
                confidence=None if confidence is None else round(float(confidence), 4),
                ranking=ranking,
                channel=str(event.get("input_channel") or ""),
                model=str((event.get("metadata") or {}).get("model_id") or ""),
            )
        if kind == "bot":
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            custom = data.get("custom") if isinstance(data.get("custom"), dict) else {}
            handoff = custom.get("handoff") if isinstance(custom.get("handoff"), dict) else None
            reason = None if handoff is None else str(handoff.get("reason") or "")
            if not event.get("text") and reason is None:
                return None  # a payload-only message (collect_digits, hangup): nothing a trainer reads
            return DialogueEvent(sender, EventKind.BOT, at, text=redact(str(event.get("text") or "")), handoff=reason)
        if kind in ("session_started", "restart"):
            return DialogueEvent(sender, EventKind.SESSION, at)
        if kind == "rewind":
            return DialogueEvent(sender, EventKind.REWIND, at)
        return None

    def to_fields(self) -> dict[str, str]:
        """The event as one Redis stream entry (a single JSON field)."""
        body = asdict(self)
        body["kind"] = str(self.kind)
        return {"event": json.dumps(body, ensure_ascii=False, separators=(",", ":"))}

    @staticmethod
    def from_fields(fields: dict[Any, Any]) -> DialogueEvent:
        """Back from a stream entry; ValueError for anything that is not one."""
        raw = fields.get("event", fields.get(b"event"))
        if raw is None:
            raise ValueError("not a dialogue event: no 'event' field")
        try:
            body = json.loads(raw)
            body["kind"] = EventKind(body["kind"])
            body["ranking"] = tuple(Ranked(str(r["intent"]), float(r["confidence"])) for r in body.get("ranking", []))
            return DialogueEvent(**body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a dialogue event: {type(exc).__name__}: {exc}") from exc
