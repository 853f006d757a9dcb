"""serve_console: uvicorn in this event loop on a free port, answering, and stopping cleanly with a stream open."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx2
import pytest

from tests.console.conftest import PASSWORD
from tests.console.fakes import FakeBackend
from voice_gateway.console import make_app, serve_console


async def test_serve_console_on_a_free_port_and_stop_with_a_stream_open(settings) -> None:
    backend = FakeBackend()
    backend.scripted = [("1-0", "queue", {"waiting": 0})]
    backend.follow = True  # the stream stays open until the console closes it
    app = make_app(settings, backend)
    first_event = asyncio.Event()
    received: list[str] = []

    async def watch(client: httpx2.AsyncClient) -> None:
        async with client.stream("GET", "/api/events") as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                received.append(line)
                if line.startswith("data:"):
                    first_event.set()

    async with serve_console(app, "127.0.0.1", 0) as port:
        assert port > 0
        client = httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        assert (await client.get("/login")).status_code == 200
        signed_in = await client.post(
            "/login",
            json={"username": "agent1", "password": PASSWORD},
            headers={"X-CSRFToken": client.cookies["csrftoken"], "Accept": "application/json"},
        )
        assert signed_in.status_code == 200
        watching = asyncio.create_task(watch(client))
        await asyncio.wait_for(first_event.wait(), 5)
        stopping = time.monotonic()
    stopped = time.monotonic() - stopping
    await asyncio.wait_for(watching, 2)  # the stream ended: the server finished it, not a timeout
    await client.aclose()
    assert received[:3] == ["id: 1-0", "event: queue", 'data: {"waiting":0}']
    assert stopped < 1.5, stopped  # the open stream did not hold the shutdown up
    assert backend.streams_closed == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_a_port_in_use_is_an_oserror_at_start(settings) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError):
            async with serve_console(make_app(settings, FakeBackend()), "127.0.0.1", taken.getsockname()[1]):
                pass
    finally:
        taken.close()
