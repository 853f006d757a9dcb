"""An in-memory `ConsoleBackend` for the console's web tests: a few calls, scripted events, the refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hotline_domain.contract import HandoffQueue
from voice_gateway.console.backend import AGENT_ACTIONS, ActionRefused, AgentStatus, CallAction
from voice_gateway.console.roles import ConsoleUser, Role


@dataclass
class FakeCall:
    call_id: str
    state: str = "queued"  # bot, queued, agent, ended
    queue: str = "card"
    agent: str | None = None
    supervisors: set[str] = field(default_factory=set)

    def as_json(self) -> dict:
        return {
            "call_id": self.call_id,
            "gateway": "gw-1",
            "state": self.state,
            "queue": self.queue,
            "started_at": "2026-01-05T09:00:00Z",
            "turns": [{"speaker": "caller", "text": "我社保卡丢了", "intent": "card_loss", "confidence": 0.97}],
        }


class FakeBackend:
    def __init__(self) -> None:
        self.calls_by_id: dict[str, FakeCall] = {}
        self.scripted: list[tuple[str, str, dict]] = []  # what events() yields
        self.follow = False  # after the script, wait for more (forever) instead of ending the stream
        self.acted: list[tuple[str, CallAction, str, dict]] = []
        self.statuses: list[tuple[str, AgentStatus, tuple[HandoffQueue, ...]]] = []
        self.streams_closed = 0
        self.resumed_after: list[str | None] = []  # the last_event_id of every stream opened

    def add(self, call: FakeCall) -> FakeCall:
        self.calls_by_id[call.call_id] = call
        return call

    async def calls(self) -> list[dict]:
        return [c.as_json() for c in self.calls_by_id.values() if c.state != "ended"]

    async def queue(self) -> dict:
        waiting = [c for c in self.calls_by_id.values() if c.state == "queued"]
        return {"queues": {"card": {"waiting": len(waiting), "longest_wait_s": 42 if waiting else 0}}}

    async def events(self, user: ConsoleUser, last_event_id: str | None) -> AsyncIterator[tuple[str, str, dict]]:
        self.resumed_after.append(last_event_id)
        try:
            ids = [e[0] for e in self.scripted]
            start = ids.index(last_event_id) + 1 if last_event_id in ids else 0
            for event in self.scripted[start:]:
                yield event
            if self.follow:
                await asyncio.Event().wait()
        finally:
            self.streams_closed += 1

    async def act(self, user: ConsoleUser, action: CallAction, call_id: str, body: dict) -> dict:
        call = self.calls_by_id.get(call_id)
        if call is None or call.state == "ended":
            raise ActionRefused(404, "通话不存在或已结束")
        if action in AGENT_ACTIONS:
            if action is CallAction.ACCEPT:
                if call.state != "queued":
                    raise ActionRefused(409, "这通电话已不在排队")
                if user.role is Role.SUPERVISOR:
                    raise ActionRefused(403, "请先接管这通电话")
                call.agent, call.state = user.name, "agent"
            elif call.agent != user.name:
                raise ActionRefused(403, "这不是您的通话")
            elif action is CallAction.HANGUP:
                call.state = "ended"
            elif action is CallAction.RETURN:
                call.agent, call.state = None, "bot"
        elif action is CallAction.TAKEOVER:
            call.agent, call.state = user.name, "agent"
        elif action is CallAction.LEAVE:
            call.supervisors.discard(user.name)
        else:
            call.supervisors.add(user.name)
        self.acted.append((user.name, action, call_id, body))
        return {"call": call.as_json()}

    async def set_status(self, user: ConsoleUser, status: AgentStatus, skills: tuple[HandoffQueue, ...]) -> dict:
        self.statuses.append((user.name, status, skills))
        return {"status": status.value, "skills": [s.value for s in skills]}
