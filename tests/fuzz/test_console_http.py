"""The consoles' HTTP routes fuzzed (the real Starlette app, the FakeBackend): any path, method, body, cookie and
CSRF header a browser or an attacker may send gets a 4xx or 2xx with a body, never a 5xx; nothing that changes a
call is accepted without a signed session and the CSRF token; a forged session cookie is a 401, not a user.

Signed in as a supervisor (who may act on every call) and as an agent, or with a forged, a missing or a foreign
session cookie, each example posts mutated JSON (and non-JSON) bodies to the action routes and asks the read
routes with odd ids."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.console.conftest import USERS, console_settings, csrf, sign_in
from tests.console.fakes import demo_backend
from tests.fuzz.harness import Harness, budget
from tests.fuzz.jsonmut import mutated_text
from voice_gateway.console import make_app
from voice_gateway.console.security import SESSION_COOKIE
from voice_gateway.console.store import UserStore, open_database

CONSOLE = Harness("console-http")
CALL_IDS = ["call-1", "call-2", "call-3", "call-4", "nope", "../../etc/passwd", "%00", "x" * 300, "呼叫"]
ACTIONS = ["accept", "hangup", "wrapup", "return", "listen", "whisper", "barge", "takeover", "leave", "dance", ""]
BODIES = [
    {},
    {"sdp": "v=0\r\n", "type": "offer"},
    {"note": "已解答", "disposition": "resolved"},
    {"status": "available", "skills": ["card"]},
    {"status": "away", "skills": "card,general"},
    {"status": 7, "skills": [None]},
]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TestClient]]:
    var = tmp_path_factory.mktemp("console-fuzz")
    engine = open_database(f"sqlite:///{var / 'console.sqlite3'}")
    for name, (role, skills) in USERS.items():
        UserStore(engine).add(name, role, "正确的密码-12333", skills)
    engine.dispose()
    app = make_app(console_settings(var), demo_backend(media=False))
    with (
        TestClient(app, follow_redirects=False) as sup,
        TestClient(app, follow_redirects=False) as agent,
        TestClient(app, follow_redirects=False) as anonymous,
    ):
        assert sign_in(sup, "sup1").status_code == 200 and sign_in(agent, "agent1").status_code == 200
        yield {"supervisor": sup, "agent": agent, "anonymous": anonymous}
    shutil.rmtree(var, ignore_errors=True)


def body_text(seed: int) -> str:
    rng = random.Random(seed)
    body = rng.choice(BODIES)
    return rng.choice(
        [json.dumps(body, ensure_ascii=False), mutated_text(body, rng), "", "null", "[]", "{", "a" * 5000]
    )


@settings(max_examples=budget(2000), suppress_health_check=list(HealthCheck), deadline=None)
@given(
    who=st.sampled_from(["supervisor", "agent", "anonymous", "forged"]),
    route=st.sampled_from(["call", "callback", "status", "read"]),
    call_id=st.sampled_from(CALL_IDS),
    action=st.sampled_from(ACTIONS),
    seed=st.integers(0, 2**32 - 1),
    with_csrf=st.booleans(),
)
@CONSOLE
def test_no_request_breaks_the_consoles_or_acts_without_a_session_and_csrf(
    clients: dict[str, TestClient], who: str, route: str, call_id: str, action: str, seed: int, with_csrf: bool
) -> None:
    client = clients["anonymous" if who == "forged" else who]
    cookies = {SESSION_COOKIE: "eyJ1c2VyIjogMX0=.forged.signature"} if who == "forged" else None
    headers = {"content-type": "application/json"}
    if with_csrf and who != "anonymous":
        headers["x-csrftoken"] = csrf(client)
    path = {
        "call": f"/api/calls/{call_id}/{action}",
        "callback": f"/api/callbacks/{call_id}/{action}",
        "status": "/api/agent/status",
        "read": f"/api/calls/{call_id}",
    }[route]
    method = "GET" if route == "read" else "POST"

    def ask() -> None:
        kwargs = {"content": body_text(seed).encode(), "headers": headers} if method == "POST" else {}
        if cookies:
            client.cookies.update(cookies)
        try:
            response = client.request(method, path, **kwargs)
        finally:
            if cookies:
                client.cookies.clear()
        assert response.status_code < 500, (response.status_code, path, response.text[:200])
        if method == "POST" and (who in ("anonymous", "forged") or not with_csrf):
            assert response.status_code in (307, 401, 403, 404, 405), (who, with_csrf, path, response.status_code)

    CONSOLE.check(ask)


def test_the_harness_signs_in_for_real(clients: dict[str, TestClient]) -> None:
    assert clients["supervisor"].get("/api/me").json()["role"] == "supervisor"
    assert clients["anonymous"].get("/api/me").status_code == 401
