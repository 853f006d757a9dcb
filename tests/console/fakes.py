"""An in-memory `ConsoleBackend` for the console's web tests: a few calls, scripted and published events, the
refusals, and (with `media=True`) a real aiortc peer answering the pages' WebRTC offers (media.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hotline_domain.contract import HandoffQueue
from voice_gateway.console.backend import (
    AGENT_ACTIONS,
    MEDIA_ACTIONS,
    ActionRefused,
    AgentStatus,
    CallAction,
    CallbackAction,
)
from voice_gateway.console.roles import ConsoleUser, Role

REASON_LABELS = {"caller_request": "来电人要求转人工", "not_understood": "连续两次未听懂", "complaint": "投诉"}


def default_turns() -> list[dict]:
    return [
        {"seq": 1, "speaker": "caller", "text": "我社保卡丢了", "intent": "card_loss", "confidence": 0.97},
        {"seq": 1, "speaker": "bot", "text": "请说出您的身份证号码。", "intent": "card_loss", "confidence": 0.97},
        {"seq": 2, "speaker": "caller", "text": "我要找人工", "intent": "human_handoff", "confidence": 0.91},
        {
            "seq": 2,
            "speaker": "bot",
            "text": "正在为您转接人工服务，请稍候。",
            "intent": "human_handoff",
            "confidence": 0.91,
        },
    ]


@dataclass
class FakeCall:
    call_id: str
    state: str = "queued"  # bot, queued, agent, ended
    queue: str = "card"
    agent: str | None = None
    supervisors: set[str] = field(default_factory=set)
    turns: list[dict] = field(default_factory=default_turns)
    started_at: str = "2026-01-05T09:00:00Z"
    duration_s: int = 95
    waited_s: int = 42
    priority: int = 1
    reason: str = "caller_request"
    frustration: list[str] = field(default_factory=list)
    wrapup: dict | None = None
    handled_by: set[str] = field(default_factory=set)  # who had the call as its agent (and may wrap it up)

    def as_json(self) -> dict:
        return {
            "call_id": self.call_id,
            "gateway": "gw-1",
            "state": self.state,
            "queue": self.queue,
            "started_at": self.started_at,
            "agent": self.agent,
            "duration_s": self.duration_s,
            "frustrated": bool(self.frustration),
            "frustration": list(self.frustration),
            "turns": [dict(t) for t in self.turns],
        }

    def summary(self) -> dict:
        """What a `call` event carries."""
        return {
            k: v
            for k, v in self.as_json().items()
            if k in ("call_id", "gateway", "state", "queue", "agent", "started_at")
        }

    def card(self) -> dict:
        return {
            **self.summary(),
            "transport": "sip",
            "reason": self.reason,
            "reason_label": REASON_LABELS.get(self.reason, self.reason),
            "identity": {"id_number": "110105********1230", "verified": True},
            "intent_path": [t["intent"] for t in self.turns if t["speaker"] == "caller" and t.get("intent")],
            "slots": {"card_status": "丢失", "city": "北京"},
            "summary": "来电人社保卡丢失，已核验身份，要求人工办理挂失补卡。",
            "turns": [dict(t) for t in self.turns],
            "earlier_calls": [
                {
                    "call_id": "call-earlier",
                    "started_at": "2026-01-03T14:20:00Z",
                    "reason": "card_loss",
                    "disposition": "callback",
                }
            ],
            "waited_s": self.waited_s,
        }


class FakeBackend:
    def __init__(self, *, media: bool = False) -> None:
        self.calls_by_id: dict[str, FakeCall] = {}
        self.scripted: list[tuple[str, str, dict]] = []  # what events() yields first
        self.follow = False  # after the script, wait for published events (forever) instead of ending the stream
        self.acted: list[tuple[str, CallAction, str, dict]] = []
        self.statuses: list[tuple[str, AgentStatus, tuple[HandoffQueue, ...]]] = []
        self.callbacks: dict[str, dict] = {}
        self.callback_acts: list[tuple[str, str, CallbackAction]] = []
        self.callback_bodies: list[dict] = []
        self.streams_closed = 0
        self.resumed_after: list[str | None] = []  # the last_event_id of every stream opened
        self.media = media  # answer offers with a real aiortc peer (media.FakePeer)
        self.peers: list = []  # every FakePeer made, in order
        self.figures = {
            "calls": 128,
            "bot_resolved": 97,
            "handed_over": 27,
            "abandoned": 4,
            "average_wait_s": 38,
            "turn_gap_p95_ms": 812,
        }
        self._subscribers: set[asyncio.Queue] = set()
        self._ids = itertools.count(1000)

    def add(self, call: FakeCall) -> FakeCall:
        self.calls_by_id[call.call_id] = call
        return call

    def add_callback(self, callback_id: str, call_id: str, queue: str = "card") -> dict:
        entry = {
            "id": callback_id,
            "call_id": call_id,
            "queue": queue,
            "number_masked": "138****5678",
            "at": "2026-01-05T08:40:00Z",
            "state": "waiting",
        }
        self.callbacks[callback_id] = entry
        return entry

    def publish(self, kind: str, data: dict) -> str:
        """A live event to every open stream (and its id)."""
        event_id = f"{next(self._ids)}-0"
        for queue in self._subscribers:
            queue.put_nowait((event_id, kind, data))
        return event_id

    def subscribers(self) -> int:
        return len(self._subscribers)

    async def calls(self) -> list[dict]:
        return [c.as_json() for c in self.calls_by_id.values() if c.state != "ended"]

    async def card(self, user: ConsoleUser, call_id: str) -> dict:
        call = self.calls_by_id.get(call_id)
        own = call is not None and call.agent == user.name
        if call is None or (call.state == "ended" and not own):
            raise ActionRefused(404, "通话不存在或已结束")
        in_skills = call.state == "queued" and call.queue in {s.value for s in user.skills}
        if user.role is Role.AGENT and not own and not in_skills:
            raise ActionRefused(403, "这通电话不在您的技能队列中")
        return call.card()

    async def queue(self) -> dict:
        queues: dict[str, dict] = {}
        for skill in ("card", "general", "employment"):
            waiting = sorted(
                (c for c in self.calls_by_id.values() if c.state == "queued" and c.queue == skill),
                key=lambda c: (c.priority, -c.waited_s),
            )
            queues[skill] = {
                "waiting": len(waiting),
                "longest_wait_s": max((c.waited_s for c in waiting), default=0),
                "agents_available": 2 if skill == "card" else 0,
                "estimated_wait_s": 30 * len(waiting),
                "calls": [{"call_id": c.call_id, "waited_s": c.waited_s, "priority": c.priority} for c in waiting],
            }
        return {"queues": queues, "callbacks": [dict(e) for e in self.callbacks.values()]}

    async def stats(self) -> dict:
        return dict(self.figures)

    async def events(self, user: ConsoleUser, last_event_id: str | None) -> AsyncIterator[tuple[str, str, dict]]:
        self.resumed_after.append(last_event_id)
        live: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(live)
        try:
            ids = [e[0] for e in self.scripted]
            start = ids.index(last_event_id) + 1 if last_event_id in ids else 0
            for event in self.scripted[start:]:
                yield event
            if self.follow:
                while True:
                    yield await live.get()
        finally:
            self._subscribers.discard(live)
            self.streams_closed += 1

    async def act(self, user: ConsoleUser, action: CallAction, call_id: str, body: dict) -> dict:
        call = self.calls_by_id.get(call_id)
        wrapping_up = action is CallAction.WRAPUP and call is not None and user.name in call.handled_by | {call.agent}
        if call is None or (call.state == "ended" and not wrapping_up):
            raise ActionRefused(404, "通话不存在或已结束")
        if action in AGENT_ACTIONS:
            if action is CallAction.ACCEPT:
                if call.state != "queued":
                    raise ActionRefused(409, "这通电话已不在排队")
                if user.role is Role.SUPERVISOR:
                    raise ActionRefused(403, "请先接管这通电话")
                call.agent, call.state = user.name, "agent"
                call.handled_by.add(user.name)
            elif call.agent != user.name and not wrapping_up:
                raise ActionRefused(403, "这不是您的通话")
            elif action is CallAction.HANGUP:
                call.state = "ended"
            elif action is CallAction.RETURN:
                call.agent, call.state = None, "bot"
            elif action is CallAction.WRAPUP:
                call.wrapup = dict(body)
        elif action is CallAction.TAKEOVER:
            call.agent, call.state = user.name, "agent"
            call.handled_by.add(user.name)
        elif action is CallAction.LEAVE:
            call.supervisors.discard(user.name)
        else:
            call.supervisors.add(user.name)
        self.acted.append((user.name, action, call_id, body))
        answer: dict = {"call": call.as_json()}
        if action in MEDIA_ACTIONS and self.media and isinstance(body.get("sdp"), str):
            answer.update(await self._answer(user, action, call_id, body["sdp"]))
        if action is not CallAction.WRAPUP and action is not CallAction.LEAVE:
            self.publish("call", call.summary())
        return answer

    async def _answer(self, user: ConsoleUser, action: CallAction, call_id: str, sdp: str) -> dict:
        from tests.console.media import FakePeer  # aiortc only where media is wanted

        for old in [p for p in self.peers if p.call_id == call_id and p.user == user.name and not p.closed]:
            await old.close()  # a fresh offer replaces this user's connection to the call
        peer = FakePeer(call_id, user.name, action.value)
        self.peers.append(peer)
        return await peer.answer(sdp)

    async def drop_peer(self, peer) -> None:
        """The call side's end of a browser's connection goes away (as when a gateway dies)."""
        await peer.close()

    async def close(self) -> None:
        for peer in self.peers:
            if not peer.closed:
                await peer.close()

    async def callback(self, user: ConsoleUser, callback_id: str, action: CallbackAction, body: dict) -> dict:
        entry = self.callbacks.get(callback_id)
        if entry is None:
            raise ActionRefused(404, "没有这条回电记录")
        if entry["state"] == "done":
            raise ActionRefused(409, "这条回电已处理完毕")
        entry["state"] = "dialling" if action is CallbackAction.DIAL else "done"
        self.callback_acts.append((user.name, callback_id, action))
        self.callback_bodies.append(dict(body))
        self.publish("callback", dict(entry))
        if action is not CallbackAction.DIAL:
            return dict(entry)
        if not isinstance(body.get("sdp"), str):  # the gateway needs the agent's browser to bridge the call to
            raise ActionRefused(400, "缺少浏览器的 WebRTC offer")
        call = self.add(FakeCall(f"callback-{callback_id}", state="agent", agent=user.name, handled_by={user.name}))
        answer = {"call_id": call.call_id, "callback": dict(entry)}
        if self.media:
            answer.update(await self._answer(user, CallAction.ACCEPT, call.call_id, body["sdp"]))
        return answer

    async def set_status(self, user: ConsoleUser, status: AgentStatus, skills: tuple[HandoffQueue, ...]) -> dict:
        self.statuses.append((user.name, status, skills))
        return {"status": status.value, "skills": [s.value for s in skills]}

    async def agent_status(self, user: ConsoleUser) -> dict:
        own = [s.value for s in user.skills]
        for name, status, skills in reversed(self.statuses):
            if name == user.name:
                return {"status": status.value, "skills": [s.value for s in skills], "all_skills": own}
        return {"status": "offline", "skills": own, "all_skills": own}


def demo_backend(*, media: bool = True) -> FakeBackend:
    """A morning on the line: calls in each state, a frustrated caller, a callback waiting (pages, screenshots)."""
    fake = FakeBackend(media=media)
    fake.follow = True
    fake.add(FakeCall("call-0105-0931", waited_s=42, duration_s=118))
    fake.add(
        FakeCall(
            "call-0105-0933",
            state="bot",
            queue="social_insurance",
            duration_s=64,
            turns=[
                {
                    "seq": 1,
                    "speaker": "caller",
                    "text": "我想查一下养老保险缴了多少年",
                    "intent": "pension_years",
                    "confidence": 0.93,
                },
                {
                    "seq": 1,
                    "speaker": "bot",
                    "text": "好的，请说出您的身份证号码。",
                    "intent": "pension_years",
                    "confidence": 0.93,
                },
            ],
        )
    )
    fake.add(
        FakeCall(
            "call-0105-0925",
            state="agent",
            queue="employment",
            agent="agent2",
            duration_s=412,
            reason="not_understood",
            frustration=["连续两次未听懂", "语气急躁"],
            turns=[
                {
                    "seq": 1,
                    "speaker": "caller",
                    "text": "失业金怎么领",
                    "intent": "unemployment_benefit",
                    "confidence": 0.88,
                },
                {
                    "seq": 1,
                    "speaker": "bot",
                    "text": "请问您是在哪个城市参保的？",
                    "intent": "unemployment_benefit",
                    "confidence": 0.88,
                },
                {
                    "seq": 2,
                    "speaker": "caller",
                    "text": "我都说了好几遍了",
                    "intent": "nlu_fallback",
                    "confidence": 0.31,
                },
                {
                    "seq": 2,
                    "speaker": "bot",
                    "text": "抱歉，正在为您转接人工服务。",
                    "intent": "nlu_fallback",
                    "confidence": 0.31,
                },
            ],
        )
    )
    fake.add(
        FakeCall(
            "call-0105-0936",
            queue="general",
            waited_s=75,
            priority=0,
            duration_s=96,
            reason="complaint",
            frustration=["要求转人工"],
        )
    )
    fake.add_callback("cb-0105-01", "call-0105-0840", "card")
    fake.add_callback("cb-0105-02", "call-0105-0902", "general")
    return fake
