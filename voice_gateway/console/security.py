"""Sessions, CSRF and roles for the console routes, on maintained libraries.

- Sessions: Starlette's `SessionMiddleware`, a cookie signed with itsdangerous (timestamped: refused after
  `console_session_max_age_s` from the sign-in), HttpOnly, SameSite=Strict, Secure with `console_https_only`.
  The session holds only the user's id and name; every request reads the user again, so a disabled user's
  session stops working at their next request.
- CSRF: starlette-csrf's double-submit cookie (`csrftoken`, readable by the pages' JS; not HttpOnly by design)
  on every POST, login included (a forged sign-in is an attack too), nothing exempt. The JS sends it in the
  `X-CSRFToken` header. starlette-csrf reads only that header (HTML form support is its open PR #18), so
  `ConsoleCSRF` copies a small urlencoded form's `csrftoken` field into the header before the library's own
  check runs; the comparison stays the library's.
- Roles: `requires(*roles)` on an endpoint: no valid session -> 401 JSON under /api/, a redirect to /login for
  pages; a role not in `roles` (admin is always in) -> 403.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette_csrf import CSRFMiddleware

from voice_gateway.console.roles import ConsoleUser, Role

if TYPE_CHECKING:
    from voice_gateway.config import Settings
    from voice_gateway.console.store import UserStore

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
SESSION_COOKIE = "hotline_console"
MAX_FORM_BYTES = 16 * 1024  # a sign-in form is a few hundred bytes

Endpoint = Callable[[Request], Awaitable[Response]]


def session_secret(settings: Settings) -> str:
    """HOTLINE_CONSOLE_SECRET, else a random secret made once and kept (mode 0600) in var/run/console-secret,
    so that a restart keeps everyone signed in."""
    if settings.gateway.console_secret:
        return settings.gateway.console_secret
    path = Path(settings.var_dir) / "run" / "console-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


class ConsoleCSRF(CSRFMiddleware):
    """starlette-csrf, with the token also accepted as the `csrftoken` field of a small urlencoded form."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            request = Request(scope)
            is_form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            if is_form and CSRF_HEADER not in request.headers:
                scope, receive = await self._token_from_form(scope, receive)
        await super().__call__(scope, receive, send)

    @staticmethod
    async def _token_from_form(scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Read the body (up to MAX_FORM_BYTES, else leave the request as it is: the check then fails) and
        hand it on unchanged, with the form's token as the header the library reads."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > MAX_FORM_BYTES or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        if size > MAX_FORM_BYTES:
            return scope, replay
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        token = parse_qs(body.decode("latin-1")).get(CSRF_COOKIE, [""])[0]
        if token:
            scope = dict(scope, headers=[*scope["headers"], (CSRF_HEADER.encode(), token.encode("latin-1"))])
        return scope, replay

    def _get_error_response(self, request: Request) -> Response:
        if wants_json(request):
            return JSONResponse({"error": "CSRF 校验失败，请刷新页面后重试"}, status_code=403)
        return PlainTextResponse("CSRF 校验失败，请刷新页面后重试", status_code=403)


async def current_user(request: Request) -> ConsoleUser | None:
    """The signed-in user, read again from the database; a session whose user is gone or disabled is cleared."""
    user_id, name = request.session.get("uid"), request.session.get("name")
    if not isinstance(user_id, int) or not isinstance(name, str):
        return None
    store: UserStore = request.app.state.users
    user = await asyncio.to_thread(store.active, user_id, name)
    if user is None:
        request.session.clear()
    return user


def unauthenticated(request: Request) -> Response:
    if wants_json(request):
        return JSONResponse({"error": "请先登录"}, status_code=401)
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def forbidden(request: Request) -> Response:
    if wants_json(request):
        return JSONResponse({"error": "没有权限"}, status_code=403)
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "refused.html", {"user": request.state.user}, status_code=403)


def requires(*roles: Role) -> Callable[[Endpoint], Endpoint]:
    """The endpoint runs for a signed-in user whose role is one of `roles` (or admin), as `request.state.user`."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = await current_user(request)
            if user is None:
                return unauthenticated(request)
            request.state.user = user
            if not user.role.admits(roles):
                return forbidden(request)
            return await endpoint(request)

        return guarded

    return decorate
