"""Sign-in, sessions and CSRF through the real app: what works, and every way in that is refused."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import itsdangerous
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from tests.console.conftest import PASSWORD, console_settings, csrf, post_json, sign_in
from voice_gateway.console import make_app
from voice_gateway.console.audit import AuditLog
from voice_gateway.console.security import SESSION_COOKIE, session_secret
from voice_gateway.console.store import UserStore, database_url, open_database


def audit_of(client: TestClient) -> AuditLog:
    return client.app.state.audit


def me_with(client: TestClient, session_cookie: str, path: str = "/api/me"):
    """`path` with only this session cookie, as a browser (or an attacker) would send it."""
    client.cookies.delete(SESSION_COOKIE)
    client.cookies.set(SESSION_COOKIE, session_cookie)
    try:
        return client.get(path)
    finally:
        client.cookies.delete(SESSION_COOKIE)


def test_the_login_form_signs_in_and_redirects_to_the_role_page(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200 and 'name="username"' in page.text and 'name="password"' in page.text
    token = client.cookies["csrftoken"]
    answer = client.post("/login", data={"username": "agent1", "password": PASSWORD, "csrftoken": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/agent"
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "max-age=43200" in cookie.lower()
    agent = client.get("/agent")
    assert agent.status_code == 200
    assert "agent1" in agent.text and "坐席" in agent.text and "退出" in agent.text and 'id="event-list"' in agent.text
    assert [e.action for e in audit_of(client).entries(who="agent1")] == ["login"]


def test_the_login_form_goes_to_the_page_asked_for(client: TestClient) -> None:
    token = csrf(client)
    fields = {"username": "admin1", "password": PASSWORD, "csrftoken": token, "next": "/supervisor"}
    assert client.post("/login", data=fields).headers["location"] == "/supervisor"
    client.cookies.delete(SESSION_COOKIE)
    fields["next"] = "//elsewhere.example/"  # never off the site
    assert client.post("/login", data=fields).headers["location"] == "/admin/audit"


def test_json_sign_in_answers_200_and_the_session_works(client: TestClient) -> None:
    answer = sign_in(client, "sup1")
    assert answer.status_code == 200
    assert answer.json()["user"] == {"name": "sup1", "role": "supervisor", "skills": []}
    me = client.get("/api/me")
    assert me.status_code == 200 and me.json()["role"] == "supervisor" and me.json()["home"] == "/supervisor"
    logout = client.post("/logout", headers={"X-CSRFToken": csrf(client), "Accept": "application/json"})
    assert logout.status_code == 200
    assert client.get("/api/me").status_code == 401
    assert [e.action for e in audit_of(client).entries(who="sup1")] == ["logout", "login"]


def test_a_wrong_password_is_401_and_audited(client: TestClient) -> None:
    answer = sign_in(client, "agent1", "not the password")
    assert answer.status_code == 401 and answer.json() == {"error": "用户名或密码错误"}
    form = client.post("/login", data={"username": "nobody", "password": "x" * 12, "csrftoken": csrf(client)})
    assert form.status_code == 401 and "用户名或密码错误" in form.text
    assert client.get("/api/me").status_code == 401
    failed = audit_of(client).entries()
    assert [(e.who, e.action) for e in failed] == [("nobody", "login_failed"), ("agent1", "login_failed")]
    assert failed[0].detail.startswith("unknown user") and failed[1].detail.startswith("wrong password")


def test_without_a_session_the_api_is_401_and_pages_redirect_to_login(client: TestClient) -> None:
    for path in ("/api/me", "/api/calls", "/api/queue", "/api/events"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.json() == {"error": "请先登录"}, path
    assert post_json(client, "/api/calls/call-queued/accept").status_code == 401
    for path in ("/agent", "/supervisor", "/trainer", "/admin/audit"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == f"/login?next={path}", path
    assert client.get("/").headers["location"] == "/login"


def test_a_forged_or_altered_session_cookie_is_refused(client: TestClient, settings) -> None:
    payload = base64.b64encode(json.dumps({"uid": 5, "name": "admin1"}).encode())
    forged = itsdangerous.TimestampSigner("a secret the attacker guessed").sign(payload).decode()
    assert me_with(client, forged).status_code == 401
    assert me_with(client, forged, "/admin/audit").status_code == 303

    assert sign_in(client, "agent1").status_code == 200
    genuine = client.cookies[SESSION_COOKIE]
    _, stamp, signature = genuine.rsplit(".", 2)
    altered = f"{payload.decode()}.{stamp}.{signature}"  # agent1's signature on admin1's session
    assert me_with(client, altered).status_code == 401
    assert me_with(client, genuine).status_code == 200
    # the real secret signs a session the app accepts: the refusals above are the signature's doing
    real = itsdangerous.TimestampSigner(session_secret(settings)).sign(payload).decode()
    assert me_with(client, real).json()["name"] == "admin1"


def test_an_expired_session_cookie_is_refused(settings, backend) -> None:
    short = replace(settings, gateway=replace(settings.gateway, console_session_max_age_s=1))
    with TestClient(make_app(short, backend), follow_redirects=False) as client:
        assert sign_in(client, "agent1").status_code == 200
        cookie = client.cookies[SESSION_COOKIE]
        assert me_with(client, cookie).status_code == 200
        time.sleep(2.1)  # a browser drops it by its Max-Age; sent anyway, as an attacker would
        assert me_with(client, cookie).status_code == 401


def test_a_post_without_the_csrf_token_is_403(client: TestClient) -> None:
    assert sign_in(client, "agent1").status_code == 200
    missing = client.post("/api/calls/call-queued/accept", json={})
    assert missing.status_code == 403 and "CSRF" in missing.json()["error"]
    other = client.post("/api/calls/call-queued/accept", json={}, headers={"X-CSRFToken": "forged.token"})
    assert other.status_code == 403
    assert client.app.state.backend.acted == []
    assert post_json(client, "/api/calls/call-queued/accept").status_code == 200
    # the sign-in form is protected too (a forged sign-in), in the header or the form field
    client.cookies.delete(SESSION_COOKIE)
    assert client.post("/login", data={"username": "agent1", "password": PASSWORD}).status_code == 403
    wrong_field = {"username": "agent1", "password": PASSWORD, "csrftoken": "x"}
    assert client.post("/login", data=wrong_field).status_code == 403


def test_a_disabled_users_session_stops_at_the_next_request(client: TestClient, settings) -> None:
    assert sign_in(client, "agent1").status_code == 200
    assert client.get("/api/me").status_code == 200
    engine = open_database(database_url(settings))
    UserStore(engine).disable("agent1")
    engine.dispose()
    assert client.get("/api/me").status_code == 401
    assert client.get("/agent").status_code == 303
    assert SESSION_COOKIE not in client.cookies  # the session was cleared
    assert sign_in(client, "agent1").status_code == 401
    assert audit_of(client).entries(who="agent1")[0].detail.startswith("disabled")


def test_a_hash_with_old_parameters_is_replaced_at_sign_in(client: TestClient, settings) -> None:
    engine = open_database(database_url(settings))
    UserStore(engine, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)).add("old", "agent", PASSWORD)
    store = UserStore(engine)
    before = _hash(engine, "old")
    assert "m=8192" in before and store.hasher.check_needs_rehash(before)
    assert sign_in(client, "old").status_code == 200
    after = _hash(engine, "old")
    assert after != before and not store.hasher.check_needs_rehash(after)
    engine.dispose()


def _hash(engine, name: str) -> str:
    from sqlalchemy import select

    from voice_gateway.console.store import users

    with engine.connect() as db:
        return db.execute(select(users.c.password_hash).where(users.c.name == name)).scalar_one()


def test_the_session_secret_is_made_once_and_kept_private(tmp_path) -> None:
    settings = console_settings(tmp_path / "var")
    first = session_secret(settings)
    path = tmp_path / "var" / "run" / "console-secret"
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 48
    assert session_secret(settings) == first
    given = console_settings(tmp_path / "var", console_secret="from-the-environment")
    assert session_secret(given) == "from-the-environment"
