"""Roles on pages and on the API, the action routes' checks, the backend's refusals, and the audit they write."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.console.conftest import post_json, sign_in
from voice_gateway.console.backend import CallAction


def test_an_agent_opening_the_supervisor_page_is_403(client: TestClient) -> None:
    assert sign_in(client, "agent1").status_code == 200
    page = client.get("/supervisor")
    assert page.status_code == 403 and "没有权限" in page.text
    assert client.get("/api/calls").status_code == 403
    assert client.get("/trainer").status_code == 403
    assert client.get("/admin/audit").status_code == 403
    assert client.get("/agent").status_code == 200
    assert client.get("/api/queue").json()["queues"]["card"]["waiting"] == 1


def test_each_role_opens_its_own_page_and_admin_opens_all(client: TestClient) -> None:
    expected = {
        "sup1": {"/supervisor": 200, "/agent": 403, "/trainer": 403, "/admin/audit": 403},
        "trainer1": {"/trainer": 200, "/agent": 403, "/supervisor": 403, "/admin/audit": 403},
        "admin1": {"/agent": 200, "/supervisor": 200, "/trainer": 200, "/admin/audit": 200},
    }
    for name, pages in expected.items():
        assert sign_in(client, name).status_code == 200
        for path, status in pages.items():
            assert client.get(path).status_code == status, (name, path)
        client.post("/logout", data={"csrftoken": client.cookies["csrftoken"]})
    assert sign_in(client, "trainer1").status_code == 200
    trainer = client.get("/trainer")
    assert "<title>训练师工作台" in trainer.text and 'id="event-list"' not in trainer.text
    assert client.get("/").headers["location"] == "/trainer"


def test_the_supervisor_page_and_api(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    page = client.get("/supervisor")
    assert page.status_code == 200 and "sup1" in page.text and "班长" in page.text
    assert 'src="/static/supervisor.js"' in page.text
    calls = client.get("/api/calls").json()["calls"]
    assert {c["call_id"] for c in calls} == {"call-queued", "call-agent2", "call-bot"}
    assert set(calls[0]) == {
        *("call_id", "gateway", "state", "queue", "started_at", "turns"),
        *("agent", "duration_s", "frustrated", "frustration"),
    }
    assert set(calls[0]["turns"][0]) == {"seq", "speaker", "text", "intent", "confidence"}


def test_an_agent_asking_for_a_supervisor_action_is_403(client: TestClient) -> None:
    assert sign_in(client, "agent1").status_code == 200
    for action in ("listen", "whisper", "barge", "takeover", "leave"):
        answer = post_json(client, f"/api/calls/call-agent2/{action}")
        assert answer.status_code == 403 and answer.json() == {"error": "没有权限"}, action
    assert client.app.state.backend.acted == []
    assert client.app.state.audit.entries(who="agent1")[0].action == "login"


def test_an_accepted_action_is_audited_and_refusals_are_the_backends(client: TestClient) -> None:
    backend = client.app.state.backend
    assert sign_in(client, "agent1").status_code == 200
    assert post_json(client, "/api/calls/call-queued/accept").json()["call"]["state"] == "agent"
    note = {"note": "来电人身份证号110105196805121230，已解释补卡流程", "disposition": "resolved"}
    assert post_json(client, "/api/calls/call-queued/wrapup", note).status_code == 200
    refused = post_json(client, "/api/calls/call-agent2/hangup")  # another agent's call
    assert refused.status_code == 403 and refused.json() == {"error": "这不是您的通话"}
    assert post_json(client, "/api/calls/call-ended/hangup").status_code == 404
    assert post_json(client, "/api/calls/no-such-call/accept").status_code == 404
    assert post_json(client, "/api/calls/call-agent2/accept").status_code == 409
    assert post_json(client, "/api/calls/call-queued/dance").status_code == 404
    bad = client.post(
        "/api/calls/call-queued/hangup", content=b"[1]", headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    assert bad.status_code == 400
    assert [(a[1], a[2]) for a in backend.acted] == [
        (CallAction.ACCEPT, "call-queued"),
        (CallAction.WRAPUP, "call-queued"),
    ]
    entries = client.app.state.audit.entries(who="agent1")
    assert [(e.action, e.call_id) for e in entries] == [
        ("wrapup", "call-queued"),
        ("accept", "call-queued"),
        ("login", None),
    ]
    assert "110105196805121230" not in entries[0].detail and "resolved" in entries[0].detail


def test_a_supervisor_acts_and_uses_agent_actions_only_on_a_call_taken_over(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    assert post_json(client, "/api/calls/call-agent2/listen").status_code == 200
    assert post_json(client, "/api/calls/call-agent2/whisper").status_code == 200
    assert post_json(client, "/api/calls/call-agent2/leave").status_code == 200
    assert post_json(client, "/api/calls/call-ended/barge").status_code == 404  # a supervisor action, ended call
    assert post_json(client, "/api/calls/call-bot/hangup").status_code == 403  # not taken over
    assert post_json(client, "/api/calls/call-bot/takeover").status_code == 200
    assert post_json(client, "/api/calls/call-bot/return").status_code == 200
    actions = [(e.action, e.call_id) for e in client.app.state.audit.entries(who="sup1")][:-1]
    assert actions == [
        ("return", "call-bot"),
        ("takeover", "call-bot"),
        ("leave", "call-agent2"),
        ("whisper", "call-agent2"),
        ("listen", "call-agent2"),
    ]


def test_agent_status(client: TestClient) -> None:
    backend = client.app.state.backend
    assert sign_in(client, "agent1").status_code == 200
    answer = post_json(client, "/api/agent/status", {"status": "available", "skills": ["card"]})
    assert answer.status_code == 200 and answer.json() == {"status": "available", "skills": ["card"]}
    assert post_json(client, "/api/agent/status", {"status": "away"}).json()["skills"] == ["card", "general"]
    assert post_json(client, "/api/agent/status", {"status": "available", "skills": ["talent"]}).status_code == 403
    assert post_json(client, "/api/agent/status", {"status": "asleep"}).status_code == 400
    assert post_json(client, "/api/agent/status", {"status": "away", "skills": ["nope"]}).status_code == 400
    assert [s[1].value for s in backend.statuses] == ["available", "away"]
    assert client.app.state.audit.entries(who="agent1")[0].detail == "away: card,general"
    client.post("/logout", data={"csrftoken": client.cookies["csrftoken"]})
    assert sign_in(client, "sup1").status_code == 200
    assert post_json(client, "/api/agent/status", {"status": "available"}).status_code == 403


def test_events_stream_as_sse_and_resume_after_the_last_event_id(client: TestClient) -> None:
    backend = client.app.state.backend
    backend.scripted = [
        ("1-0", "queue", {"waiting": 1}),
        ("2-0", "call", {"call_id": "call-queued", "state": "queued"}),
        ("3-0", "call", {"call_id": "call-queued", "text": "我社保卡丢了"}),
    ]
    assert sign_in(client, "agent1").status_code == 200
    with client.stream("GET", "/api/events") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert _events(body)[0] == ("1-0", "queue", '{"waiting":1}')
    assert [e[:2] for e in _events(body)] == [("1-0", "queue"), ("2-0", "call"), ("3-0", "call")]
    assert "我社保卡丢了" in body
    with client.stream("GET", "/api/events", headers={"Last-Event-ID": "2-0"}) as stream:
        assert [e[0] for e in _events("".join(stream.iter_text()))] == ["3-0"]
    with client.stream("GET", "/api/events?last_event_id=1-0") as stream:
        assert [e[0] for e in _events("".join(stream.iter_text()))] == ["2-0", "3-0"]
    assert backend.streams_closed == 3


def _events(body: str) -> list[tuple[str, str, str]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["id"], fields["event"], fields["data"]))
    return events


def test_static_assets_are_served_by_the_console(client: TestClient) -> None:
    for name in ("console.js", "agent.js", "supervisor.js", "console.css"):
        assert client.get(f"/static/{name}").status_code == 200, name
    js = client.get("/static/console.js").text
    assert "X-CSRFToken" in js and "EventSource" in js and "last_event_id" in js
