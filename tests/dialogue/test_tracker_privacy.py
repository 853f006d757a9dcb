"""Rasa's side of PIPL: the conversation store holds no clear ID number, password or phone number; Rasa's HTTP API
needs the token; the action server and Rasa listen on loopback only."""

from __future__ import annotations

import json

import aiohttp
import redis

from hotline_domain.keypad import keypad_message
from hotline_domain.seed import DEMO_CALLERS
from tests.conftest import Caller
from tests.dialogue.test_conversations import spoken_digits, verify
from tests.privacy_scan import find, redis_contents
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import Stack

ZHANG, LI, WANG, LIU, CHEN = DEMO_CALLERS
PHONE = "13912345678"


async def test_the_conversation_store_holds_no_clear_id_password_or_phone(stack: Stack) -> None:
    async with RasaClient(stack.rasa_url, timeout=30, token=stack.rasa_token) as client:
        spoken = Caller(client, "privacy-spoken-id", stack.redis_url)
        await spoken.say("我社保卡丢了要挂失")
        turn = await spoken.say(f"身份证号是{spoken_digits(ZHANG.id_number)}")
        assert f"尾号{ZHANG.id_number[-4:]}" in turn.text
        turn = await spoken.say(f"密码是{ZHANG.password}")  # a spoken password: refused, and never stored
        assert "请不要说出来" in turn.text
        await spoken.say(f"密码是{spoken_digits(ZHANG.password)}")
        turn = await spoken.keys(ZHANG.password + "#")
        assert "身份验证通过" in turn.text and "确认挂失吗" in turn.text  # the form goes on with the sealed ID
        turn = await spoken.say("先不挂了")
        await spoken.say(f"我手机号是{spoken_digits(PHONE)}")
        await spoken.say("我的电话是139-1234-5678")

        keyed = Caller(client, "privacy-keyed-id", stack.redis_url)
        await keyed.say("我的社保卡做好了没有")
        await verify(keyed, WANG, by_keypad=True)
        assert "已经制好" in keyed.turns[-1].text  # the query ran on the ID behind the sealed reference

        plain = Caller(client, "privacy-plain-keys", stack.redis_url)  # a password keyed in, not by reference
        await plain.say("帮我查一下我的焊工证是不是真的")
        await plain.keys(LIU.id_number + "#")
        turn = await plain.say(keypad_message(LIU.password + "#"))
        assert "焊工三级" in turn.text

        elder = Caller(client, "privacy-elder", stack.redis_url)  # the age check reads the sealed ID too
        await elder.say("查一下养老金发了没有")
        await verify(elder, LI)
        assert "六十五岁" in elder.turns[-1].text
        tracker = await client.tracker(spoken.sender)

    secrets = {
        "ZHANG id": ZHANG.id_number,
        "WANG id": WANG.id_number,
        "LI id": LI.id_number,
        "ZHANG password": ZHANG.password,
        "WANG password": WANG.password,
        "LI password": LI.password,
        "LIU id": LIU.id_number,
        "LIU password": LIU.password,
        "phone": PHONE,
    }
    stored = dict(redis_contents(stack.redis_url))
    trackers = {k: v for k, v in stored.items() if ":tracker:privacy-" in k}
    assert len(trackers) == 4, list(stored)  # Rasa wrote them to Redis, through masked_store.py
    assert "110105********1230" in trackers["redis db0 string hotline:tracker:privacy-spoken-id"]
    hits = [hit for where, text in stored.items() for hit in find(where, text, secrets)]
    assert not hits, "\n".join(f"{h.where}: {h.what} in ...{h.context}..." for h in hits)
    assert not find("the tracker over HTTP", json.dumps(tracker, ensure_ascii=False), secrets)
    slots = tracker["slots"]
    assert slots["id_number"] == "110105********1230" and slots["id_ref"] and slots["service_password"] == "verified"


async def test_rasa_http_api_needs_the_token_and_the_rest_channel_does_not(stack: Stack) -> None:
    base = stack.rasa_url
    async with aiohttp.ClientSession() as http:
        for method, path, body in [
            ("POST", "/model/parse", {"text": "我社保卡丢了"}),
            ("GET", "/conversations/privacy-spoken-id/tracker", None),
            ("POST", "/conversations/privacy-spoken-id/tracker/events", [{"event": "rewind"}]),
            ("GET", "/status", None),
            ("GET", "/domain", None),
        ]:
            async with http.request(method, base + path, json=body) as response:
                assert response.status == 401, (path, response.status)
            async with http.request(method, base + path, json=body, params={"token": "wrong"}) as response:
                assert response.status == 401, (path, response.status)
        async with http.post(base + "/model/parse", json={"text": "你好"}, params={"token": stack.rasa_token}) as r:
            assert r.status == 200
        body = {"sender": "privacy-rest-channel", "message": "你好"}
        async with http.post(base + "/webhooks/rest/webhook", json=body) as response:
            assert response.status == 200 and await response.json()  # the gateway's channel, as Rasa has it


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]  # noqa: SIM115
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_action_server_and_rasa_listen_on_loopback_only(stack: Stack) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    for port in (stack.actions_port, stack.rasa_port):
        assert _listening(port) and _listening(port) <= loopback, (port, _listening(port))
    assert redis.Redis.from_url(stack.redis_url).ping()
