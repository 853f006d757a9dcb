"""Kamailio in front of several voice gateways: one public SIP port, calls spread by calls in progress.

The configuration is the project's `deploy/kamailio/kamailio.cfg` (Debian's kamailio package); what changes
from one site to the next (where it listens, which gateways, how often it probes them) is given with `-A` defines,
and the gateways are a dispatcher list written next to the hotline's other run files. `hotline up --gateways N
--sip-proxy` runs it; docs/scale-out.md says how it behaves when a gateway drains or dies.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from voice_gateway.config import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "deploy" / "kamailio" / "kamailio.cfg"
DISPATCHER_SET = 1


def dispatcher_list(gateways: Sequence[tuple[str, int]]) -> str:
    """Kamailio's dispatcher.list: one destination per gateway, each with the unique id algorithm 10 counts calls
    against, and no upper limit (a full gateway answers 503 itself and the call goes to the next)."""
    lines = ["# set destination flags priority attributes: written by hotline up --sip-proxy"]
    lines += [
        f"{DISPATCHER_SET} sip:{host}:{port} 0 0 duid=gw{index};maxload=0"
        for index, (host, port) in enumerate(gateways, start=1)
    ]
    return "\n".join(lines) + "\n"


def options_answered(host: str, port: int, timeout: float = 0.5) -> bool:
    """Does a SIP server answer an OPTIONS on UDP host:port with 200? (the proxy's readiness)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        tag = secrets.token_hex(6)
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{host}>;tag={tag}\r\nTo: <sip:{host}:{port}>\r\nCall-ID: {tag}@probe\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            sock.sendto(request.encode(), (host, port))
            return sock.recv(65535).startswith(b"SIP/2.0 200")
    return False


def kamailio_args(
    binary: str, run: Path, port: int, gateways: Sequence[tuple[str, int]], ping_s: int, host: str
) -> list[str]:
    """Kamailio's command line, with the dispatcher list for `gateways` (host, SIP port) written into `run`."""
    listing = run / f"dispatcher-{port}.list"
    listing.write_text(dispatcher_list(gateways), encoding="ascii")
    defines = [f"LISTEN=udp:{host}:{port}", f'DISPATCHER_LIST="{listing}"', f"PING_S={ping_s}"]
    return [binary, "-DD", "-E", "-f", str(CONFIG), "-Y", str(run), *(a for d in defines for a in ("-A", d))]


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
