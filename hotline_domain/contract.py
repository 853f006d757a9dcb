"""What the dialogue sends the gateway besides text: the custom payloads of a bot turn, typed.

Both sides import this module: the Rasa actions (Python 3.10) build a payload and send its `to_payload()` as
`json_message`; the gateway (Python 3.11) reads the REST channel's answer with `BotTurn.from_messages`. The wire
is JSON, one known key per `custom` payload (`docs/dialogue.md`):

    {"collect_digits": {"slot", "max_digits", "terminator", "star_means"?, "speech_allowed", "secret"?}}
    {"handoff": {"reason", "queue", "identity": {"id_number", "verified", "senior"?, "repeat"?}, "slots", "summary"}}
    {"hangup": {"reason"}}

Anything else (an unknown key, a wrong type, two keys in one payload) is refused with `ContractError`.
Handoff reasons and queues are closed sets of names: the hotline's handoff rules and its five service domains
(the service catalogue), because a person or a PBX routes on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

__all__ = [
    "BotTurn",
    "CallerIdentity",
    "CollectDigits",
    "ContractError",
    "Handoff",
    "HandoffQueue",
    "HandoffReason",
    "Hangup",
    "HangupReason",
]


class ContractError(ValueError):
    """A payload or bot turn that does not follow the contract; the message says which field and why."""


class _Name(str, Enum):
    """A name that travels as its plain string: str() and format() give the value on 3.10 and 3.11 alike."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class HandoffReason(_Name):
    """Why the call goes to a person (the catalogue's handoff rules)."""

    CALLER_REQUEST = "caller_request"
    NOT_UNDERSTOOD = "not_understood"  # two consecutive turns not understood
    VERIFICATION_FAILED = "verification_failed"  # three failed tries
    COMPLAINT = "complaint"
    URGENT_WAGE_ARREARS = "urgent_wage_arrears"
    ELDERLY_CALLER = "elderly_caller"  # verified caller aged 65 or more (适老化)
    BACKEND_ERROR = "backend_error"
    KEYPAD_ZERO = "keypad_zero"
    # decided by the gateway itself, never sent by the dialogue: the caller stayed silent, or a part of it failed
    NO_INPUT = "no_input"
    DIALOGUE_UNAVAILABLE = "dialogue_unavailable"
    RECOGNISER_UNAVAILABLE = "recogniser_unavailable"
    SYNTHESISER_UNAVAILABLE = "synthesiser_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"  # Redis: records, queues, keypad secrets
    SERVICE_CLOSING = "service_closing"  # the gateway is draining and its time limit has passed


class HandoffQueue(_Name):
    """The human agents' queues: the catalogue's five service domains, and `general` for everything else."""

    GENERAL = "general"
    SOCIAL_INSURANCE = "social_insurance"
    CARD = "card"
    EMPLOYMENT = "employment"
    TALENT = "talent"
    ARBITRATION = "arbitration"


class HangupReason(_Name):
    """Why the dialogue ends the call."""

    CALLER_DONE = "caller_done"


KEYPAD_KEYS = "0123456789*#"
SECRET_SLOTS = frozenset({"service_password"})  # never leave the dialogue, not even masked
MASKED_SLOTS = frozenset({"id_number", "phone"})  # leave it only masked (with *)
_SLOT_VALUE_TYPES = (str, int, float, bool, type(None))

_N = TypeVar("_N", bound=_Name)


def _name(kind: type[_N], value: object, where: str) -> _N:
    if isinstance(value, kind):
        return value
    if not isinstance(value, str):
        raise ContractError(f"{where} must be a string, got {type(value).__name__}")
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise ContractError(f"{where}: unknown name {value!r} (known: {known})") from None


def _check(value: object, types: type | tuple[type, ...], where: str) -> None:
    """isinstance, except that a bool is not an int (JSON keeps them apart)."""
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in allowed:
        raise ContractError(f"{where} must be {_type_names(allowed)}, got bool")
    if not isinstance(value, allowed):
        raise ContractError(f"{where} must be {_type_names(allowed)}, got {type(value).__name__}")


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _fields(payload: object, key: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    """The inner dict of `{key: {...}}`, with its keys checked."""
    if not isinstance(payload, dict):
        raise ContractError(f"a payload must be an object, got {type(payload).__name__}")
    if list(payload) != [key]:
        raise ContractError(f"expected exactly the key {key!r}, got {sorted(map(str, payload))}")
    return _keys(payload[key], key, required, optional)


def _keys(inner: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(inner, dict):
        raise ContractError(f"{where} must be an object, got {type(inner).__name__}")
    unknown = set(inner) - required - optional
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {sorted(map(str, unknown))}")
    missing = required - set(inner)
    if missing:
        raise ContractError(f"{where}: missing key(s) {sorted(missing)}")
    return inner


@dataclass(frozen=True)
class CollectDigits:
    """The next answer may (or, without `speech_allowed`, must) be keyed in: up to `terminator` or `max_digits`."""

    KEY: ClassVar[str] = "collect_digits"

    slot: str
    max_digits: int
    terminator: str = "#"
    star_means: str | None = None  # what * stands for ("X" in an ID number); None: * is just a key
    speech_allowed: bool = True
    secret: bool = False  # send the digits by one-time reference, never as message text

    def __post_init__(self) -> None:
        where = self.KEY
        _check(self.slot, str, f"{where}.slot")
        if not self.slot:
            raise ContractError(f"{where}.slot must not be empty")
        _check(self.max_digits, int, f"{where}.max_digits")
        if not 1 <= self.max_digits <= 32:
            raise ContractError(f"{where}.max_digits must be 1 to 32, got {self.max_digits}")
        _check(self.terminator, str, f"{where}.terminator")
        if len(self.terminator) != 1 or self.terminator not in KEYPAD_KEYS:
            raise ContractError(f"{where}.terminator must be one keypad key, got {self.terminator!r}")
        _check(self.star_means, (str, type(None)), f"{where}.star_means")
        if self.star_means is not None and len(self.star_means) != 1:
            raise ContractError(f"{where}.star_means must be one character, got {self.star_means!r}")
        _check(self.speech_allowed, bool, f"{where}.speech_allowed")
        _check(self.secret, bool, f"{where}.secret")

    def to_payload(self) -> dict[str, Any]:
        """The JSON the actions send (`star_means` and `secret` only when set)."""
        inner: dict[str, Any] = {"slot": self.slot, "max_digits": self.max_digits, "terminator": self.terminator}
        if self.star_means is not None:
            inner["star_means"] = self.star_means
        inner["speech_allowed"] = self.speech_allowed
        if self.secret:
            inner["secret"] = True
        return {self.KEY: inner}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CollectDigits:
        inner = _fields(
            payload, cls.KEY, {"slot", "max_digits"}, {"terminator", "star_means", "speech_allowed", "secret"}
        )
        return cls(**inner)


@dataclass(frozen=True)
class CallerIdentity:
    """Who the caller said they are, as a person may see it: the ID number masked, and whether it was verified."""

    id_number: str | None = None  # masked (110105********1230), None if not given
    verified: bool = False
    senior: bool = False  # 65 or older today, from the ID number's birth date: served first
    repeat: bool = False  # the same ID number called in the last 24 h (the action server's keyed hash): first too

    def __post_init__(self) -> None:
        _check(self.id_number, (str, type(None)), "handoff.identity.id_number")
        if self.id_number is not None and "*" not in self.id_number:
            raise ContractError("handoff.identity.id_number must be masked")
        _check(self.verified, bool, "handoff.identity.verified")
        _check(self.senior, bool, "handoff.identity.senior")
        _check(self.repeat, bool, "handoff.identity.repeat")

    def to_json(self) -> dict[str, Any]:
        flags = {name: True for name in ("senior", "repeat") if getattr(self, name)}  # only when set
        return {"id_number": self.id_number, "verified": self.verified, **flags}

    @classmethod
    def from_json(cls, value: object) -> CallerIdentity:
        inner = _keys(value, "handoff.identity", {"id_number", "verified"}, {"senior", "repeat"})
        return cls(**inner)


def _check_slots(slots: object) -> None:
    _check(slots, dict, "handoff.slots")
    assert isinstance(slots, dict)
    for name, value in slots.items():
        _check(name, str, "handoff.slots key")
        where = f"handoff.slots.{name}"
        if name in SECRET_SLOTS:
            raise ContractError(f"{where} is secret and must not be sent")
        if isinstance(value, list):
            for item in value:
                _check(item, _SLOT_VALUE_TYPES, f"{where}[]")
        else:
            _check(value, _SLOT_VALUE_TYPES, where)
        if name in MASKED_SLOTS and isinstance(value, str) and value and "*" not in value:
            raise ContractError(f"{where} must be masked")


@dataclass(frozen=True)
class Handoff:
    """The call goes to a person in `queue`; what they see first: why, who, the filled slots, a summary."""

    KEY: ClassVar[str] = "handoff"

    reason: HandoffReason
    queue: HandoffQueue = HandoffQueue.GENERAL
    identity: CallerIdentity = field(default_factory=CallerIdentity)
    slots: dict[str, Any] = field(default_factory=dict, hash=False)  # masked, secrets left out
    summary: str = ""

    def __post_init__(self) -> None:
        # names may be given as their strings; they are kept as members
        object.__setattr__(self, "reason", _name(HandoffReason, self.reason, "handoff.reason"))
        object.__setattr__(self, "queue", _name(HandoffQueue, self.queue, "handoff.queue"))
        _check(self.identity, CallerIdentity, "handoff.identity")
        _check_slots(self.slots)
        _check(self.summary, str, "handoff.summary")

    def to_payload(self) -> dict[str, Any]:
        return {
            self.KEY: {
                "reason": self.reason.value,
                "queue": self.queue.value,
                "identity": self.identity.to_json(),
                "slots": dict(self.slots),
                "summary": self.summary,
            }
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Handoff:
        inner = _fields(payload, cls.KEY, {"reason", "queue", "identity", "slots", "summary"}, set())
        return cls(
            reason=inner["reason"],
            queue=inner["queue"],
            identity=CallerIdentity.from_json(inner["identity"]),
            slots=inner["slots"],
            summary=inner["summary"],
        )


@dataclass(frozen=True)
class Hangup:
    """The dialogue is over: the gateway plays the last words, then hangs up."""

    KEY: ClassVar[str] = "hangup"

    reason: HangupReason = HangupReason.CALLER_DONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", _name(HangupReason, self.reason, "hangup.reason"))

    def to_payload(self) -> dict[str, Any]:
        return {self.KEY: {"reason": self.reason.value}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Hangup:
        inner = _fields(payload, cls.KEY, {"reason"}, set())
        return cls(**inner)


Payload = CollectDigits | Handoff | Hangup
PAYLOADS: dict[str, type[Payload]] = {kind.KEY: kind for kind in (CollectDigits, Handoff, Hangup)}
_MESSAGE_KEYS = {"recipient_id", "text", "custom"}  # a phone cannot show images, buttons or attachments


@dataclass(frozen=True)
class BotTurn:
    """What the bot said and asked for in one turn: spoken texts, and at most one payload of each kind."""

    texts: list[str] = field(default_factory=list, hash=False)
    collect: CollectDigits | None = None
    handoff: Handoff | None = None
    hangup: Hangup | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def parts(self) -> list[Payload]:
        """The payloads present, in a fixed order."""
        return [part for part in (self.collect, self.handoff, self.hangup) if part is not None]

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> BotTurn:
        """Parse the Rasa REST channel's answer: `[{"recipient_id", "text"}, {"recipient_id", "custom"}, ...]`."""
        if not isinstance(messages, list):
            raise ContractError(f"the answer must be a list of messages, got {type(messages).__name__}")
        texts: list[str] = []
        found: dict[str, Payload] = {}
        for number, message in enumerate(messages):
            if not isinstance(message, dict):
                raise ContractError(f"message {number} must be an object, got {type(message).__name__}")
            unknown = set(message) - _MESSAGE_KEYS
            if unknown:
                raise ContractError(f"message {number}: cannot be spoken: {sorted(map(str, unknown))}")
            if "text" in message:
                _check(message["text"], str, f"message {number} text")
                if message["text"]:
                    texts.append(message["text"])
            if "custom" in message:
                custom = message["custom"]
                if not isinstance(custom, dict) or len(custom) != 1:
                    keys = sorted(map(str, custom)) if isinstance(custom, dict) else type(custom).__name__
                    raise ContractError(f"message {number}: a custom payload has exactly one key, got {keys}")
                key = next(iter(custom))
                kind = PAYLOADS.get(key)
                if kind is None:
                    raise ContractError(f"message {number}: unknown custom payload {key!r}")
                if key in found:
                    raise ContractError(f"message {number}: a second {key!r} in one turn")
                found[key] = kind.from_payload(custom)
        parts = list(found.values())
        return cls(
            texts,
            collect=next((p for p in parts if isinstance(p, CollectDigits)), None),
            handoff=next((p for p in parts if isinstance(p, Handoff)), None),
            hangup=next((p for p in parts if isinstance(p, Hangup)), None),
        )
