"""/admin/audit: entries newest first for an admin, filtered by call id and user; refused to a supervisor."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.console.conftest import post_json, sign_in


def test_the_audit_page_lists_entries_for_an_admin(client: TestClient) -> None:
    assert sign_in(client, "sup1").status_code == 200
    assert post_json(client, "/api/calls/call-agent2/listen").status_code == 200
    assert post_json(client, "/api/calls/call-bot/takeover").status_code == 200
    assert client.get("/admin/audit").status_code == 403  # a supervisor may not
    client.post("/logout", data={"csrftoken": client.cookies["csrftoken"]})
    assert sign_in(client, "admin1").status_code == 200

    page = client.get("/admin/audit")
    assert page.status_code == 200 and "审计日志" in page.text
    rows = page.text.split("<tbody>")[1]
    order = [rows.index(label) for label in ("登录", "接管", "监听")]
    assert order == sorted(order)  # newest first: admin1's sign-in, the take-over, the listen
    assert "call-agent2" in rows and "call-bot" in rows and "退出登录" in rows

    by_call = client.get("/admin/audit", params={"call_id": "call-agent2"}).text.split("<tbody>")[1]
    assert (
        "监听" in by_call
        and "接管" not in by_call
        and 'value="call-agent2"' in client.get("/admin/audit?call_id=call-agent2").text
    )
    by_user = client.get("/admin/audit", params={"who": "admin1"}).text.split("<tbody>")[1]
    assert "登录" in by_user and "监听" not in by_user
    assert "没有记录" in client.get("/admin/audit", params={"who": "nobody"}).text
