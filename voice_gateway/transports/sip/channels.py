"""The wire under SIP: a UDP socket, or one TCP connection (messages framed by Content-Length)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, cast

from voice_gateway.transports.sip.message import MAX_MESSAGE_BYTES, BadRequest

log = logging.getLogger("hotline.sip")


class Channel:
    """Where a message came from and how to answer it: a UDP socket, or one TCP connection."""

    transport_name = "UDP"
    reliable = False

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        raise NotImplementedError


class UdpChannel(Channel, asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[bytes, tuple[str, int], Channel], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self.on_message(data, (str(addr[0]), int(addr[1])), self)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)


class TcpChannel(Channel):
    transport_name = "TCP"
    reliable = True

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


async def read_tcp_message(reader: asyncio.StreamReader) -> bytes | None:
    """One message from a TCP stream, framed by Content-Length; None at the end of the stream."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        try:
            line = await reader.readline()
        except ValueError:  # a line longer than the reader's limit (64 KiB): asyncio's LimitOverrunError
            raise BadRequest("Headers too long") from None
        if not line:
            return None
        if head == b"" and line in (b"\r\n", b"\n"):
            continue  # keep-alive CRLFs between messages
        head += line
        if len(head) > MAX_MESSAGE_BYTES:
            raise BadRequest("Headers too long")
    match = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", head, re.IGNORECASE | re.MULTILINE)
    length = int(match.group(1)) if match else 0
    if length > MAX_MESSAGE_BYTES:
        raise BadRequest("Body too long")
    return head + (await reader.readexactly(length) if length else b"")
