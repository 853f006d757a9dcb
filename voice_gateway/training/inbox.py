"""The trainer's inbox: every conversation's turns from the dialogue's event stream, and the caller turns the
review rules (review.py) mark, kept in the consoles' database (SQLAlchemy Core, as store.py).

    Rasa --masked_broker--> Redis stream hotline:dialogue:events --InboxCollector--> dialogue_turns
                                                                                 \\-> inbox_items (marked turns)

Tables: `dialogue_turns` (sender, who, masked text, intent, confidence, runner-ups, channel; kept
`TURNS_KEPT_DAYS`) and `inbox_items` (one per marked caller turn: reasons, the trainer's verdict). Text arrives
masked (hotline_domain/dialogue_events.py) and is stored as it came. The calls here block: run them in a thread.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from hotline_domain.dialogue_events import DialogueEvent, EventKind
from voice_gateway.training.review import Reason, Turn, reasons_for

TURNS_KEPT_DAYS = 30
CONTEXT_TURNS = 4  # turns shown before and after a marked one
RULES_WINDOW = 12  # the newest turns of a conversation the rules look at

metadata = MetaData()

turns_table = Table(
    "dialogue_turns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sender", String(128), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),  # Unix seconds
    Column("who", String(8), nullable=False),  # caller | bot
    Column("text", Text, nullable=False, default=""),
    Column("intent", String(64), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("ranking", Text, nullable=False, default="[]"),  # JSON [{"intent", "confidence"}]
    Column("channel", String(32), nullable=False, default=""),
    Column("handoff", String(32), nullable=True),
    Column("model", String(64), nullable=False, default=""),  # the model id that understood a caller's turn
)

items_table = Table(
    "inbox_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("turn_id", Integer, ForeignKey("dialogue_turns.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("sender", String(128), nullable=False, index=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("reasons", String(128), nullable=False),  # comma-separated Reason names
    Column("reviewed", Boolean, nullable=False, default=False, index=True),
    Column("verdict", String(24), nullable=True),  # annotated | dismissed
    Column("reviewed_by", String(64), nullable=True),
    Column("reviewed_at", Float, nullable=True),
    Column("annotation", Text, nullable=True),  # JSON: the accepted text, intent, entities, commit
)


@dataclass(frozen=True)
class InboxFilter:
    reviewed: bool | None = False  # None: both
    intent: str | None = None
    channel: str | None = None
    reason: str | None = None
    intents: tuple[str, ...] | None = None  # a service domain's intents
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: float | None = None  # Unix seconds
    until: float | None = None
    limit: int = 200


@dataclass
class InboxItem:
    id: int
    turn_id: int
    sender: str
    text: str
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    channel: str
    created_at: float
    reasons: list[str]
    reviewed: bool
    verdict: str | None
    annotation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "intent": self.intent,
            "confidence": self.confidence,
            "channel": self.channel,
            "call_id": self.sender,
            "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="seconds"),
            "reasons": self.reasons,
            "ranking": self.ranking,
            "reviewed": self.reviewed,
            "verdict": self.verdict,
            **self.extra,
        }


def _turn(row: Any) -> Turn:
    return Turn(row.id, row.who, row.text, row.intent, row.confidence, row.handoff)


class InboxStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def add(self, event: DialogueEvent, channel: str) -> list[int]:
        """One event of a conversation: stored as a turn (or a taken-back turn removed); the ids of the inbox
        items it made or changed."""
        with self.engine.begin() as db:
            if event.kind is EventKind.REWIND:  # the caller's last turn was replaced by what they said next
                last = db.execute(
                    select(turns_table.c.id)
                    .where(turns_table.c.sender == event.sender, turns_table.c.who == "caller")
                    .order_by(turns_table.c.id.desc())
                    .limit(1)
                ).scalar()
                if last is not None:
                    db.execute(delete(items_table).where(items_table.c.turn_id == last))
                    db.execute(
                        delete(turns_table).where(turns_table.c.id >= last, turns_table.c.sender == event.sender)
                    )
                return []
            if event.kind is EventKind.SESSION:
                return []
            row = {
                "sender": event.sender,
                "at": event.at or time.time(),
                "who": "caller" if event.kind is EventKind.USER else "bot",
                "text": event.text,
                "intent": event.intent,
                "confidence": event.confidence,
                "ranking": json.dumps([{"intent": r.intent, "confidence": r.confidence} for r in event.ranking]),
                "channel": channel,
                "handoff": event.handoff,
                "model": event.model,
            }
            db.execute(insert(turns_table).values(**row))
            recent = db.execute(
                select(turns_table)
                .where(turns_table.c.sender == event.sender)
                .order_by(turns_table.c.id.desc())
                .limit(RULES_WINDOW)
            ).all()
            marks = reasons_for([_turn(r) for r in reversed(recent)])
            return [self._mark(db, event.sender, turn_id, reasons) for turn_id, reasons in marks.items()]

    @staticmethod
    def _mark(db: Any, sender: str, turn_id: int, reasons: set[Reason]) -> int:
        existing = db.execute(select(items_table).where(items_table.c.turn_id == turn_id)).first()
        if existing is None:
            names = ",".join(sorted(str(r) for r in reasons))
            values = {"turn_id": turn_id, "sender": sender, "created_at": time.time(), "reasons": names}
            return int(db.execute(insert(items_table).values(**values)).inserted_primary_key[0])
        merged = ",".join(sorted(set(existing.reasons.split(",")) | {str(r) for r in reasons}))
        db.execute(update(items_table).where(items_table.c.id == existing.id).values(reasons=merged))
        return int(existing.id)

    def _query(self, where: list[Any], limit: int) -> list[InboxItem]:
        t, i = turns_table, items_table
        query = (
            select(i, t.c.text, t.c.intent, t.c.confidence, t.c.ranking, t.c.channel)
            .join(t, t.c.id == i.c.turn_id)
            .where(*where)
            .order_by(i.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [
            InboxItem(
                id=r.id,
                turn_id=r.turn_id,
                sender=r.sender,
                text=r.text,
                intent=r.intent,
                confidence=r.confidence,
                ranking=json.loads(r.ranking or "[]"),
                channel=r.channel,
                created_at=r.created_at,
                reasons=r.reasons.split(","),
                reviewed=bool(r.reviewed),
                verdict=r.verdict,
                annotation=json.loads(r.annotation) if r.annotation else None,
            )
            for r in rows
        ]

    @staticmethod
    def _where(f: InboxFilter) -> list[Any]:
        t, i = turns_table, items_table
        where: list[Any] = []
        if f.reviewed is not None:
            where.append(i.c.reviewed.is_(f.reviewed))
        if f.intent:
            where.append(t.c.intent == f.intent)
        if f.intents is not None:
            where.append(t.c.intent.in_(f.intents))
        if f.channel:
            where.append(t.c.channel == f.channel)
        if f.reason:
            where.append(i.c.reasons.contains(f.reason))
        if f.min_confidence is not None:
            where.append(t.c.confidence >= f.min_confidence)
        if f.max_confidence is not None:
            where.append(t.c.confidence <= f.max_confidence)
        if f.since is not None:
            where.append(i.c.created_at >= f.since)
        if f.until is not None:
            where.append(i.c.created_at < f.until)
        return where

    def items(self, f: InboxFilter = InboxFilter()) -> list[InboxItem]:
        return self._query(self._where(f), f.limit)

    def counts(self, f: InboxFilter = InboxFilter()) -> dict[str, int]:
        """Marked turns per predicted intent, under the same filter."""
        t, i = turns_table, items_table
        query = select(t.c.intent, func.count()).join(t, t.c.id == i.c.turn_id).where(*self._where(f))
        with self.engine.connect() as db:
            rows = db.execute(query.group_by(t.c.intent)).all()
        return {str(intent or "?"): int(n) for intent, n in sorted(rows, key=lambda r: -r[1])}

    def item(self, item_id: int) -> InboxItem | None:
        found = self._query([items_table.c.id == item_id], 1)
        return found[0] if found else None

    def context(self, item: InboxItem) -> list[dict[str, Any]]:
        """The conversation around a marked turn, oldest first."""
        t = turns_table
        with self.engine.connect() as db:
            before = db.execute(
                select(t)
                .where(t.c.sender == item.sender, t.c.id < item.turn_id)
                .order_by(t.c.id.desc())
                .limit(CONTEXT_TURNS)
            ).all()
            after = db.execute(
                select(t)
                .where(t.c.sender == item.sender, t.c.id >= item.turn_id)
                .order_by(t.c.id)
                .limit(CONTEXT_TURNS + 1)
            ).all()
        rows = [*reversed(before), *after]
        return [
            {
                "who": r.who,
                "text": r.text,
                "intent": r.intent,
                "confidence": r.confidence,
                "model": r.model,
                "current": r.id == item.turn_id,
            }
            for r in rows
        ]

    def spoken_index(self, item: InboxItem) -> int:
        """Which of the conversation's caller turns this is (1 = the first), counting keypad and greeting too."""
        t = turns_table
        with self.engine.connect() as db:
            return int(
                db.execute(
                    select(func.count()).where(t.c.sender == item.sender, t.c.who == "caller", t.c.id <= item.turn_id)
                ).scalar()
                or 0
            )

    def review(self, item_id: int, verdict: str, by: str, annotation: dict[str, Any] | None = None) -> None:
        values = {
            "reviewed": True,
            "verdict": verdict,
            "reviewed_by": by,
            "reviewed_at": time.time(),
            "annotation": None if annotation is None else json.dumps(annotation, ensure_ascii=False),
        }
        with self.engine.begin() as db:
            db.execute(update(items_table).where(items_table.c.id == item_id).values(**values))

    def annotated(self) -> list[InboxItem]:
        """Every turn a trainer accepted as a training example (the evaluation's extra set)."""
        return self._query([items_table.c.verdict == "annotated"], 10_000)

    def purge(self, now: float | None = None) -> int:
        """Turns (and their items) older than TURNS_KEPT_DAYS; how many went."""
        cutoff = (now or time.time()) - TURNS_KEPT_DAYS * 86400
        with self.engine.begin() as db:
            old = select(turns_table.c.id).where(turns_table.c.at < cutoff)
            db.execute(delete(items_table).where(items_table.c.turn_id.in_(old)))
            return int(db.execute(delete(turns_table).where(turns_table.c.at < cutoff)).rowcount or 0)
