"""The consoles' database: users and the audit log (SQLAlchemy Core; SQLite by default, any SQLAlchemy URL).

Passwords are argon2id hashes from argon2-cffi's `PasswordHasher` (its defaults, RFC 9106's low-memory profile:
64 MiB, 3 passes, about 120 ms a verify on this 2-core machine). A hash made with other parameters still
verifies and is replaced by a new one on the next successful sign-in. The calls here block (the database,
argon2): the web routes run them in a thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from voice_gateway.console.roles import ConsoleUser, Role, parse_skills

if TYPE_CHECKING:
    from voice_gateway.config import Settings

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("skills", String(255), nullable=False, default=""),  # HandoffQueue names, comma-separated
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),  # UTC
    Column("who", String(64), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("call_id", String(128), nullable=True, index=True),
    Column("detail", Text, nullable=False, default=""),
)

NAME = re.compile(r"[\w.@-]{1,64}")  # letters (Chinese too), digits, _ . @ -
MIN_PASSWORD = 8


def database_url(settings: Settings) -> str:
    return settings.gateway.console_db_url or f"sqlite:///{settings.var_dir / 'console.sqlite3'}"


def open_database(url: str) -> Engine:
    """The engine for `url`, with the tables created if they are missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def utc(at: datetime) -> datetime:
    """A time read back from the database as an aware UTC time (SQLite drops the zone)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class UserError(ValueError):
    """A user that cannot be added or changed as asked; the message says why."""


class SignInRefused(Exception):
    """No user for this name and password; `reason` is for the audit log, never for the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UserRecord:
    """A row of `hotline users list`."""

    name: str
    role: Role
    skills: tuple[str, ...]
    disabled: bool
    created_at: datetime


class UserStore:
    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def add(self, name: str, role: Role | str, password: str, skills: str | list[str] = "") -> ConsoleUser:
        if not NAME.fullmatch(name):
            raise UserError("a user name is 1 to 64 letters, digits or _ . @ -")
        try:
            role = Role(role)
            queues = parse_skills(skills)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if len(password) < MIN_PASSWORD:
            raise UserError(f"a password has at least {MIN_PASSWORD} characters")
        row = {
            "name": name,
            "role": role.value,
            "password_hash": self.hasher.hash(password),
            "skills": ",".join(q.value for q in queues),
            "disabled": False,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as db:
                user_id = db.execute(insert(users).values(**row)).inserted_primary_key[0]
        except IntegrityError:
            raise UserError(f"a user named {name!r} exists already") from None
        return ConsoleUser(id=user_id, name=name, role=role, skills=queues)

    def active(self, user_id: int, name: str) -> ConsoleUser | None:
        """The user a session names, if they still exist under that name and are not disabled."""
        with self.engine.connect() as db:
            row = db.execute(select(users).where(users.c.id == user_id)).mappings().first()
        if row is None or row["name"] != name or row["disabled"]:
            return None
        return _user(row)

    def authenticate(self, name: str, password: str) -> ConsoleUser:
        with self.engine.connect() as db:
            row = db.execute(select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            self._verify(self._dummy(), password)  # the same work as for a real user: no timing difference
            raise SignInRefused("unknown user")
        if not self._verify(row["password_hash"], password):
            raise SignInRefused("wrong password")
        if row["disabled"]:
            raise SignInRefused("disabled")
        if self.hasher.check_needs_rehash(row["password_hash"]):
            with self.engine.begin() as db:
                db.execute(
                    update(users).where(users.c.id == row["id"]).values(password_hash=self.hasher.hash(password))
                )
        return _user(row)

    def list(self) -> list[UserRecord]:
        with self.engine.connect() as db:
            rows = db.execute(select(users).order_by(users.c.name)).mappings().all()
        return [
            UserRecord(
                name=r["name"],
                role=Role(r["role"]),
                skills=tuple(s for s in r["skills"].split(",") if s),
                disabled=bool(r["disabled"]),
                created_at=utc(r["created_at"]),
            )
            for r in rows
        ]

    def disable(self, name: str) -> None:
        with self.engine.begin() as db:
            changed = db.execute(update(users).where(users.c.name == name).values(disabled=True)).rowcount
        if not changed:
            raise UserError(f"no user named {name!r}")

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash("not a password of anyone")
        return self._dummy_hash


def _user(row: dict) -> ConsoleUser:
    return ConsoleUser(id=row["id"], name=row["name"], role=Role(row["role"]), skills=parse_skills(row["skills"]))
