"""The audit log: who did what to which call, and when (UTC), kept in the consoles' database.

Written for every accepted call action (listen, whisper, barge, take-over, leave, accept, return, hang-up,
wrap-up; an action's WebRTC offer is not kept), every callback dialled or marked done, every agent status change,
every sign-in, failed sign-in and sign-out, every change to a user, and the trainer's acts (a turn's audio played,
an annotation, a story edit, a retraining, a promotion, an override, a roll back).
Shown to admins, newest first, on /admin/audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from voice_gateway.console.store import audit, utc


class AuditAction(str, Enum):
    ACCEPT = "accept"
    HANGUP = "hangup"
    WRAPUP = "wrapup"
    RETURN = "return"
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"
    TAKEOVER = "takeover"
    LEAVE = "leave"
    STATUS = "status"
    CALLBACK_DIAL = "callback_dial"
    CALLBACK_DONE = "callback_done"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    USER_ADD = "user_add"
    USER_DISABLE = "user_disable"
    INBOX_AUDIO = "inbox_audio"
    ANNOTATE = "annotate"
    DISMISS = "dismiss"
    STORY_EDIT = "story_edit"
    RETRAIN = "retrain"
    PROMOTE = "promote"
    PROMOTE_OVERRIDE = "promote_override"
    ROLLBACK = "rollback"

    def __str__(self) -> str:
        return str(self.value)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    AuditAction.ACCEPT: "接听",
    AuditAction.HANGUP: "挂断",
    AuditAction.WRAPUP: "话后小结",
    AuditAction.RETURN: "转回智能客服",
    AuditAction.LISTEN: "监听",
    AuditAction.WHISPER: "耳语",
    AuditAction.BARGE: "强插",
    AuditAction.TAKEOVER: "接管",
    AuditAction.LEAVE: "退出监听",
    AuditAction.STATUS: "坐席状态",
    AuditAction.CALLBACK_DIAL: "拨打回电",
    AuditAction.CALLBACK_DONE: "回电完成",
    AuditAction.LOGIN: "登录",
    AuditAction.LOGIN_FAILED: "登录失败",
    AuditAction.LOGOUT: "退出登录",
    AuditAction.USER_ADD: "新增用户",
    AuditAction.USER_DISABLE: "停用用户",
    AuditAction.INBOX_AUDIO: "收听训练录音",
    AuditAction.ANNOTATE: "标注例句",
    AuditAction.DISMISS: "忽略收件",
    AuditAction.STORY_EDIT: "修改故事规则",
    AuditAction.RETRAIN: "重新训练",
    AuditAction.PROMOTE: "模型上线",
    AuditAction.PROMOTE_OVERRIDE: "强制上线",
    AuditAction.ROLLBACK: "模型回滚",
}

MAX_DETAIL = 1000  # characters of detail kept per entry


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime  # UTC
    who: str
    action: AuditAction | str  # a name this version does not know stays a string
    call_id: str | None
    detail: str

    @property
    def label(self) -> str:
        return self.action.label if isinstance(self.action, AuditAction) else str(self.action)


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, who: str, action: AuditAction, call_id: str | None = None, detail: str = "") -> None:
        row = {
            "at": datetime.now(UTC),
            "who": who[:64],
            "action": AuditAction(action).value,
            "call_id": call_id,
            "detail": detail[:MAX_DETAIL],
        }
        with self.engine.begin() as db:
            db.execute(insert(audit).values(**row))

    def entries(self, *, call_id: str | None = None, who: str | None = None, limit: int = 500) -> list[AuditEntry]:
        """Newest first, filtered by call id and/or user (exact matches)."""
        query = select(audit).order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit)
        if call_id:
            query = query.where(audit.c.call_id == call_id)
        if who:
            query = query.where(audit.c.who == who)
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        return [
            AuditEntry(
                id=r["id"],
                at=utc(r["at"]),
                who=r["who"],
                action=_action(r["action"]),
                call_id=r["call_id"],
                detail=r["detail"],
            )
            for r in rows
        ]


def _action(name: str) -> AuditAction | str:
    try:
        return AuditAction(name)
    except ValueError:
        return name
