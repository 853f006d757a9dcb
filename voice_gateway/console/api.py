"""The JSON API behind the pages (and used by them): who am I, calls, a call's context card, queue, today's
figures, live events, call actions, callbacks, agent status (set, and read back by a reloaded page).

Every route checks the role; every action the backend accepts is written to the audit log. Live events are
server-sent events (sse-starlette): the browser's EventSource reconnects by itself and sends Last-Event-ID,
which the backend resumes after; a stream ends when its user is disabled or the console shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, JSONServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hotline_domain.privacy import redact_data
from voice_gateway.console.audit import AuditAction, AuditLog
from voice_gateway.console.backend import (
    ACTION_ROLES,
    ActionRefused,
    AgentStatus,
    CallAction,
    CallbackAction,
    ConsoleBackend,
)
from voice_gateway.console.roles import ConsoleUser, Role, parse_skills
from voice_gateway.console.security import current_user, requires

ANY_ROLE = tuple(Role)
SSE_PING_S = 15  # a comment line this often keeps proxies from closing an idle stream
USER_RECHECK_S = 2.0  # a stream reads its user again (disabled?) before an event at most this often


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict | None:
    """The JSON object posted (an empty body is {}), or None for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _detail(body: dict) -> str:
    if "sdp" in body:  # a WebRTC offer: nothing worth keeping, and far longer than an entry holds
        body = {k: v for k, v in body.items() if k not in ("sdp", "type")}
    return json.dumps(redact_data(body), ensure_ascii=False, separators=(",", ":")) if body else ""


async def _audit(request: Request, action: AuditAction, call_id: str | None, detail: str) -> None:
    log: AuditLog = request.app.state.audit
    await asyncio.to_thread(log.record, request.state.user.name, action, call_id, detail)


@requires(*ANY_ROLE)
async def me(request: Request) -> Response:
    user: ConsoleUser = request.state.user
    return JSONResponse({**user.as_json(), "role_label": user.role.label, "home": user.role.home})


@requires(Role.SUPERVISOR)
async def calls(request: Request) -> Response:
    backend: ConsoleBackend = request.app.state.backend
    return JSONResponse({"calls": await backend.calls()})


@requires(Role.AGENT, Role.SUPERVISOR)
async def card(request: Request) -> Response:
    backend: ConsoleBackend = request.app.state.backend
    try:
        return JSONResponse(await backend.card(request.state.user, request.path_params["call_id"]))
    except ActionRefused as refused:
        return _error(refused.status, refused.message)


@requires(Role.SUPERVISOR)
async def stats(request: Request) -> Response:
    backend: ConsoleBackend = request.app.state.backend
    return JSONResponse(await backend.stats())


@requires(Role.AGENT, Role.SUPERVISOR)
async def callback(request: Request) -> Response:
    try:
        action = CallbackAction(request.path_params["action"])
    except ValueError:
        return _error(404, "没有这个操作")
    callback_id = request.path_params["callback_id"]
    body = await _body(request)  # dial: the browser's WebRTC offer
    if body is None:
        return _error(400, "请求内容应为 JSON 对象")
    backend: ConsoleBackend = request.app.state.backend
    try:
        result = await backend.callback(request.state.user, callback_id, action, body)
    except ActionRefused as refused:
        return _error(refused.status, refused.message)
    audited = AuditAction.CALLBACK_DIAL if action is CallbackAction.DIAL else AuditAction.CALLBACK_DONE
    await _audit(request, audited, result.get("call_id") if isinstance(result, dict) else None, callback_id)
    return JSONResponse(result)


@requires(Role.AGENT, Role.SUPERVISOR)
async def queue(request: Request) -> Response:
    backend: ConsoleBackend = request.app.state.backend
    return JSONResponse(await backend.queue())


@requires(Role.AGENT, Role.SUPERVISOR)
async def call_action(request: Request) -> Response:
    user: ConsoleUser = request.state.user
    call_id = request.path_params["call_id"]
    try:
        action = CallAction(request.path_params["action"])
    except ValueError:
        return _error(404, "没有这个操作")
    if not user.role.admits(ACTION_ROLES[action]):
        return _error(403, "没有权限")
    body = await _body(request)
    if body is None:
        return _error(400, "请求内容应为 JSON 对象")
    backend: ConsoleBackend = request.app.state.backend
    try:
        result = await backend.act(user, action, call_id, body)
    except ActionRefused as refused:
        return _error(refused.status, refused.message)
    await _audit(request, AuditAction(action.value), call_id, _detail(body))
    return JSONResponse(result)


@requires(Role.AGENT)
async def agent_status(request: Request) -> Response:
    user: ConsoleUser = request.state.user
    body = await _body(request)
    try:
        status = AgentStatus((body or {}).get("status"))
        wanted = body.get("skills") if body else None
        skills = user.skills if wanted is None else parse_skills(wanted)
    except (ValueError, TypeError, AttributeError):
        return _error(400, "状态应为 available 或 away，技能应为队列名称列表")
    if user.role is not Role.ADMIN and not set(skills) <= set(user.skills):
        return _error(403, "只能选择自己的技能队列")
    backend: ConsoleBackend = request.app.state.backend
    try:
        result = await backend.set_status(user, status, skills)
    except ActionRefused as refused:
        return _error(refused.status, refused.message)
    await _audit(request, AuditAction.STATUS, None, f"{status.value}: {','.join(s.value for s in skills)}")
    return JSONResponse(result)


@requires(Role.AGENT)
async def agent_status_now(request: Request) -> Response:
    backend: ConsoleBackend = request.app.state.backend
    try:
        return JSONResponse(await backend.agent_status(request.state.user))
    except ActionRefused as refused:
        return _error(refused.status, refused.message)


@requires(Role.AGENT, Role.SUPERVISOR)
async def events(request: Request) -> Response:
    user: ConsoleUser = request.state.user
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or None
    backend: ConsoleBackend = request.app.state.backend
    closing: asyncio.Event | None = getattr(request.app.state, "closing", None)
    return EventSourceResponse(_stream(request, backend.events(user, last_id), closing), ping=SSE_PING_S)


async def _stream(
    request: Request, source: AsyncIterator[tuple[str, str, dict]], closing: asyncio.Event | None
) -> AsyncIterator[JSONServerSentEvent]:
    """The backend's events as SSE until it ends, the user may no longer see them, or the console closes."""
    closed = asyncio.ensure_future(closing.wait() if closing else asyncio.Future())
    following: asyncio.Future | None = None
    loop = asyncio.get_running_loop()
    checked = loop.time()
    try:
        while not closed.done():
            following = asyncio.ensure_future(anext(source))
            await asyncio.wait({following, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                return
            try:
                event_id, kind, data = following.result()
            except StopAsyncIteration:
                return
            if loop.time() - checked > USER_RECHECK_S:
                if await current_user(request) is None:  # disabled since the stream opened
                    return
                checked = loop.time()
            yield JSONServerSentEvent(data, event=kind, id=event_id)
    finally:
        with anyio.CancelScope(shield=True):
            for task in (following, closed):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()


routes = [
    Route("/api/me", me),
    Route("/api/calls", calls),
    Route("/api/calls/{call_id}", card),
    Route("/api/queue", queue),
    Route("/api/stats", stats),
    Route("/api/events", events),
    Route("/api/calls/{call_id}/{action}", call_action, methods=["POST"]),
    Route("/api/callbacks/{callback_id}/{action}", callback, methods=["POST"]),
    Route("/api/agent/status", agent_status_now, methods=["GET"]),
    Route("/api/agent/status", agent_status, methods=["POST"]),
]
