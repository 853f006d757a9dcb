"""The consoles' backend on Redis: every live call of every gateway, the queues, the live events, the actions.

Reads come straight from Redis (`hotline:call:*`, the queues, `hotline:events`); actions on a call go to the
desk of the gateway that has the call (`voice_gateway.desk.command`), which answers whether it could. What only
a console can judge is judged here: an agent acts on calls of their own skills and on their own calls; a
wrap-up belongs to the agent who had the call; callbacks are worked from the shared list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue, HandoffReason
from hotline_domain.privacy import redact
from voice_gateway import desk, live_events
from voice_gateway.call_store import ACTIVE, call_summary, stats_key, turn_lines
from voice_gateway.console.backend import ActionRefused, AgentStatus, CallAction, CallbackAction
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import AGENTS

DISPOSITIONS = {"resolved": "已解决", "callback": "需回电", "transferred": "已转办", "other": "其他"}
MAX_NOTE = 2000
BOOKKEEPING_SLOTS = {"verified", "identity_failures", "identity_failed"}  # the dialogue's own state, not the caller's
PRESENCE_S = 10.0  # an agent's open page renews their presence this often
DIAL_WAIT_S = 40.0  # a callback rings for up to 30 s (the SIP ring timeout), then its CANCEL is answered
LONG_SILENCE_PROMPTS = ("您还在吗",)  # the bot's reprompt after the caller said nothing
REASON_LABELS = {
    HandoffReason.CALLER_REQUEST: "来电人要求转人工",
    HandoffReason.NOT_UNDERSTOOD: "连续两次没听懂",
    HandoffReason.VERIFICATION_FAILED: "身份核验三次未通过",
    HandoffReason.COMPLAINT: "投诉",
    HandoffReason.URGENT_WAGE_ARREARS: "紧急欠薪",
    HandoffReason.ELDERLY_CALLER: "65岁以上来电人",
    HandoffReason.BACKEND_ERROR: "业务系统出错",
    HandoffReason.KEYPAD_ZERO: "来电人按0转人工",
    HandoffReason.NO_INPUT: "来电人长时间没有说话",
    HandoffReason.DIALOGUE_UNAVAILABLE: "对话服务故障",
    HandoffReason.RECOGNISER_UNAVAILABLE: "语音识别故障",
    HandoffReason.SYNTHESISER_UNAVAILABLE: "语音合成故障",
    HandoffReason.STORE_UNAVAILABLE: "数据服务故障",
    HandoffReason.SERVICE_CLOSING: "服务器维护，转人工",
}


class ConsoleQueues(Protocol):
    """What the consoles need of the queues (voice_gateway.queueing.SkillQueues)."""

    async def snapshot(self) -> dict: ...

    async def set_agent(self, name: str, status: str, skills: tuple[HandoffQueue, ...]) -> None: ...

    async def callbacks(self) -> list[dict]: ...

    async def set_callback_state(self, callback_id: str, state: str) -> None: ...

    async def seen(self, name: str) -> None: ...


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def transcript(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored turns as transcript lines; a caller line carries the intent its answer understood."""
    lines: list[dict[str, Any]] = []
    said: dict[Any, dict[str, Any]] = {}
    for turn in stored:
        for line in turn_lines(turn):
            line = {"intent": None, "confidence": None, **line}
            if line["speaker"] == "caller":
                said[line["seq"]] = line
            elif line["intent"] and line["seq"] in said:
                said[line["seq"]]["intent"] = line["intent"]
            lines.append(line)
    return lines


def frustration(lines: list[dict[str, Any]]) -> list[str]:
    """Why a supervisor may want to look at this call now (Chinese, for the dashboard)."""
    caller = [line for line in lines if line["speaker"] == "caller"]
    intents = [line.get("intent") for line in caller]
    found = []
    if "complain" in intents:
        found.append("来电人投诉")
    if sum(1 for i in intents if i in ("nlu_fallback", "out_of_scope")) >= 2:
        found.append("两次没听懂")
    texts = [line["text"] for line in caller]
    if intents.count("repeat") >= 2 or len(texts) != len(set(texts)):
        found.append("来电人在重复")
    if any(any(p in line["text"] for p in LONG_SILENCE_PROMPTS) for line in lines if line["speaker"] == "bot"):
        found.append("长时间沉默")
    return found


class RedisBackend:
    """`ConsoleBackend` on the Redis every gateway shares."""

    def __init__(self, redis: Redis, queues: ConsoleQueues, command_timeout_s: float = desk.COMMAND_TTL_S) -> None:
        self.redis = redis
        self.queues = queues
        self.command_timeout_s = command_timeout_s

    # --- reading ---
    async def _record(self, call_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(f"hotline:call:{call_id}")
        return {_text(k): _text(v) for k, v in raw.items()}

    async def _turns(self, call_id: str) -> list[dict[str, Any]]:
        return [json.loads(t) for t in await self.redis.lrange(f"hotline:call:{call_id}:turns", 0, -1)]

    async def _call(self, call_id: str, record: dict[str, str]) -> dict[str, Any]:
        lines = transcript(await self._turns(call_id))
        reasons = frustration(lines)
        started = float(record.get("started") or 0)
        return {
            **call_summary(call_id, record),
            "duration_s": round(time.time() - started, 1) if started else 0.0,
            "turns": lines,
            "frustrated": bool(reasons),
            "frustration": reasons,
        }

    async def calls(self) -> list[dict]:
        ids = sorted(_text(i) for i in await self.redis.smembers(ACTIVE))
        live = []
        for call_id in ids:
            record = await self._record(call_id)
            if record and record.get("console") != "ended":
                live.append(await self._call(call_id, record))
        return sorted(live, key=lambda c: c.get("started") or 0)

    async def queue(self) -> dict:
        return await self.queues.snapshot()

    async def card(self, user: ConsoleUser, call_id: str) -> dict:
        record = await self._live(call_id)
        self._may_see(user, record)
        handoff = json.loads(record.get("handoff") or "{}")
        call = await self._call(call_id, record)
        reason = handoff.get("reason", "")
        return {
            **call,
            "reason": reason,
            "reason_label": _reason_label(reason),
            "identity": handoff.get("identity") or {"id_number": None, "verified": False},
            "intent_path": [line["intent"] for line in call["turns"] if line["speaker"] == "caller" and line["intent"]],
            "slots": {k: v for k, v in (handoff.get("slots") or {}).items() if k not in BOOKKEEPING_SLOTS},
            "summary": handoff.get("summary", ""),
            "earlier_calls": await self._earlier(handoff.get("caller_key") or record.get("caller_key"), call_id),
            "waited_s": round(time.time() - float(handoff["at"]), 1) if handoff.get("at") else None,
        }

    async def _earlier(self, caller_key: str | None, call_id: str) -> list[dict]:
        if not caller_key:
            return []
        ids = [_text(i) for i in await self.redis.zrevrange(f"hotline:caller:{caller_key}:calls", 0, 5)]
        earlier = []
        for other in ids:
            if other == call_id:
                continue
            record = await self._record(other)
            wrapup = json.loads(record.get("wrapup") or "{}")
            handoff = json.loads(record.get("handoff") or "{}")
            started = float(record.get("started") or 0)
            earlier.append(
                {
                    "call_id": other,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)) if started else None,
                    "reason": _reason_label(handoff.get("reason", "")) if handoff else "智能客服办结",
                    "disposition": DISPOSITIONS.get(wrapup.get("disposition", ""), ""),
                }
            )
        return earlier[:5]

    async def stats(self) -> dict:
        day = await self.redis.hgetall(stats_key())
        figures = {_text(k): float(_text(v)) for k, v in day.items()}
        gaps = [float(g) for g in await self.redis.lrange(stats_key() + ":gaps", 0, -1)]
        waits = figures.get("waits", 0)
        return {
            "calls": int(figures.get("calls", 0)),
            "bot_resolved": int(figures.get("bot_resolved", 0)),
            "handed_over": int(figures.get("handed_over", 0)),
            "abandoned": int(figures.get("abandoned", 0)),
            "average_wait_s": round(figures.get("wait_total_s", 0) / waits, 1) if waits else None,
            "turn_gap_p95_ms": round(statistics.quantiles(gaps, n=20)[-1]) if len(gaps) >= 2 else None,
        }

    # --- live events ---
    async def events(self, user: ConsoleUser, last_event_id: str | None) -> AsyncIterator[tuple[str, str, dict]]:
        supervisor = user.role in (Role.SUPERVISOR, Role.ADMIN)
        presence = None if supervisor else asyncio.create_task(self._present(user.name))
        try:
            async for event_id, kind, data in live_events.follow(self.redis, last_event_id):
                if supervisor or await self._agent_sees(user, kind, data):
                    yield event_id, kind, data
        finally:
            if presence is not None:
                presence.cancel()

    async def _present(self, name: str) -> None:
        """While an agent's page follows the events, the agent is there (SkillQueues.AGENT_STALE_S)."""
        while True:
            with contextlib.suppress(Exception):
                await self.queues.seen(name)
            await asyncio.sleep(PRESENCE_S)

    async def _agent_sees(self, user: ConsoleUser, kind: str, data: dict) -> bool:
        if kind in ("queue", "callback"):
            return True
        if kind == "call":
            return user.name in (data.get("agent"), data.get("last_agent")) or (
                data.get("state") == "queued" and data.get("queue") in {s.value for s in user.skills}
            )
        if kind in ("turn", "partial"):
            return _text(await self.redis.hget(f"hotline:call:{data.get('call_id')}", "agent")) == user.name
        return False

    # --- acting ---
    async def _live(self, call_id: str) -> dict[str, str]:
        record = await self._record(call_id)
        if not record or record.get("console") == "ended":
            raise ActionRefused(404, "通话不存在或已结束")
        return record

    def _may_see(self, user: ConsoleUser, record: dict[str, str]) -> None:
        if user.role in (Role.SUPERVISOR, Role.ADMIN) or record.get("agent") == user.name:
            return
        if record.get("console") == "queued" and record.get("queue") in {s.value for s in user.skills}:
            return
        raise ActionRefused(403, "这通电话不属于您的技能队列")

    async def act(self, user: ConsoleUser, action: CallAction, call_id: str, body: dict) -> dict:
        if action is CallAction.WRAPUP:
            return await self._wrap_up(user, call_id, body)
        record = await self._live(call_id)
        if action is CallAction.ACCEPT:
            if user.role is Role.SUPERVISOR:
                raise ActionRefused(403, "班长请使用接管")
            self._may_see(user, record)
        elif action in (CallAction.HANGUP, CallAction.RETURN) and record.get("agent") != user.name:
            raise ActionRefused(403, "这不是您的通话")
        answer = await desk.command(
            self.redis, record.get("gateway", ""), action.value, call_id, user.name, body, self.command_timeout_s
        )
        if not answer.pop("ok", False):
            raise ActionRefused(int(answer.get("status", 500)), str(answer.get("message", "操作失败")))
        return answer

    async def _wrap_up(self, user: ConsoleUser, call_id: str, body: dict) -> dict:
        record = await self._record(call_id)
        if not record:
            raise ActionRefused(404, "通话不存在")
        if record.get("last_agent") != user.name:
            raise ActionRefused(403, "只有接听这通电话的坐席可以填写小结")
        disposition, note = body.get("disposition"), body.get("note", "")
        if disposition not in DISPOSITIONS or not isinstance(note, str):
            raise ActionRefused(400, "请选择处理结果，小结应为文字")
        wrapup = {"note": redact(note[:MAX_NOTE]), "disposition": disposition, "by": user.name, "at": time.time()}
        await self.redis.hset(f"hotline:call:{call_id}", "wrapup", json.dumps(wrapup, ensure_ascii=False))
        await live_events.publish(self.redis, "call", {**call_summary(call_id, record), "wrapup": disposition})
        return {"wrapup": wrapup}

    async def set_status(self, user: ConsoleUser, status: AgentStatus, skills: tuple[HandoffQueue, ...]) -> dict:
        await self.queues.set_agent(user.name, status.value, skills)
        return {"status": status.value, "skills": [s.value for s in skills]}

    async def agent_status(self, user: ConsoleUser) -> dict:
        raw = await self.redis.hget(AGENTS, user.name)
        try:
            kept = json.loads(raw) if raw else {}
        except ValueError:
            kept = {}
        own = [s.value for s in user.skills]
        skills = [s for s in kept.get("skills", own) if s in own or user.role is Role.ADMIN]
        return {"status": kept.get("status") or "offline", "skills": skills, "all_skills": own}

    async def callback(self, user: ConsoleUser, callback_id: str, action: CallbackAction, body: dict) -> dict:
        known = {str(c.get("id")): c for c in await self.queues.callbacks()}
        entry = known.get(callback_id)
        if entry is None:
            raise ActionRefused(404, "没有这条回电登记")
        if entry.get("state") == "done":
            raise ActionRefused(409, "这条回电已经完成")
        if action is CallbackAction.DONE:
            await self.queues.set_callback_state(callback_id, "done")
            return {"callback": {**entry, "state": "done"}}
        if entry.get("state") == "dialling":
            raise ActionRefused(409, "这条回电正在拨打")
        gateway = str(entry.get("gateway") or (await self._record(str(entry.get("call_id")))).get("gateway", ""))
        if not gateway:
            raise ActionRefused(409, "找不到可以外呼的服务器，请用电话回拨后标记完成")
        offer = {"sdp": body.get("sdp"), "type": body.get("type"), "callback_id": callback_id}
        answer = await desk.command(  # the callee answering can take the ring timeout: waited for that long
            self.redis,
            gateway,
            "dial",
            f"callback-{callback_id}",
            user.name,
            {**offer, "queue": entry.get("queue")},
            max(self.command_timeout_s, DIAL_WAIT_S),
        )
        if not answer.pop("ok", False):
            raise ActionRefused(int(answer.get("status", 500)), str(answer.get("message", "回拨失败")))
        return {**answer, "callback": {**entry, "state": "dialling"}}


def _reason_label(reason: str) -> str:
    try:
        return REASON_LABELS[HandoffReason(reason)]
    except (ValueError, KeyError):
        return reason
