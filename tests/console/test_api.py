"""The API the pages are built on: a call's context card, today's figures, callbacks, the queue's shape, and an
action's WebRTC offer kept out of the audit log."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.console.conftest import post_json, sign_in
from tests.console.fakes import FakeCall

CARD_FIELDS = {
    *("call_id", "gateway", "state", "queue", "transport", "started_at", "agent", "reason", "reason_label"),
    *("identity", "intent_path", "slots", "summary", "turns", "earlier_calls", "waited_s"),
}


def test_an_agent_reads_the_card_of_a_call_in_their_skills_or_their_own(client: TestClient) -> None:
    backend = client.app.state.backend
    backend.add(FakeCall("call-employment", queue="employment"))
    assert client.get("/api/calls/call-queued").status_code == 401
    assert sign_in(client, "agent1").status_code == 200
    card = client.get("/api/calls/call-queued")
    assert card.status_code == 200 and set(card.json()) == CARD_FIELDS
    assert set(card.json()["identity"]) == {"id_number", "verified"}
    assert set(card.json()["turns"][0]) == {"seq", "speaker", "text", "intent", "confidence"}
    refused = client.get("/api/calls/call-employment")  # not one of agent1's skills
    assert refused.status_code == 403 and refused.json() == {"error": "这通电话不在您的技能队列中"}
    assert client.get("/api/calls/call-agent2").status_code == 403  # another agent's call
    assert client.get("/api/calls/no-such-call").status_code == 404
    assert client.get("/api/stats").status_code == 403


def test_a_supervisor_reads_any_card_and_todays_figures(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    assert client.get("/api/calls/call-agent2").json()["agent"] == "agent2"
    assert client.get("/api/calls/call-ended").status_code == 404
    assert set(client.get("/api/stats").json()) == {
        *("calls", "bot_resolved", "handed_over", "abandoned", "average_wait_s", "turn_gap_p95_ms"),
    }


def test_the_queue_lists_each_skills_calls_and_the_callbacks(client: TestClient) -> None:
    backend = client.app.state.backend
    backend.add_callback("cb-1", "call-old")
    assert sign_in(client, "agent1").status_code == 200
    answer = client.get("/api/queue").json()
    card = answer["queues"]["card"]
    assert set(card) == {"waiting", "longest_wait_s", "agents_available", "estimated_wait_s", "calls"}
    assert card["calls"] == [{"call_id": "call-queued", "waited_s": 42, "priority": 1}]
    assert answer["callbacks"][0]["number_masked"] == "138****5678" and "number_sealed" not in answer["callbacks"][0]


def test_callbacks_are_dialled_and_done_and_audited(client: TestClient) -> None:
    backend = client.app.state.backend
    backend.add_callback("cb-1", "call-old")
    assert sign_in(client, "agent1").status_code == 200
    assert post_json(client, "/api/callbacks/cb-1/dial").status_code == 400  # no browser offer to bridge to
    dialled = post_json(client, "/api/callbacks/cb-1/dial", {"sdp": "v=0", "type": "offer"}).json()
    assert dialled["callback"]["state"] == "dialling" and dialled["call_id"] == "callback-cb-1"
    assert post_json(client, "/api/callbacks/cb-1/done").json()["state"] == "done"
    again = post_json(client, "/api/callbacks/cb-1/done")
    assert again.status_code == 409 and again.json() == {"error": "这条回电已处理完毕"}
    assert post_json(client, "/api/callbacks/cb-9/dial").status_code == 404
    assert post_json(client, "/api/callbacks/cb-1/dance").status_code == 404
    assert client.post("/api/callbacks/cb-1/done", json={}).status_code == 403  # no CSRF header
    entries = client.app.state.audit.entries(who="agent1")
    assert [(e.action, e.call_id, e.detail) for e in entries][:2] == [
        ("callback_done", "call-old", "cb-1"),
        ("callback_dial", "callback-cb-1", "cb-1"),  # the call the dial placed
    ]
    assert entries[0].label == "回电完成"
    client.post("/logout", data={"csrftoken": client.cookies["csrftoken"]})
    assert sign_in(client, "trainer1").status_code == 200
    assert post_json(client, "/api/callbacks/cb-1/dial").status_code == 403


def test_an_offer_is_not_written_to_the_audit_log(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    offer = {"sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" + "a=x\r\n" * 400, "type": "offer"}
    assert post_json(client, "/api/calls/call-agent2/listen", offer).status_code == 200
    entry = client.app.state.audit.entries(who="sup1")[0]
    assert (entry.action, entry.detail) == ("listen", "")
    assert client.app.state.backend.acted[-1][3] == offer  # the backend got it whole


def test_an_agent_reads_back_the_status_and_skills_they_set(client: TestClient) -> None:
    assert client.get("/api/agent/status").status_code == 401
    assert sign_in(client, "agent1").status_code == 200
    never = client.get("/api/agent/status")
    assert never.status_code == 200
    assert never.json() == {"status": "offline", "skills": ["card", "general"], "all_skills": ["card", "general"]}
    assert post_json(client, "/api/agent/status", {"status": "available", "skills": ["card"]}).status_code == 200
    assert client.get("/api/agent/status").json()["status"] == "available"
    assert client.get("/api/agent/status").json()["skills"] == ["card"]


def test_only_agents_read_an_agent_status(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    assert client.get("/api/agent/status").status_code == 403
