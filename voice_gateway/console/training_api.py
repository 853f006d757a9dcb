"""The trainer's JSON API (the /trainer page uses it): the inbox, annotation, stories and rules, retraining,
model versions. Trainer role (and admin); every change and every playback of a caller's audio is audited.
The work is the `TrainingDesk`'s (voice_gateway/training/desk.py), run in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voice_gateway.console.api import _audit, _body, _error
from voice_gateway.console.audit import AuditAction
from voice_gateway.console.roles import Role
from voice_gateway.console.security import requires
from voice_gateway.training.desk import Annotation, Refused, TrainingDesk
from voice_gateway.training.inbox import InboxFilter

MAX_STORY_CHARS = 200_000


def _desk(request: Request) -> TrainingDesk:
    desk = getattr(request.app.state, "training", None)
    if desk is None:
        raise Refused(503, "训练功能没有启用")
    return desk


async def _run(request: Request, work: Callable[[TrainingDesk], Any]) -> Response:
    try:
        desk = _desk(request)
        result = await asyncio.to_thread(work, desk)
    except Refused as refused:
        body = {"error": refused.message, **({"output": refused.output} if refused.output else {})}
        return JSONResponse(body, status_code=refused.status)
    return result if isinstance(result, Response) else JSONResponse(result)


async def _audited(
    request: Request, work: Callable[[TrainingDesk], Any], action: AuditAction, detail: str, status: int = 200
) -> Response:
    """`_run`, and when it succeeds the act in the audit log and the answer with `status` (202: under way)."""
    answer = await _run(request, work)
    if answer.status_code == 200:
        await _audit(request, action, None, detail)
        answer.status_code = status
    return answer


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    return float(text)


def _day(text: str | None, *, end: bool = False) -> float | None:
    """A YYYY-MM-DD date (UTC) as Unix seconds: its start, or with `end` the start of the next day."""
    if not text:
        return None
    day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    return (day + dt.timedelta(days=1 if end else 0)).timestamp()


def _filter(request: Request, desk: TrainingDesk) -> InboxFilter:
    q = request.query_params
    reviewed = {"0": False, "1": True, "all": None}.get(q.get("reviewed", "0"), False)
    domain = q.get("domain") or None
    return InboxFilter(
        reviewed=reviewed,
        intent=q.get("intent") or None,
        channel=q.get("channel") or None,
        reason=q.get("reason") or None,
        intents=desk.domain_intents(domain) if domain else None,
        min_confidence=_number(q.get("min_confidence")),
        max_confidence=_number(q.get("max_confidence")),
        since=_day(q.get("since")),
        until=_day(q.get("until"), end=True),
    )


@requires(Role.TRAINER)
async def inbox(request: Request) -> Response:
    def work(desk: TrainingDesk) -> Any:
        try:
            f = _filter(request, desk)
        except ValueError as exc:
            raise Refused(400, "筛选条件不对：日期为 YYYY-MM-DD，置信度为 0 到 1 的数") from exc
        return desk.items(f)

    return await _run(request, work)


@requires(Role.TRAINER)
async def inbox_item(request: Request) -> Response:
    return await _run(request, lambda desk: desk.detail(request.path_params["item_id"]))


@requires(Role.TRAINER)
async def inbox_audio(request: Request) -> Response:
    item_id = request.path_params["item_id"]

    def work(desk: TrainingDesk) -> Response:
        return Response(desk.audio(item_id), media_type="audio/wav")

    return await _audited(request, work, AuditAction.INBOX_AUDIO, f"#{item_id}")


@requires(Role.TRAINER)
async def annotate(request: Request) -> Response:
    body = await _body(request)
    if body is None:
        return _error(400, "请求内容应为 JSON 对象")
    item_id, user = request.path_params["item_id"], request.state.user.name

    def work(desk: TrainingDesk) -> Any:
        return desk.annotate(item_id, Annotation.from_json(body), user)

    return await _audited(request, work, AuditAction.ANNOTATE, f"#{item_id} -> {body.get('intent')}")


@requires(Role.TRAINER)
async def dismiss(request: Request) -> Response:
    item_id, user = request.path_params["item_id"], request.state.user.name
    return await _audited(request, lambda desk: desk.dismiss(item_id, user), AuditAction.DISMISS, f"#{item_id}")


@requires(Role.TRAINER)
async def intents(request: Request) -> Response:
    return await _run(request, lambda desk: desk.intents())


@requires(Role.TRAINER)
async def story_files(request: Request) -> Response:
    return await _run(request, lambda desk: desk.story_files())


@requires(Role.TRAINER)
async def story_file(request: Request) -> Response:
    return await _run(request, lambda desk: desk.story_file(request.query_params.get("path", "")))


@requires(Role.TRAINER)
async def save_story_file(request: Request) -> Response:
    body = await _body(request)
    if body is None or not isinstance(body.get("path"), str) or not isinstance(body.get("text"), str):
        return _error(400, "请求内容应为 {path, text}")
    if len(body["text"]) > MAX_STORY_CHARS:
        return _error(413, "文件太大")
    user = request.state.user.name

    def work(desk: TrainingDesk) -> Any:
        return desk.save_story_file(body["path"], body["text"], user)

    return await _audited(request, work, AuditAction.STORY_EDIT, body["path"])


@requires(Role.TRAINER)
async def retrain(request: Request) -> Response:
    user = request.state.user.name
    return await _audited(request, lambda desk: desk.retrain(user), AuditAction.RETRAIN, "", 202)


@requires(Role.TRAINER)
async def job(request: Request) -> Response:
    return await _run(request, lambda desk: desk.job())


@requires(Role.TRAINER)
async def models(request: Request) -> Response:
    return await _run(request, lambda desk: desk.models())


@requires(Role.TRAINER)
async def promote(request: Request) -> Response:
    body = await _body(request)
    if body is None or not isinstance(body.get("name"), str):
        return _error(400, "请求内容应为 {name, override?, reason?}")
    user = request.state.user
    override, reason = bool(body.get("override")), str(body.get("reason") or "")

    def work(desk: TrainingDesk) -> Any:
        return desk.promote(body["name"], user.name, override=override, reason=reason, admin=user.role is Role.ADMIN)

    action = AuditAction.PROMOTE_OVERRIDE if override else AuditAction.PROMOTE
    return await _audited(request, work, action, f"{body['name']}{'; ' + reason if reason else ''}", 202)


@requires(Role.TRAINER)
async def roll_back(request: Request) -> Response:
    user = request.state.user.name
    return await _audited(request, lambda desk: desk.roll_back(user), AuditAction.ROLLBACK, "", 202)


@requires(Role.TRAINER)
async def confusion(request: Request) -> Response:
    name = request.path_params["name"]

    def work(desk: TrainingDesk) -> Any:
        stem = name.removesuffix(".tar.gz")
        path = desk.settings.models_dir / f"{stem}.confusion.svg"
        if "/" in name or not path.is_file():
            raise Refused(404, "没有这张图")
        return Response(path.read_bytes(), media_type="image/svg+xml")

    return await _run(request, work)


routes = [
    Route("/api/inbox", inbox),
    Route("/api/inbox/{item_id:int}", inbox_item),
    Route("/api/inbox/{item_id:int}/audio", inbox_audio),
    Route("/api/inbox/{item_id:int}/annotate", annotate, methods=["POST"]),
    Route("/api/inbox/{item_id:int}/dismiss", dismiss, methods=["POST"]),
    Route("/api/intents", intents),
    Route("/api/training/files", story_files),
    Route("/api/training/file", story_file, methods=["GET"]),
    Route("/api/training/file", save_story_file, methods=["POST"]),
    Route("/api/training/retrain", retrain, methods=["POST"]),
    Route("/api/training/job", job),
    Route("/api/models", models),
    Route("/api/models/promote", promote, methods=["POST"]),
    Route("/api/models/rollback", roll_back, methods=["POST"]),
    Route("/api/models/{name}/confusion.svg", confusion),
]
