"""Serving the consoles inside the gateway process: uvicorn on its own port, in the gateway's event loop.

    async with serve_console(app, settings.gateway.console_host, settings.gateway.console_port) as port:
        ...  # the consoles answer on http://host:port/ until the block ends

The socket is bound here (port 0: a free one), so a port in use is an OSError at the `async with`, not a
SystemExit from inside uvicorn. The gateway keeps its signal handlers: uvicorn's are not installed. On exit the
live event streams are told to end, uvicorn stops accepting and finishes the requests in flight (at most
`SHUTDOWN_S`, then they are cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger("hotline.console")

SHUTDOWN_S = 3.0
START_S = 10.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process it runs in owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serve_console(app: Starlette, host: str, port: int) -> AsyncIterator[int]:
    """Serve `app` on host:port (0: a free port) while the block runs; yields the bound port."""
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_S,
        proxy_headers=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="console-http")
    try:
        async with asyncio.timeout(START_S):
            while not server.started:
                if task.done():
                    await task  # raises what stopped it
                    raise RuntimeError("the console server stopped while starting")
                await asyncio.sleep(0.02)
        log.info("consoles on http://%s:%d/", host, bound)
        yield bound
    finally:
        closing = getattr(app.state, "closing", None)
        if closing is not None:
            closing.set()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_S + 2)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            sock.close()
