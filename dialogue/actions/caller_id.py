"""The verified caller's ID number, kept out of the conversation store.

Rasa stores every slot with the conversation (Redis, for a day), and what the action server returns becomes a
slot. So once an ID number is validated, the `id_number` slot holds its masked form (110105********1230, what
an agent may see) and `id_ref` holds the ID sealed for this conversation: AES-256-GCM under a key only the
action server reads (`HOTLINE_IDENTITY_KEY_FILE`, made with mode 0600 under var/keys/ by `hotline up`), with the
conversation id as associated data and an expiry inside. A reference copied into another conversation, altered,
older than `TTL`, or read without the key opens to nothing. Redis and the Rasa HTTP API never see the ID
itself; the actions that need it (password check, queries, card loss) open the reference with `caller_id`.

Without a key file (an action server started by hand) a key is made per process and a warning logged: callers
verified before a restart of that process are asked again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rasa_sdk import Tracker

from actions.settings import SETTINGS
from hotline_domain.keys import read_key_file
from hotline_domain.privacy import mask_id

log = logging.getLogger("hotline.actions")

TTL = 24 * 3600  # as long as Rasa keeps the conversation (endpoints.yml record_exp)
KEY_FILE_VARIABLE = "HOTLINE_IDENTITY_KEY_FILE"
_VERSION = b"\x01"
_AAD = b"hotline-id-ref-v1:"


@lru_cache(maxsize=1)
def _key() -> bytes:
    path = SETTINGS.identity_key_file
    if path:
        return read_key_file(Path(path))
    log.warning(
        "%s is not set: a key for this process only (verified callers re-verify after a restart)", KEY_FILE_VARIABLE
    )
    return secrets.token_bytes(32)


def seal(id_number: str, conversation_id: str, *, now: float | None = None, key: bytes | None = None) -> str:
    """A reference to `id_number` that only this action server can open, in this conversation, for `TTL`."""
    expires = int((time.time() if now is None else now) + TTL)
    plain = json.dumps({"id": id_number, "exp": expires}).encode()
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key or _key()).encrypt(nonce, plain, _AAD + conversation_id.encode())
    return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode().rstrip("=")


def unseal(ref: str | None, conversation_id: str, *, now: float | None = None, key: bytes | None = None) -> str | None:
    """The ID number behind `ref`, or None if there is none, it is for another conversation, altered or expired."""
    if not ref:
        return None
    try:
        raw = base64.urlsafe_b64decode(ref + "=" * (-len(ref) % 4))
        if raw[:1] != _VERSION or len(raw) < 1 + 12 + 16:
            return None
        plain = AESGCM(key or _key()).decrypt(raw[1:13], raw[13:], _AAD + conversation_id.encode())
        data = json.loads(plain)
    except (binascii.Error, ValueError, InvalidTag):
        return None
    if (time.time() if now is None else now) > data.get("exp", 0):
        return None
    return str(data["id"])


def verified_id_slots(id_number: str, tracker: Tracker) -> dict[str, str]:
    """What validation sets for a valid ID: the masked form to show, the sealed reference to use."""
    return {"id_number": mask_id(id_number), "id_ref": seal(id_number, tracker.sender_id)}


def caller_key(id_number: str, *, key: bytes | None = None) -> str:
    """A keyed hash of the ID number (HMAC-SHA256 under the identity key): the same caller on every call, never
    the number itself (without the key it cannot be tested against a guess)."""
    digest = hmac.new(key or _key(), b"hotline-caller-v1:" + id_number.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def caller_id(tracker: Tracker) -> str | None:
    """The caller's validated ID number in clear (for the business database only; never log or return it)."""
    return unseal(tracker.get_slot("id_ref"), tracker.sender_id)
