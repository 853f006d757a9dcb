"""Rasa's Redis tracker store, with the caller's secrets masked before anything is written.

Configured in endpoints.yml as `type: masked_store.MaskedRedisTrackerStore` (Rasa runs from dialogue/, which is on
its PYTHONPATH); every setting of Rasa 3.6's `RedisTrackerStore` works as before. A turn is handled on the tracker
in memory, in clear, as Rasa always does; only what goes into Redis (and so what the next turn and the HTTP API
read back) is masked, with the one redaction of `hotline_domain/privacy.py`:

- caller text (`user` events and their parse data, keypad messages like `/inform{"digits": "..."}`) and what the
  bot said: ID, phone and bank card numbers and passwords masked, as in the gateway's call records;
- entities: `id_number` and `phone` masked the way agents see them (110105********1230, 138****5678), other
  values redacted;
- keypad input while the service password is asked for: its digits whatever they are (a password always comes by
  reference, hotline_domain/keypad.py; this catches one that did not);
- slots: `id_number` masked (the actions use the sealed `id_ref`, actions/caller_id.py), `phone` masked,
  `service_password` never more than `verified`, every other text slot redacted; `id_ref` is kept (it is
  ciphertext only the action server can open).

Masking is idempotent (masked text masks to itself), so Rasa's merge of the stored and the new tracker still finds
the stored events unchanged. The lock store holds no conversation content and is left as it is.

With `REDIS_SENTINELS` set the store talks to the primary the sentinels name, riding out a failover
(redis_link.py); without it, to `host:port` exactly as Rasa's own store does.
"""

from __future__ import annotations

import json
import re
from typing import Any

import redis_link
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker

from hotline_domain.privacy import PASSWORD_MASK, mask_id, mask_phone, redact, redact_data

_KEEP_SLOTS = {"id_ref", "requested_slot"}
_PASSWORD_WORDS = {None, "", "verified"}


def _masked_id(value: str) -> str:
    return value if "*" in value else mask_id(value)


def _masked_phone(value: str) -> str:
    return value if "*" in value else mask_phone(value)


_BY_NAME = {"id_number": _masked_id, "phone": _masked_phone}


def mask_value(name: str, value: Any) -> Any:
    """A slot's or an entity's value as it may be stored."""
    if isinstance(value, list):
        return [mask_value(name, v) for v in value]
    if name == "service_password":
        return value if value in _PASSWORD_WORDS else PASSWORD_MASK
    if not isinstance(value, str) or name in _KEEP_SLOTS:
        return value
    return _BY_NAME[name](value) if name in _BY_NAME else redact(value)


def _entities(entities: Any) -> Any:
    if not isinstance(entities, list):
        return entities
    out = []
    for entity in entities:
        if isinstance(entity, dict):
            entity = dict(entity)
            if "value" in entity:
                entity["value"] = mask_value(str(entity.get("entity")), entity["value"])
            if isinstance(entity.get("text"), str):
                entity["text"] = redact(entity["text"])
        out.append(entity)
    return out


_MODEL_KEYS = ("model_id", "assistant_id")  # Rasa's own marks of which model answered: never a caller's data


def _metadata(metadata: Any) -> Any:
    """An event's metadata redacted, but for the model's id (hex that can look like a card number)."""
    if not isinstance(metadata, dict):
        return redact_data(metadata)
    kept = {k: metadata[k] for k in _MODEL_KEYS if isinstance(metadata.get(k), str)}
    return {**redact_data({k: v for k, v in metadata.items() if k not in kept}), **kept}


_KEYPAD_DIGITS = re.compile(r'("digits"\s*:\s*")[^"]*(")')


def _keyed_password(event: dict[str, Any]) -> dict[str, Any]:
    """A user event of keypad input given while the password was asked for: the digits masked."""
    if isinstance(event.get("text"), str):
        event["text"] = _KEYPAD_DIGITS.sub(rf"\g<1>{PASSWORD_MASK}\g<2>", event["text"])
    parse = event.get("parse_data")
    if isinstance(parse, dict):
        if isinstance(parse.get("text"), str):
            parse["text"] = _KEYPAD_DIGITS.sub(rf"\g<1>{PASSWORD_MASK}\g<2>", parse["text"])
        for entity in parse.get("entities") or []:
            if isinstance(entity, dict) and entity.get("entity") == "digits":
                entity["value"] = PASSWORD_MASK
    return event


def mask_event(event: dict[str, Any], requested_slot: str | None = None) -> dict[str, Any]:
    """One serialised Rasa event with caller secrets masked (a new dict; the event itself is left alone).
    `requested_slot`: what the form was asking for when the event happened."""
    kind = event.get("event")
    event = dict(event)
    if kind == "user":
        if isinstance(event.get("text"), str):
            event["text"] = redact(event["text"])
        parse = event.get("parse_data")
        if isinstance(parse, dict):
            parse = dict(parse)
            if isinstance(parse.get("text"), str):
                parse["text"] = redact(parse["text"])
            parse["entities"] = _entities(parse.get("entities"))
            if "metadata" in parse:
                parse["metadata"] = _metadata(parse["metadata"])
            event["parse_data"] = parse
        if "metadata" in event:
            event["metadata"] = _metadata(event["metadata"])
        if requested_slot == "service_password":
            event = _keyed_password(event)
    elif kind == "bot":
        if isinstance(event.get("text"), str):
            event["text"] = redact(event["text"])
        if "data" in event:
            event["data"] = redact_data(event["data"])
    elif kind == "slot":
        event["value"] = mask_value(str(event.get("name")), event.get("value"))
    elif kind == "entities":
        event["entities"] = _entities(event.get("entities"))
    return event


class MaskedRedisTrackerStore(RedisTrackerStore):
    """`RedisTrackerStore` that writes every conversation with `mask_event` applied to each of its events."""

    def __init__(
        self,
        domain: Domain,
        *,
        db: int | str = 0,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(domain, db=db, username=username, password=password, **kwargs)  # type: ignore[arg-type]
        if redis_link.SENTINELS:
            self.red = redis_link.primary(db=int(db), username=username, password=password, decode_responses=True)

    def serialise_tracker(self, tracker: DialogueStateTracker) -> str:  # type: ignore[override]
        dialogue = tracker.as_dialogue().as_dict()
        events, requested = [], None
        for event in dialogue["events"]:
            events.append(mask_event(event, requested))
            if event.get("event") == "slot" and event.get("name") == "requested_slot":
                requested = event.get("value")
            elif event.get("event") in ("session_started", "restart"):
                requested = None
        dialogue["events"] = events
        return json.dumps(dialogue)
