"""A flood of bad callers against a small gateway while two real calls run: the real calls do not notice.

The gateway runs in this process with the real engines (Whisper, the synthesiser, Rasa, Redis) and room for
MAX_CALLS calls. Two real callers (raw PCM at 16 kHz) each ask two questions, talking over the agent, once on a
quiet gateway and once while waves of FLOOD (10x MAX_CALLS) WebSocket connection attempts with garbage frames
and FLOOD bogus SIP datagrams arrive, one wave a second. The real calls' questions are understood, their turn gap
under the flood stays under twice the quiet run's (medians: a refusal that blocked the loop or took a call's place
would show as seconds; the flood's own CPU on two shared cores costs up to a third, so the figure is printed, not
held to 20%), and every refused attempt got a code that says
why: a WebSocket close code (1008 no token, 1013 full, 1007/1003/1002/1009 bad input) or an HTTP status, a SIP
status (400, 481, 488) for each routable bogus request and silence for the unroutable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.voice.conftest import first
from voice_gateway.app import Gateway, load_speech
from voice_gateway.call_store import CallStore
from voice_gateway.config import GatewaySettings, Settings
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import Stack, free_port, free_udp_port
from voice_gateway.testing.ws_caller import PcmCaller, Turn
from voice_gateway.transports import common

MAX_CALLS = 4
FLOOD = 10 * MAX_CALLS  # WebSocket attempts per wave, and SIP datagrams per wave
TOKEN = "flood-token"
START_TIMEOUT_S = 2.0  # for the silent sockets of the flood (10 s in production)
QUESTIONS = [  # per real caller: two questions the policy answers directly, no form and no identity check
    ["work_injury", "insurance_transfer"],
    ["contribution_certificate", "pension_certification"],
]


@dataclass
class FloodLine:
    ws_url: str
    sip: tuple[str, int]
    gateway: Gateway
    store: CallStore


@pytest.fixture(scope="module")
async def line(stack: Stack, speech_models_installed: None) -> AsyncIterator[FloodLine]:
    config = GatewaySettings(
        port=free_port(),
        token=TOKEN,
        sip_port=free_udp_port(),
        asr_engine="whisper",
        asr_warm=1,
        max_calls=MAX_CALLS,
        no_input_s=30,
    )
    settings = replace(Settings.from_env(), redis_url=stack.redis_url, gateway=config)
    speech = await asyncio.to_thread(load_speech, config)
    store = CallStore(Redis.from_url(stack.redis_url, socket_timeout=2, socket_connect_timeout=2))
    dialogue = RasaClient(stack.rasa_url, timeout=5, token=stack.rasa_token)
    gateway = Gateway(settings, speech, dialogue, store)
    async with gateway.serving() as port:
        yield FloodLine(f"ws://127.0.0.1:{port}", ("127.0.0.1", config.sip_port), gateway, store)
    await dialogue.close()
    await store.redis.aclose()


# --- the real callers ---
def script(questions: list[str]) -> list[Turn]:
    """Each question over the agent's last words (the greeting, then the first answer); the call ends as the second
    answer starts, so a run takes seconds, not the length of the answers."""
    turns = [Turn(wav=first("intent", intent), barge_in=True, barge_in_after_s=0.5) for intent in questions]
    return [*turns, Turn(wait_s=0.3, barge_in=True)]


async def real_calls(line: FloodLine) -> list[tuple[PcmCaller, list[str], list[float]]]:
    callers = [PcmCaller(f"{line.ws_url}/pcm?token={TOKEN}") for _ in QUESTIONS]
    reports = await asyncio.gather(*(c.run(script(q)) for c, q in zip(callers, QUESTIONS, strict=True)))
    done = []
    for caller, questions, report in zip(callers, QUESTIONS, reports, strict=True):
        gaps = [t.turn_gap_ms for t in report.turns[: len(questions)]]
        assert all(g is not None for g in gaps), f"{caller.call_id}: an unanswered question: {report}"
        done.append((caller, questions, gaps))
    return done


async def understood(line: FloodLine, call_id: str, questions: list[str]) -> list[str | None]:
    deadline = time.monotonic() + 5
    while True:
        turns = await line.store.turns(call_id)
        intents = [t.get("intent") for t in turns if t.get("kind") == "answer" and t.get("after") == "speech"]
        if len(intents) >= len(questions) or time.monotonic() > deadline:
            return intents
        await asyncio.sleep(0.2)


# --- the flood ---
WS_KINDS = {  # what each kind of bad caller sends, and the close codes it may get (besides 1013 full)
    "no token": (None, {1008}),
    "garbage json": ("\x00{{ not json", {1007}),
    "binary to twilio": (b"\x00\x01\x02\x03", {1003}),
    "rate 44100": (json.dumps({"sampleRate": 44100, "callId": "flood"}), {1003}),
    "binary first": (b"\xff" * 320, {1002}),
    "too big": ("x" * (70 * 1024), {1009}),
    "silent": (None, {1002}),  # never sends its start message: closed after START_TIMEOUT_S
    "wrong path": (None, {"http 404"}),
}


async def ws_attempt(line: FloodLine, kind: str) -> int | str | None:
    payload, _ = WS_KINDS[kind]
    path = {"binary to twilio": "/twilio", "garbage json": "/twilio", "wrong path": "/nowhere"}.get(kind, "/pcm")
    url = f"{line.ws_url}{path}" + ("" if kind == "no token" else f"?token={TOKEN}")
    try:
        async with connect(url, open_timeout=10, close_timeout=2, max_size=None) as ws:
            if payload is not None:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(payload)
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(START_TIMEOUT_S + 5):
                    async for _ in ws:
                        pass
            return ws.close_code
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except (OSError, TimeoutError) as exc:
        return f"no connection: {exc}"


def sip_datagrams(n: int, me: int) -> list[tuple[str, bytes]]:
    """Bogus SIP: malformed requests (400), INVITEs without an offer or with no G.711 (488), a BYE of no dialog
    (481), and what nothing can answer: bytes that are no SIP, and responses to nothing."""
    out = []
    for i in range(n):
        head = (
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKflood{i}-{time.monotonic_ns()}\r\n"
            f"From: <sip:flood@127.0.0.1>;tag=f{i}\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: flood-{i}-{me}\r\n"
        )
        kind = ["400", "488", "488", "481", "silent", "silent"][i % 6]
        if kind == "400":
            data = f"INVITE sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: x INVITE\r\nContent-Length: 0\r\n\r\n"
        elif kind == "488" and i % 2:
            data = f"INVITE sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        elif kind == "488":
            sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n"
            data = (
                f"INVITE sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
            )
        elif kind == "481":
            data = f"BYE sip:12333@127.0.0.1 SIP/2.0\r\n{head}CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        elif i % 2:
            data = os.urandom(200).decode("latin-1")
        else:
            data = f"SIP/2.0 200 OK\r\n{head}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        out.append((kind, data.encode("latin-1")))
    return out


@dataclass
class FloodReport:
    ws: Counter
    sip: Counter
    waves: int = 0


async def flood(line: FloodLine, stop: asyncio.Event, report: FloodReport) -> None:
    """A wave a second until `stop`: FLOOD WebSocket attempts and FLOOD SIP datagrams, all at once."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    me = sock.getsockname()[1]
    kinds = list(WS_KINDS)
    attempts: list[asyncio.Task] = []

    async def sip_wave() -> None:
        sent = sip_datagrams(FLOOD, me)
        for _, data in sent:
            await loop.sock_sendto(sock, data, line.sip)
        expected = Counter(kind for kind, _ in sent if kind != "silent")
        got: Counter = Counter()
        try:
            async with asyncio.timeout(3):
                while sum(got.values()) < sum(expected.values()):
                    answer = await loop.sock_recv(sock, 65536)
                    got[answer.split(b"\r\n", 1)[0].split(b" ")[1].decode()] += 1
        except TimeoutError:
            pass
        report.sip.update(got)
        for status, n in expected.items():
            assert got[status] == n, f"SIP: {n} bogus requests expected {status}, got {dict(got)}"

    try:
        while not stop.is_set():
            report.waves += 1
            # the kinds in another order each wave: the first few of a wave take the free places
            order = [kinds[(i + report.waves) % len(kinds)] for i in range(FLOOD)]
            wave = [asyncio.create_task(ws_attempt(line, kind)) for kind in order]
            attempts += [asyncio.create_task(_tally(report, kind, t)) for kind, t in zip(order, wave, strict=True)]
            await sip_wave()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
        await asyncio.gather(*attempts)
    finally:
        sock.close()


async def _tally(report: FloodReport, kind: str, attempt: asyncio.Task) -> None:
    code = await attempt
    allowed = WS_KINDS[kind][1] | ({1013} if kind not in ("no token", "wrong path") else set())
    report.ws[(kind, code)] += 1
    assert code in allowed, f"WebSocket flood, {kind}: closed with {code!r}, expected one of {allowed}"


# --- the test ---
async def test_a_flood_of_bad_callers_leaves_the_real_calls_alone(
    line: FloodLine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "START_TIMEOUT_S", START_TIMEOUT_S)
    await real_calls(line)  # warm-up: Whisper, Rasa and the synthesiser's cache, not measured
    quiet = await real_calls(line)

    stop, report = asyncio.Event(), FloodReport(Counter(), Counter())
    calls = asyncio.create_task(real_calls(line))
    async with asyncio.timeout(10):
        while len(line.gateway.switchboard.calls) < len(QUESTIONS):  # both real calls are in: now the flood
            await asyncio.sleep(0.02)
    flooding = asyncio.create_task(flood(line, stop, report))
    try:
        flooded = await calls
    finally:
        stop.set()
        await flooding
    print(f"\nflood: {report.waves} waves, WebSocket {dict(report.ws)}, SIP {dict(report.sip)}")

    quiet_gaps = [g for _, _, gaps in quiet for g in gaps]
    flooded_gaps = [g for _, _, gaps in flooded for g in gaps]
    print(f"turn gap ms, quiet {quiet_gaps}, flooded {flooded_gaps}")
    for caller, questions, _ in quiet + flooded:
        assert await understood(line, caller.call_id, questions) == questions, caller.call_id
    assert statistics.median(flooded_gaps) <= 2 * statistics.median(quiet_gaps), (quiet_gaps, flooded_gaps)
    assert report.waves >= 2 and sum(report.ws.values()) == report.waves * FLOOD
    board = line.gateway.switchboard
    async with asyncio.timeout(10):
        while board.calls or board.held:  # the real calls close just after their callers hang up
            await asyncio.sleep(0.1)
