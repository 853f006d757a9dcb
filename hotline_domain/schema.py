"""Tables of the business database (SQLAlchemy Core; SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, Float, ForeignKey, Integer, MetaData, String, Table

metadata = MetaData()

citizens = Table(
    "citizens",
    metadata,
    Column("id_number", String(18), primary_key=True),
    Column("name", String(16), nullable=False),
    Column("gender", String(6), nullable=False),  # male / female
    Column("birth_date", Date, nullable=False),
    Column("city", String(16), nullable=False),
    Column("phone", String(16), nullable=False),
    Column("password_hash", String(128), nullable=False),  # scrypt$n$r$p$salt$key (business.py), ~83 chars
    Column("salt", String(16), nullable=False),  # only for old sha256(salt + password) hex hashes; "" otherwise
    Column("job_type", String(10), nullable=False),  # worker / cadre / flexible
)

contributions = Table(
    "contributions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("year", Integer, nullable=False),
    Column("months", Integer, nullable=False),
    Column("base", Float, nullable=False),  # monthly contribution base, yuan
    Column("personal_amount", Float, nullable=False),  # 8% of base x months into the personal account
    Column("city", String(16), nullable=False),
)

pension_payments = Table(
    "pension_payments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("month", String(7), nullable=False),  # YYYY-MM
    Column("amount", Float, nullable=False),
    Column("status", String(12), nullable=False),  # paid / pending / suspended
    Column("paid_on", Date),
    Column("note", String(64)),
)

cards = Table(
    "cards",
    metadata,
    Column("card_no", String(12), primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("city", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # active / not_activated / lost / replaced
    Column("issued_on", Date, nullable=False),
)

card_orders = Table(
    "card_orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("kind", String(12), nullable=False),  # new / replacement
    Column("status", String(12), nullable=False),  # accepted / producing / ready / collected
    Column("applied_on", Date, nullable=False),
    Column("ready_on", Date),
    Column("pickup_place", String(64), nullable=False),
)

card_loss_reports = Table(
    "card_loss_reports",
    metadata,
    Column("reference", String(12), primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("card_no", String(12), nullable=False),
    Column("reported_at", DateTime, nullable=False),
    Column("lapse_on", Date, nullable=False),
    Column("channel", String(16), nullable=False),
)

arbitration_cases = Table(
    "arbitration_cases",
    metadata,
    Column("case_number", String(12), primary_key=True),  # YYYY-N, spoken 某劳人仲字〔YYYY〕第N号
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("respondent", String(32), nullable=False),
    Column("commission", String(32), nullable=False),
    Column("filed_on", Date, nullable=False),
    Column("status", String(16), nullable=False),  # accepted / hearing_scheduled / mediating / awarded / closed
    Column("hearing_on", Date),
)

skill_certificates = Table(
    "skill_certificates",
    metadata,
    Column("certificate_no", String(20), primary_key=True),
    Column("id_number", String(18), ForeignKey("citizens.id_number"), index=True, nullable=False),
    Column("title", String(16), nullable=False),  # 电工, 焊工 ...
    Column("level", String(8), nullable=False),  # 五级 ... 一级
    Column("issued_on", Date, nullable=False),
    Column("issuer", String(32), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("city", String(16), index=True, nullable=False),
    Column("category", String(8), index=True, nullable=False),
    Column("title", String(32), nullable=False),
    Column("employer", String(32), nullable=False),
    Column("district", String(16), nullable=False),
    Column("salary_min", Integer, nullable=False),
    Column("salary_max", Integer, nullable=False),
    Column("posted_on", Date, nullable=False),
)
