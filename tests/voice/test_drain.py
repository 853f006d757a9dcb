"""SIGTERM drains a real gateway process: no new calls (readiness 503, WebSocket 1013, SIP 503 with Retry-After),
the call in progress carries on until the drain limit, then hears a goodbye and is hung up, and the process exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.voice.conftest import first
from voice_gateway.config import Settings
from voice_gateway.stack import Stack, free_port, free_udp_port, gateway_process
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn

DRAIN_S = 8.0


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _sip_options(port: int) -> str:
    """The status line a SIP OPTIONS probe gets (what a dispatcher such as Kamailio sends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        me = sock.getsockname()[1]
        probe = (
            f"OPTIONS sip:12333@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKdrain1\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: drain-probe\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(probe.encode(), ("127.0.0.1", port))
        return sock.recv(4096).split(b"\r\n")[0].decode()


async def test_sigterm_drains_the_calls_then_says_goodbye_and_exits(
    stack: Stack, speech_models_installed: None
) -> None:
    port, sip_port, token = free_port(), free_udp_port(), "drain-token"
    process = gateway_process(
        Settings.from_env(), stack.redis_url, stack.rasa_url, port, token, console_port=free_port()
    )
    process.env = {
        **(process.env or {}),
        "HOTLINE_ASR": "whisper",
        "HOTLINE_SIP_PORT": str(sip_port),
        "HOTLINE_DRAIN_S": str(DRAIN_S),
    }
    process.start()
    try:
        assert _get(f"http://127.0.0.1:{port}/readyz") == (200, {"ready": True, "why": []})
        assert _sip_options(sip_port).endswith("200 OK")
        caller = SimulatedCaller(f"ws://127.0.0.1:{port}/twilio?token={token}")
        turns = [Turn(wait_s=2.0), Turn(wav=first("intent", "retirement_age")), Turn(wait_s=DRAIN_S + 8)]
        call = asyncio.create_task(caller.run(turns))
        while not caller.heard:  # the greeting has begun: the call is in progress
            await asyncio.sleep(0.05)
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        drained_at = time.monotonic()
        await asyncio.sleep(0.3)
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and "draining" in body["why"]
        assert _get(f"http://127.0.0.1:{port}/healthz")[1]["status"] == "draining"
        with pytest.raises(ConnectionClosed) as refused:
            async with connect(f"ws://127.0.0.1:{port}/twilio?token={token}") as ws:
                await ws.recv()
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        status_line = _sip_options(sip_port)
        assert status_line.startswith("SIP/2.0 503"), status_line
        report = await call
        ended_at = time.monotonic()
        asked = report.turns[1]
        assert asked.agent_audio_s > 1.0, "the call in progress was still answered while draining"
        assert report.ended_by == "hangup: gateway_stopping", report.ended_by
        assert ended_at - drained_at > DRAIN_S, "it was not cut before the drain limit"
        assert ended_at - drained_at < DRAIN_S + 12, "the goodbye (about 6 s) ended it, not the last-resort hang-up"
        record = redis.Redis.from_url(stack.redis_url).hgetall(f"hotline:call:{caller.call_id}")
        assert record[b"reason"] == b"gateway_stopping" and b"handoff" not in record, record
        assert caller._last_agent_audio > drained_at + DRAIN_S + 2.0, "the goodbye was heard after the drain limit"
        deadline = time.monotonic() + 15
        while process.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not process.alive() and process.proc.returncode == 0
    finally:
        process.stop()
