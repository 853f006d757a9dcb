"""The dialogue keeps its promises when parts fail: a Rasa restart, a broken business database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from sqlalchemy import create_engine, text

from hotline_domain.contract import HandoffReason
from hotline_domain.seed import DEMO_CALLERS
from tests.conftest import Caller
from tests.dialogue.test_conversations import spoken_digits
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import Stack

ZHANG, LI, WANG, LIU, CHEN = DEMO_CALLERS


async def test_a_conversation_survives_a_rasa_server_restart(stack: Stack) -> None:
    sender = "restart-test"
    async with RasaClient(stack.rasa_url, timeout=30) as client:
        caller = Caller(client, sender, stack.redis_url)
        await caller.say("我社保卡丢了要挂失")
        turn = await caller.say(f"身份证号是{spoken_digits(WANG.id_number)}")
        assert "服务密码" in turn.text
    keys = redis.Redis.from_url(stack.redis_url).keys(f"hotline:tracker:{sender}")
    assert keys, "the tracker lives in Redis"
    stack.restart("rasa")
    async with RasaClient(stack.rasa_url, timeout=30) as client:
        caller = Caller(client, sender, stack.redis_url, turns=caller.turns)  # the last turn asked for a secret
        turn = await caller.keys(WANG.password + "#")
        assert "身份验证通过" in turn.text and "确认挂失吗" in turn.text  # the form went on where it was


@contextlib.contextmanager
def table_offline(db_url: str, table: str) -> Iterator[None]:
    """Take a table away under the running action server, as a broken or half-migrated database would."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_offline"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table}_offline RENAME TO {table}"))


async def test_database_down_during_verification_apologises_and_hands_off(caller: Caller, stack: Stack) -> None:
    await caller.say("查一下我的养老保险交了多少年")
    with table_offline(stack.settings.db_url, "citizens"):
        turn = await caller.say(f"身份证号是{spoken_digits(ZHANG.id_number)}")
    assert "非常抱歉" in turn.text
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.BACKEND_ERROR


async def test_database_down_during_a_query_apologises_and_hands_off(caller: Caller, stack: Stack) -> None:
    await caller.say("我的社保卡做好了没有")
    await caller.say(f"身份证号是{spoken_digits(WANG.id_number)}")
    with table_offline(stack.settings.db_url, "card_orders"):
        turn = await caller.keys(WANG.password + "#")
    assert "非常抱歉" in turn.text and "制好" not in turn.text  # no guessed answer
    assert turn.handoff is not None and turn.handoff.reason is HandoffReason.BACKEND_ERROR


async def test_half_a_sentence_is_taken_back_and_the_whole_one_answered(caller: Caller) -> None:
    """What the gateway does when a caller paused mid-sentence and the dialogue answered the first half."""
    await caller.say("/greet")
    first = await caller.say("我想问一下")  # half a sentence
    await caller.client.rewind(caller.sender)
    whole = await caller.say("我想问一下，失业保险金怎么领")
    tracker = await caller.client.tracker(caller.sender)
    kinds = [e["event"] for e in tracker["events"]]
    assert kinds.count("rewind") == 1
    assert tracker["latest_message"]["intent"]["name"] == "unemployment_benefit"
    assert whole.text != first.text and "失业" in whole.text
