"""The consoles' Starlette application: `make_app(settings, backend)`.

Pages (server-rendered Jinja2, Chinese, a little plain JS from /static): /login, /logout, /agent, /supervisor,
/trainer, /admin/audit; the JSON API under /api/ (api.py; the trainer's in training_api.py). Middleware,
outermost first: CSRF (starlette-csrf), sessions (Starlette's signed cookie); see security.py. Users and the audit
log live in the consoles' database (store.py), the calls behind a `ConsoleBackend` (backend.py), the trainer's
inbox and data behind a `TrainingDesk` (training/desk.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from voice_gateway.console import api, training_api
from voice_gateway.console.audit import AuditAction, AuditLog
from voice_gateway.console.backend import ConsoleBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.console.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    ConsoleCSRF,
    current_user,
    requires,
    session_secret,
)
from voice_gateway.console.store import SignInRefused, UserStore, database_url, open_database

if TYPE_CHECKING:
    from voice_gateway.config import Settings
    from voice_gateway.training.desk import TrainingDesk

HERE = Path(__file__).resolve().parent
QUEUE_LABELS = {  # as the pages show the queues (static/callcard.js has the same)
    "general": "综合咨询",
    "social_insurance": "社会保险",
    "card": "社保卡",
    "employment": "就业服务",
    "talent": "人才人事",
    "arbitration": "劳动关系",
}
AUDIT_PAGE_ROWS = 500


def _wants_json(request: Request) -> bool:
    return any("application/json" in request.headers.get(h, "") for h in ("content-type", "accept"))


def _local_path(target: str | None) -> str | None:
    """A redirect target after sign-in: only a path on this site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return None


async def home(request: Request) -> Response:
    user = await current_user(request)
    return RedirectResponse(user.role.home if user else "/login", status_code=303)


async def login_page(request: Request) -> Response:
    user = await current_user(request)
    if user is not None:
        return RedirectResponse(_local_path(request.query_params.get("next")) or user.role.home, status_code=303)
    return _login_form(request, next_path=request.query_params.get("next", ""))


def _login_form(request: Request, *, next_path: str, error: str = "", name: str = "", status: int = 200) -> Response:
    context = {"next": _local_path(next_path) or "", "error": error, "username": name}
    return request.app.state.templates.TemplateResponse(request, "login.html", context, status_code=status)


async def login(request: Request) -> Response:
    as_json = _wants_json(request)
    if "application/json" in request.headers.get("content-type", ""):
        try:
            fields = await request.json()
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return JSONResponse({"error": "请求内容应为 JSON 对象"}, status_code=400)
    else:
        fields = await request.form()
    name, password = str(fields.get("username") or "").strip(), str(fields.get("password") or "")
    next_path = str(fields.get("next") or "")
    users: UserStore = request.app.state.users
    audit: AuditLog = request.app.state.audit
    client = request.client.host if request.client else ""
    try:
        user: ConsoleUser = await asyncio.to_thread(users.authenticate, name, password)
    except SignInRefused as refused:
        await asyncio.to_thread(
            audit.record, name or "-", AuditAction.LOGIN_FAILED, None, f"{refused.reason}; {client}"
        )
        if as_json:
            return JSONResponse({"error": "用户名或密码错误"}, status_code=401)
        return _login_form(request, next_path=next_path, error="用户名或密码错误", name=name, status=401)
    request.session.clear()
    request.session.update({"uid": user.id, "name": user.name})
    await asyncio.to_thread(audit.record, user.name, AuditAction.LOGIN, None, client)
    target = _local_path(next_path) or user.role.home
    if as_json:
        return JSONResponse({"user": user.as_json(), "home": target})
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    user = await current_user(request)
    if user is not None:
        audit: AuditLog = request.app.state.audit
        await asyncio.to_thread(audit.record, user.name, AuditAction.LOGOUT, None, "")
    request.session.clear()
    if _wants_json(request):
        return JSONResponse({"ok": True})
    return RedirectResponse("/login", status_code=303)


def _page(template: str, title: str, script: str | None = None):
    async def page(request: Request) -> Response:
        context = {"user": request.state.user, "title": title, "script": script}
        return request.app.state.templates.TemplateResponse(request, template, context)

    return page


agent_page = requires(Role.AGENT)(_page("agent.html", "坐席工作台", "agent.js"))
supervisor_page = requires(Role.SUPERVISOR)(_page("supervisor.html", "班长监控台", "supervisor.js"))
trainer_page = requires(Role.TRAINER)(_page("trainer.html", "训练师工作台"))


@requires(Role.ADMIN)
async def audit_page(request: Request) -> Response:
    call_id = request.query_params.get("call_id", "").strip()
    who = request.query_params.get("who", "").strip()
    audit: AuditLog = request.app.state.audit
    entries = await asyncio.to_thread(audit.entries, call_id=call_id or None, who=who or None, limit=AUDIT_PAGE_ROWS)
    context = {
        "user": request.state.user,
        "title": "审计日志",
        "entries": entries,
        "call_id": call_id,
        "who": who,
        "limit": AUDIT_PAGE_ROWS,
    }
    return request.app.state.templates.TemplateResponse(request, "audit.html", context)


def make_app(
    settings: Settings, backend: ConsoleBackend, training: Callable[[Engine], TrainingDesk] | None = None
) -> Starlette:
    """The consoles as one ASGI application; serve it with `serve_console` (server.py). `training` makes the
    trainer's desk on the consoles' database (None: the trainer's API answers 503)."""
    engine = open_database(database_url(settings))
    secret = session_secret(settings)
    gateway = settings.gateway

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.closing = asyncio.Event()  # set by serve_console before it stops: live streams end
        yield

    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(csrf_cookie=CSRF_COOKIE, csrf_header=CSRF_HEADER, queue_labels=QUEUE_LABELS)
    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/agent", agent_page),
        Route("/supervisor", supervisor_page),
        Route("/trainer", trainer_page),
        Route("/admin/audit", audit_page),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        *api.routes,
        *training_api.routes,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            ConsoleCSRF,
            secret=secret,
            cookie_name=CSRF_COOKIE,
            header_name=CSRF_HEADER,
            cookie_samesite="strict",
            cookie_secure=gateway.console_https_only,
        ),
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie=SESSION_COOKIE,
            max_age=gateway.console_session_max_age_s,
            same_site="strict",
            https_only=gateway.console_https_only,
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.backend = backend
    app.state.engine = engine
    app.state.users = UserStore(engine)
    app.state.audit = AuditLog(engine)
    app.state.templates = templates
    app.state.training = training(engine) if training is not None else None
    return app
