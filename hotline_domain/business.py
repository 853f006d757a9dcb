"""The business database: what the agent looks up and changes for a verified caller.

`BusinessDb` is a small repository over SQLAlchemy Core. It works with SQLAlchemy 1.4 (the Rasa action
server's environment) and 2.x (the gateway's). Errors surface as `BackendError`, so that the dialogue can
apologise and hand off instead of guessing.

Service passwords are stored as `scrypt$<n>$<r>$<p>$<salt>$<key>` (RFC 7914, standard library, base64 without
padding), parameters in every hash so they can change without breaking old ones. A hash made with other
parameters, or an old `sha256(salt + password)` hex digest, still verifies and is replaced on the first
successful verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from hotline_domain import schema

DEFAULT_DB_PATH = Path(__file__).resolve().parent.parent / "var" / "business.sqlite3"

log = logging.getLogger("hotline.business")

# A service password is one of a million six-digit strings: a fast hash of a leaked table is a lookup away from
# every caller's password. scrypt with n=2**15, r=8, p=1 (32 MiB) costs 90 ms a verify on this machine (2 shared
# cores; median of 7, both Python 3.11 and 3.10; 2**14: 38 ms, 2**16: 186 ms), so trying all million takes one
# core about 25 hours per caller instead of under a second.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_KEY_BYTES, _SALT_BYTES = 32, 16
_LEGACY_SHA256 = re.compile(r"[0-9a-f]{64}")


class BackendError(RuntimeError):
    """The business database could not answer."""


def database_url() -> str:
    """The default business database: a SQLite file in var/ (callers pass their configured URL instead)."""
    return f"sqlite:///{DEFAULT_DB_PATH}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = _SCRYPT_KEY_BYTES) -> bytes:
    # OpenSSL refuses more than 32 MiB unless asked: allow what these parameters need (128 r (n + p + 2) bytes)
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new scrypt hash of `password` with a random salt, its parameters written into it."""
    salt = os.urandom(_SALT_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def _parse_scrypt(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, key) of a well-formed scrypt hash within sane bounds, else None."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    try:
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:  # binascii.Error included
        return None
    sane = 2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
    if not sane or 128 * r * n > 2**30 or not 8 <= len(salt) <= 64 or not 16 <= len(key) <= 64:
        return None  # a row that would cost more than 1 GiB, or is not ours: refused, never computed
    return n, r, p, salt, key


def verify_password(password: str, stored: str, legacy_salt: str = "") -> bool:
    """Whether `password` matches `stored` (scrypt, or an old sha256 hex digest with its `legacy_salt`)."""
    parsed = _parse_scrypt(stored)
    if parsed is not None:
        n, r, p, salt, key = parsed
        return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)
    if _LEGACY_SHA256.fullmatch(stored):
        return hmac.compare_digest(hashlib.sha256((legacy_salt + password).encode()).hexdigest(), stored)
    return False


def needs_rehash(stored: str) -> bool:
    """True for a hash that is not scrypt with today's parameters (old SHA-256, cheaper or other scrypt)."""
    parsed = _parse_scrypt(stored)
    return parsed is None or parsed[:3] != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


# verified against when the ID is unknown, so that a wrong ID costs what a wrong password does
_NO_SUCH_CITIZEN = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(bytes(_SALT_BYTES))}${_b64(bytes(32))}"


@dataclass(frozen=True)
class LossReport:
    reference: str
    card_no: str
    lapse_on: date


class BusinessDb:
    """Queries and changes of the hotline's business data."""

    def __init__(self, url: str | None = None, *, seed: bool = True) -> None:
        self.url = url or database_url()
        if self.url.startswith("sqlite:///"):
            try:
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(f"cannot create the database folder: {exc.strerror}") from exc
        try:
            self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as exc:
            raise BackendError(f"cannot use database URL: {type(exc).__name__}") from exc
        if seed:
            self.ensure_seeded()

    def ensure_seeded(self) -> None:
        """Create the tables and, when there are no citizens yet, load the deterministic demo data."""
        from hotline_domain.seed import seed_rows

        try:
            schema.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                if conn.execute(select(func.count()).select_from(schema.citizens)).scalar_one():
                    return
                for table, rows in seed_rows():
                    if rows:
                        conn.execute(insert(table), rows)
        except SQLAlchemyError as exc:
            raise BackendError(f"cannot prepare the business database: {type(exc).__name__}") from exc

    def _all(self, statement: Any) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(statement)]
        except SQLAlchemyError as exc:
            raise BackendError(f"business database query failed: {type(exc).__name__}") from exc

    def citizen(self, id_number: str) -> dict[str, Any] | None:
        rows = self._all(select(schema.citizens).where(schema.citizens.c.id_number == id_number))
        return rows[0] if rows else None

    def check_password(self, id_number: str, password: str) -> bool:
        """Whether `password` is the caller's service password; an older kind of hash is upgraded when it is."""
        person = self.citizen(id_number)
        if person is None:
            verify_password(password, _NO_SUCH_CITIZEN)
            return False
        stored = person["password_hash"]
        if not verify_password(password, stored, person["salt"] or ""):
            return False
        if needs_rehash(stored):
            self._replace_hash(id_number, stored, hash_password(password))
        return True

    def _replace_hash(self, id_number: str, old: str, new: str) -> None:
        """Store `new` for the citizen if `old` is still their hash; the caller is verified whether or not it is."""
        t = schema.citizens
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(t)
                    .where(t.c.id_number == id_number, t.c.password_hash == old)
                    .values(password_hash=new, salt="")
                )
        except SQLAlchemyError as exc:  # e.g. a password_hash column still VARCHAR(64): schema.py has the size
            log.warning("password hash not upgraded: %s", type(exc).__name__)

    def contribution_summary(self, id_number: str) -> dict[str, Any]:
        """Total months paid, first and last year, the latest base and the personal account balance."""
        t = schema.contributions
        rows = self._all(select(t).where(t.c.id_number == id_number).order_by(t.c.year))
        if not rows:
            return {"months": 0}
        return {
            "months": sum(r["months"] for r in rows),
            "first_year": rows[0]["year"],
            "last_year": rows[-1]["year"],
            "last_base": rows[-1]["base"],
            "balance": round(sum(r["personal_amount"] for r in rows), 2),
            "gap_years": [r["year"] for r in rows if r["months"] < 12],
        }

    def latest_pension_payments(self, id_number: str, count: int = 2) -> list[dict[str, Any]]:
        t = schema.pension_payments
        return self._all(select(t).where(t.c.id_number == id_number).order_by(t.c.month.desc()).limit(count))

    def card_orders(self, id_number: str) -> list[dict[str, Any]]:
        t = schema.card_orders
        return self._all(select(t).where(t.c.id_number == id_number).order_by(t.c.applied_on.desc()))

    def active_card(self, id_number: str) -> dict[str, Any] | None:
        t = schema.cards
        rows = self._all(select(t).where(t.c.id_number == id_number, t.c.status.in_(("active", "not_activated"))))
        return rows[0] if rows else None

    def report_card_loss(self, id_number: str, lapse_on: date, *, channel: str = "12333电话") -> LossReport:
        """Freeze the caller's card and record the loss report; one transaction."""
        card = self.active_card(id_number)
        if card is None:
            raise LookupError("no active card")
        now = datetime.now()
        try:
            with self.engine.begin() as conn:
                t = schema.card_loss_reports
                today_count = conn.execute(
                    select(func.count()).select_from(t).where(t.c.reference.like(now.strftime("%y%m%d") + "%"))
                ).scalar_one()
                reference = f"{now:%y%m%d}{today_count + 1:04d}"
                conn.execute(
                    insert(t).values(
                        reference=reference,
                        id_number=id_number,
                        card_no=card["card_no"],
                        reported_at=now,
                        lapse_on=lapse_on,
                        channel=channel,
                    )
                )
                conn.execute(
                    update(schema.cards).where(schema.cards.c.card_no == card["card_no"]).values(status="lost")
                )
        except SQLAlchemyError as exc:
            raise BackendError(f"card loss report failed: {type(exc).__name__}") from exc
        return LossReport(reference=reference, card_no=card["card_no"], lapse_on=lapse_on)

    def arbitration_cases(self, id_number: str) -> list[dict[str, Any]]:
        t = schema.arbitration_cases
        return self._all(select(t).where(t.c.id_number == id_number).order_by(t.c.filed_on.desc()))

    def certificates(self, id_number: str) -> list[dict[str, Any]]:
        t = schema.skill_certificates
        return self._all(select(t).where(t.c.id_number == id_number).order_by(t.c.issued_on.desc()))

    def jobs(self, city: str | None, category: str | None, limit: int = 3) -> list[dict[str, Any]]:
        t = schema.jobs
        query = select(t).order_by(t.c.posted_on.desc(), t.c.salary_max.desc()).limit(limit)
        if city:
            query = query.where(t.c.city == city)
        if category and category != "不限":
            query = query.where(t.c.category == category)
        return self._all(query)


def add_working_days(start: date, days: int) -> date:
    """`days` working days after `start` (Monday to Friday; public holidays are not modelled)."""
    day = start
    while days > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day
