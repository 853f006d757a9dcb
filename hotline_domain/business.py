"""The business database: what the agent looks up and changes for a verified caller.

`BusinessDb` is a small repository over SQLAlchemy Core. It works with SQLAlchemy 1.4 (the Rasa action
server's environment) and 2.x (the gateway's). Errors surface as `BackendError`, so that the dialogue can
apologise and hand off instead of guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from hotline_domain import schema

DEFAULT_DB_PATH = Path(__file__).resolve().parent.parent / "var" / "business.sqlite3"


class BackendError(RuntimeError):
    """The business database could not answer."""


def database_url() -> str:
    return os.environ.get("HOTLINE_DB_URL") or f"sqlite:///{DEFAULT_DB_PATH}"


def hash_password(password: str, salt: str) -> str:
    return hashlib.sha256((salt + password).encode()).hexdigest()


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
        person = self.citizen(id_number)
        if person is None:
            return False
        return hmac.compare_digest(person["password_hash"], hash_password(password, person["salt"]))

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
