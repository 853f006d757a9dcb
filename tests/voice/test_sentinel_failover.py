"""Redis failover through Sentinel under a real hotline: a primary, its replica and three sentinels (quorum 2,
down-after 1000 ms), the Rasa server, the action server and a voice gateway all configured with the sentinels.

A caller is in the middle of reporting a lost card when the primary is SIGKILLed, just as the caller keys the
last digit of the ID number (which sends it): that turn finds no Redis (Rasa's lock and tracker stores, the
gateway's call record) until the sentinels have promoted the replica. It must be answered late, not fail: the
bot goes on to ask for the password, the password (passed by one-time Redis reference) is taken, and the next
step of the flow follows, with no apology and no handover. A call placed after the failover is answered as
usual. `-s` prints the times.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from hotline_domain.business import BusinessDb
from hotline_domain.seed import DEMO_CALLERS
from tests.voice.conftest import first, wav
from voice_gateway import redis_link
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.config import Settings
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import ManagedProcess, Stack, free_port, gateway_process
from voice_gateway.testing.sentinels import SentinelCluster
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn

TOKEN = "sentinel-test"
ZHANG = DEMO_CALLERS[0]  # a card in order: the card-loss flow runs to its confirmation


@dataclass
class Hotline:
    cluster: SentinelCluster
    stack: Stack
    gateway: ManagedProcess
    port: int

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio?token={TOKEN}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    async def ended(self, call_id: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The gateway's record of a call once it has ended, and its turns, read through the sentinels."""
        redis = redis_link.connect(self.cluster.url, self.cluster.sentinels, socket_timeout=2)
        store = CallStore(redis)
        try:
            deadline = time.monotonic() + 5
            while (record := await store.record(call_id)).get("state") != "ended" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the caller's hang-up reaches the gateway a little later
            return record, await store.turns(call_id)
        finally:
            await redis.aclose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinels"))
    cluster.start()  # stops what it started if it fails
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def hotline(
    cluster: SentinelCluster, model: Path, speech_models_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hotline]:
    tmp = tmp_path_factory.mktemp("hotline-sentinel")
    settings = replace(
        Settings.from_env(),
        redis_url=cluster.url,  # its database only: every client finds the primary through the sentinels
        redis_sentinels=cluster.sentinels,
        db_url=f"sqlite:///{tmp / 'business.sqlite3'}",
        var_dir=tmp / "var",
    )
    stack = Stack(settings, rasa_port=free_port(), actions_port=free_port())
    port = free_port()
    gateway = gateway_process(settings, cluster.url, stack.rasa_url, port, TOKEN, stack.rasa_token, free_port())
    gateway.env = {
        **(gateway.env or {}),
        "HOTLINE_ASR": "whisper",
        "HOTLINE_SIP_PORT": "0",
        "HOTLINE_NO_INPUT_S": "8",
        "HOTLINE_GATEWAY_ID": "gw-sentinel",
        "HOTLINE_VAR": str(tmp / "var"),
        "HOTLINE_CONSOLE_DB_URL": f"sqlite:///{tmp / 'console.sqlite3'}",
    }
    pool = ThreadPoolExecutor(2)
    try:
        warming = pool.submit(gateway.start)  # the gateway warms its speech up while Rasa loads its model
        seeding = pool.submit(BusinessDb, settings.db_url)  # else its first use (~2 s) falls on the failover turn
        stack.start(model)
        seeding.result().engine.dispose()
        warming.result()
        yield Hotline(cluster, stack, gateway, port)
    finally:
        pool.shutdown(wait=True)
        gateway.stop()
        stack.stop()


class FailoverCaller(SimulatedCaller):
    """A Twilio caller that runs `before` just before its `at`-th key press (from 0), and notes when it heard the
    agent."""

    def __init__(self, url: str, at: int, before: Callable[[], Awaitable[None]]) -> None:
        super().__init__(url)
        self.at, self.before = at, before
        self.keyed = 0
        self.voiced: list[float] = []

    async def _key(self, ws: Any, key: str) -> None:
        if self.keyed == self.at:
            await self.before()
        self.keyed += 1
        await super()._key(ws, key)

    def _heard_audio(self, pcm: bytes) -> None:
        super()._heard_audio(pcm)
        if rms_dbfs(pcm) > -60:
            self.voiced.append(time.monotonic())


async def test_a_call_rides_out_the_redis_primary_killed_mid_turn(hotline: Hotline) -> None:
    cluster = hotline.cluster
    killed: list[float] = []  # monotonic, wall clock
    promoted: list[asyncio.Future[float]] = []

    async def kill_primary() -> None:
        promoted.append(asyncio.ensure_future(asyncio.to_thread(cluster.wait_promoted)))
        killed.extend((await asyncio.to_thread(cluster.kill_primary), time.time()))

    # the ID number is sent with its 18th digit: the primary dies just before it; keys cut the prompts short
    caller = FailoverCaller(hotline.url(), len(ZHANG.id_number) - 1, kill_primary)
    report = await caller.run(
        [
            Turn(wav=wav("call_card_loss_1_request.wav")),
            Turn(keys=ZHANG.id_number + "#", barge_in=True),
            Turn(keys=ZHANG.password + "#", barge_in=True),
            Turn(wait_s=2.0),
        ]
    )
    assert killed and promoted, "the caller keyed the ID number"
    switched = await promoted[0]
    assert cluster.named_primary() == cluster.replica_port
    answered = min(t for t in caller.voiced if t > killed[0])
    record, turns = await hotline.ended(caller.call_id)
    logged = cluster.switched_at()
    print(
        f"\nSentinel failover: primary SIGKILLed -> a sentinel names the replica {switched - killed[0]:.2f} s "
        f"(+switch-master logged after {(logged or killed[1]) - killed[1]:.2f} s) -> the turn in flight answered "
        f"(the agent heard again) {answered - killed[0]:.2f} s; turn gaps {[t.turn_gap_ms for t in report.turns]} ms, "
        f"the dialogue's share {[t.get('dialogue_ms') for t in turns if t.get('kind') == 'answer']} ms"
    )
    assert record.get("reason") == "caller_hung_up", f"the gateway did not drop the call: {record}"
    assert "handoff" not in record, f"no apology and no person: {record.get('handoff')}"
    after_keys = [t["bot"] for t in turns if t.get("kind") == "answer" and t.get("after") == "keys"]
    assert len(after_keys) == 2, turns
    assert "密码" in after_keys[0], "the turn in the failover was answered: the ID taken, the password asked for"
    assert "确认挂失" in after_keys[1], "the password was taken from Redis and the flow went on to its confirmation"
    async with RasaClient(hotline.stack.rasa_url, token=hotline.stack.rasa_token) as rasa:
        tracker = await rasa.tracker(caller.call_id)
    slots = tracker["slots"]
    assert (slots["service"], slots["verified"], slots["requested_slot"]) == ("card_loss_report", True, "confirm")
    intents = [e["parse_data"]["intent"]["name"] for e in tracker["events"] if e["event"] == "user"]
    assert intents[-3:] == ["card_loss_report", "inform", "inform"], "the conversation kept its context"


async def test_a_call_placed_after_the_failover_is_answered(hotline: Hotline) -> None:
    deadline = time.monotonic() + 15
    while not hotline.ready():
        assert time.monotonic() < deadline, "the gateway takes calls again once the replica is the primary"
        await asyncio.sleep(0.2)
    caller = SimulatedCaller(hotline.url())
    report = await caller.run([Turn(wav=first("intent", "retirement_age"))])
    record, _ = await hotline.ended(caller.call_id)
    assert report.turns[0].agent_audio_s > 1.0 and "handoff" not in record, record
