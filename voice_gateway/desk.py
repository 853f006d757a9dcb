"""The desk: where a gateway carries out what people in the consoles do to the calls it has.

The consoles may be served by any gateway; a call lives in one. A console sends a command to the call's gateway
on its Redis list `hotline:gateway:<id>:commands` and waits for the answer on `hotline:reply:<command id>`
(`command()` below is that client side). The desk checks what only the call's own process can know (the call is
live, whose it is, the state fits), then acts on the call's bridge: an agent's browser joins as the agent and the
bot steps off; a supervisor's joins as a listener, a coach (heard by the agent only) or a third voice; the bot
comes back when the agent returns the caller. An agent's browser that drops puts the caller back at the front of
the queue, where the bot's hold takes them again.

Lists rather than pub/sub: a command sent while the desk is busy waits for it instead of being lost, and one
older than `COMMAND_TTL_S` (its sender has given up) is dropped, not carried out late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis.asyncio import Redis

from hotline_domain.contract import HandoffQueue
from voice_gateway.bridge import Role
from voice_gateway.browser_person import BadOffer, BrowserPerson
from voice_gateway.call_events import EndReason
from voice_gateway.call_store import CallStore
from voice_gateway.calls import Call, Switchboard
from voice_gateway.transports.sip.dial import DialFailed
from voice_gateway.transports.webrtc import WebRtcSettings

log = logging.getLogger("hotline.desk")
COMMAND_TTL_S = 5.0  # the console waits this long for an answer
REPLY_TTL_S = 30
BLOCK_S = 1  # below the Redis client's socket timeout

SUPERVISOR_ROLES = {"listen": Role.MONITOR, "whisper": Role.COACH, "barge": Role.BARGE}


def commands_key(gateway: str) -> str:
    return f"hotline:gateway:{gateway}:commands"


def reply_key(command_id: str) -> str:
    return f"hotline:reply:{command_id}"


class QueueDesk(Protocol):
    """What the desk needs of the queues (voice_gateway.queueing.SkillQueues)."""

    async def claim(self, call_id: str, agent: str) -> dict | None: ...

    async def requeue(self, call_id: str) -> None: ...

    async def handled(self, skill: HandoffQueue, call_id: str, seconds: float) -> None: ...


class CallbackDesk(Protocol):
    """What dialling a callback needs of the queues (SkillQueues)."""

    async def callback_number(self, callback_id: str) -> str: ...

    async def set_callback_state(self, callback_id: str, state: str) -> None: ...


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Seat:
    """Who is on one call besides the caller and the bot."""

    agent: BrowserPerson | None = None
    skill: HandoffQueue = HandoffQueue.GENERAL
    since: float = 0.0
    supervisors: dict[str, BrowserPerson] = field(default_factory=dict)


class Desk:
    """Carries out console commands on this gateway's calls."""

    def __init__(
        self,
        gateway: str,
        redis: Redis,
        switchboard: Switchboard,
        store: CallStore,
        queues: QueueDesk,
        webrtc: WebRtcSettings,
    ) -> None:
        self.gateway = gateway
        self.redis = redis
        self.switchboard = switchboard
        self.store = store
        self.queues = queues
        self.webrtc = webrtc
        self.seats: dict[str, Seat] = {}
        self._tasks: set[asyncio.Task] = set()

    # --- the command loop ---
    async def run(self) -> None:
        """Take commands until cancelled; each runs in a task of its own (a slow offer holds up nobody)."""
        key = commands_key(self.gateway)
        while True:
            try:
                item = await self.redis.blpop([key], timeout=BLOCK_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the consoles' commands wait for it
                log.warning("desk: commands not read: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if item is None:
                continue
            task = asyncio.create_task(self._serve(item[1]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, raw: bytes | str) -> None:
        try:
            command = json.loads(raw)
            command_id = str(command["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("desk: a command that is not one dropped")
            return
        if time.time() - float(command.get("sent", 0)) > COMMAND_TTL_S:
            log.warning("desk: command %s too late, dropped", command.get("action"))
            return
        answer = await self.execute(command)
        key = reply_key(command_id)
        with contextlib.suppress(Exception):
            await self.redis.rpush(key, json.dumps(answer, ensure_ascii=False))
            await self.redis.expire(key, REPLY_TTL_S)

    async def execute(self, command: dict[str, Any]) -> dict[str, Any]:
        """One command -> `{"ok": True, ...}` or `{"ok": False, "status", "message"}`."""
        action = str(command.get("action"))
        call_id = str(command.get("call_id"))
        user = str(command.get("user"))
        body = command.get("body") if isinstance(command.get("body"), dict) else {}
        handler = {
            "accept": self._accept,
            "takeover": self._take_over,
            "hangup": self._hang_up,
            "return": self._return,
            "listen": self._supervise,
            "whisper": self._supervise,
            "barge": self._supervise,
            "leave": self._leave,
        }.get(action)
        try:
            if action == "dial":  # a callback: no call yet, the desk places it
                return {"ok": True, **await self._dial(call_id, user, body)}
            if handler is None:
                raise Refusal(400, "没有这个操作")
            call = self.switchboard.calls.get(call_id)
            if call is None or call.ended:
                raise Refusal(404, "通话已结束")
            result = await handler(call, user, action, body)
        except Refusal as refused:
            return {"ok": False, "status": refused.status, "message": refused.message}
        except Exception:
            log.exception("desk: %s on call %s failed", action, call_id)
            return {"ok": False, "status": 500, "message": "操作失败，请重试"}
        return {"ok": True, **result}

    # --- agents ---
    async def _accept(self, call: Call, user: str, action: str, body: dict) -> dict:
        entry = await self.queues.claim(call.call_id, user)
        if entry is None:
            raise Refusal(409, "这通电话已由其他坐席接听，或来电人已挂机")
        skill = _skill(entry.get("skill"))
        try:
            return await self._seat_agent(call, user, body, skill)
        except Refusal:
            await self.queues.requeue(call.call_id)  # the caller waits on, first in line
            raise

    async def _take_over(self, call: Call, user: str, action: str, body: dict) -> dict:
        seat = self.seats.get(call.call_id)
        if seat is not None and seat.agent is not None:
            raise Refusal(409, f"坐席 {seat.agent.name} 正在处理这通电话，可以选择插话")
        entry = await self.queues.claim(call.call_id, user)  # None: a bot call, not waiting in a queue
        skill = _skill(entry.get("skill")) if entry else HandoffQueue.GENERAL
        return await self._seat_agent(call, user, body, skill)

    async def _seat_agent(self, call: Call, user: str, body: dict, skill: HandoffQueue) -> dict:
        person = BrowserPerson(user, Role.AGENT, self.webrtc, lambda p: self._lost(call, p))
        answer = await _answer(person, body)
        if call.ended:
            await person.close()
            raise Refusal(404, "通话已结束")
        seat = self._seat(call)
        seat.agent, seat.skill, seat.since = person, skill, time.monotonic()
        call.take_over()
        call.bridge.join(person)
        await self.store.console_state(call.call_id, "agent", agent=user, last_agent=user, queue=skill.value)
        return {"sdp": answer, "type": "answer"}

    def _seat(self, call: Call) -> Seat:
        seat = self.seats.get(call.call_id)
        if seat is None:
            seat = self.seats[call.call_id] = Seat()
            call.on_close.append(lambda reason, detail: self._call_ended(call.call_id))
        return seat

    def _own(self, call: Call, user: str) -> Seat:
        seat = self.seats.get(call.call_id)
        if seat is None or seat.agent is None:
            raise Refusal(409, "这通电话现在没有坐席")
        if seat.agent.name != user:
            raise Refusal(403, "这不是您的通话")
        return seat

    async def _hang_up(self, call: Call, user: str, action: str, body: dict) -> dict:
        self._own(call, user)
        call.end(EndReason.AGENT_HUNG_UP)
        return {}

    async def _return(self, call: Call, user: str, action: str, body: dict) -> dict:
        seat = self._own(call, user)
        person, seat.agent = seat.agent, None
        assert person is not None
        call.bridge.leave(person)
        await person.close()
        await self.queues.handled(seat.skill, call.call_id, time.monotonic() - seat.since)
        call.give_back()
        await self.store.console_state(call.call_id, "bot", agent="")
        return {}

    def _lost(self, call: Call, person: BrowserPerson) -> None:
        """A browser dropped: a supervisor simply leaves; an agent's caller goes back to the queue's hold."""
        call.bridge.leave(person)
        seat = self.seats.get(call.call_id)
        if seat is None or call.ended:
            return
        if seat.supervisors.get(person.name) is person:
            del seat.supervisors[person.name]
        if seat.agent is person:
            seat.agent = None
            task = asyncio.ensure_future(self._back_to_queue(call, seat))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _back_to_queue(self, call: Call, seat: Seat) -> None:
        try:
            await self.queues.requeue(call.call_id)
            call.back_to_queue()
            await self.store.console_state(call.call_id, "queued", agent="", queue=seat.skill.value)
        except Exception:
            log.exception("call %s: back to the queue failed", call.call_id)

    # --- callbacks: the agent calls the caller back over SIP ---
    async def _dial(self, call_id: str, user: str, body: dict) -> dict:
        """Open the sealed number, place the call, and put the agent's browser on it once the callee answers
        (the answer waits for that: up to the ring timeout). The callback is dialling meanwhile, waiting again if
        the call does not get through, done when the call it became ends."""
        dialer = self.switchboard.dialer  # the gateway's SipServer, while it runs
        if dialer is None or not dialer.can_dial:
            raise Refusal(409, "没有配置外呼线路，请用电话回拨后标记完成")
        callbacks = cast(CallbackDesk, self.queues)
        callback_id = str(body.get("callback_id") or call_id.removeprefix("callback-"))
        try:
            number = await callbacks.callback_number(callback_id)
        except KeyError:
            raise Refusal(404, "没有这条回电登记") from None
        placed: list[Call] = []
        person = BrowserPerson(
            user, Role.AGENT, self.webrtc, lambda p: [c.end(EndReason.AGENT_HUNG_UP) for c in placed]
        )
        answer = await _answer(person, body)
        await callbacks.set_callback_state(callback_id, "dialling")
        try:
            call = await dialer.dial(number, call_id)
        except BaseException as exc:
            await person.close()
            with contextlib.suppress(Exception):
                await callbacks.set_callback_state(callback_id, "waiting")
            if isinstance(exc, DialFailed):
                raise Refusal(exc.status, f"回拨未接通：{exc.reason}" if exc.status == 502 else exc.reason) from None
            raise
        placed.append(call)

        async def done(reason: EndReason, detail: str) -> None:
            await callbacks.set_callback_state(callback_id, "done")

        call.on_close.append(done)
        if call.ended:
            await person.close()
            await done(EndReason.CALLER_HUNG_UP, "")
            raise Refusal(404, "对方已挂机")
        seat = self._seat(call)
        seat.agent, seat.since = person, time.monotonic()
        seat.skill = _skill(body.get("queue"))
        call.bridge.join(person)
        console = functools.partial(
            self.store.console_state, call.call_id, "agent", agent=user, last_agent=user, queue=seat.skill.value
        )
        telemetry = getattr(call.bot, "telemetry", None)  # after the bot's own "started" write, in order
        if telemetry is not None:
            telemetry.write("console", console)
        else:
            await console()
        return {"sdp": answer, "type": "answer", "call_id": call.call_id}

    # --- supervisors ---
    async def _supervise(self, call: Call, user: str, action: str, body: dict) -> dict:
        role = SUPERVISOR_ROLES[action]
        seat = self._seat(call)
        if role is Role.COACH and seat.agent is None:
            raise Refusal(409, "这通电话还没有坐席，耳语只有坐席能听到")
        if seat.agent is not None and seat.agent.name == user:
            raise Refusal(409, "您正在处理这通电话")
        person = BrowserPerson(user, role, self.webrtc, lambda p: self._lost(call, p))
        answer = await _answer(person, body)
        if call.ended:
            await person.close()
            raise Refusal(404, "通话已结束")
        earlier = seat.supervisors.pop(user, None)
        if earlier is not None:
            call.bridge.leave(earlier)
            await earlier.close()
        seat.supervisors[user] = person
        call.bridge.join(person)
        return {"sdp": answer, "type": "answer", "role": role.value}

    async def _leave(self, call: Call, user: str, action: str, body: dict) -> dict:
        seat = self.seats.get(call.call_id)
        person = seat.supervisors.pop(user, None) if seat else None
        if person is None:
            raise Refusal(409, "您没有在监听这通电话")
        call.bridge.leave(person)
        await person.close()
        return {}

    async def _call_ended(self, call_id: str) -> None:
        seat = self.seats.pop(call_id, None)
        if seat is None:
            return
        if seat.agent is not None:
            with contextlib.suppress(Exception):
                await self.queues.handled(seat.skill, call_id, time.monotonic() - seat.since)
        for person in [seat.agent, *seat.supervisors.values()]:
            if person is not None:
                await person.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for call_id in list(self.seats):
            await self._call_ended(call_id)


async def _answer(person: BrowserPerson, body: dict) -> str:
    sdp = body.get("sdp")
    if body.get("type") != "offer" or not isinstance(sdp, str) or not sdp.strip():
        raise Refusal(400, "缺少浏览器的 WebRTC offer")
    try:
        return await person.answer(sdp)
    except BadOffer:
        raise Refusal(400, "浏览器的音频协商失败，请刷新页面后重试") from None


def _skill(value: object) -> HandoffQueue:
    try:
        return HandoffQueue(value)
    except ValueError:
        return HandoffQueue.GENERAL


async def command(
    redis: Redis, gateway: str, action: str, call_id: str, user: str, body: dict, timeout_s: float = COMMAND_TTL_S
) -> dict[str, Any]:
    """Send one command to `gateway`'s desk and wait for its answer (a console's side)."""
    command_id = uuid.uuid4().hex
    message = {"id": command_id, "action": action, "call_id": call_id, "user": user, "body": body, "sent": time.time()}
    await redis.rpush(commands_key(gateway), json.dumps(message, ensure_ascii=False))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item = await redis.blpop([reply_key(command_id)], timeout=BLOCK_S)
        if item is not None:
            return json.loads(item[1])
    return {"ok": False, "status": 504, "message": "通话所在的服务器没有响应"}
