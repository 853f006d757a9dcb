"""SIP settings: one plain dataclass, and the only place that reads the HOTLINE_SIP_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOW = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def parse_allow(text: str) -> list[Network]:
    """HOTLINE_SIP_ALLOW: comma-separated CIDRs (or single addresses); "any" admits everyone."""
    if text.strip().lower() == "any":
        return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    try:
        return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"HOTLINE_SIP_ALLOW: {exc}") from None


def parse_agents(text: str) -> dict[str, str]:
    """HOTLINE_SIP_AGENTS: `queue=sip:uri,...`; the queue `default` catches the queues not listed."""
    agents = {}
    for part in text.split(","):
        if not part.strip():
            continue
        queue, sep, uri = part.partition("=")
        uri = uri.strip()
        if not sep or not queue.strip() or not re.match(r"^sips?:\S+$", uri):
            raise ValueError(f"HOTLINE_SIP_AGENTS: expected queue=sip:user@host, got {part.strip()!r}")
        agents[queue.strip()] = uri
    return agents


@dataclass
class SipSettings:
    host: str = "127.0.0.1"
    port: int = 5060
    tcp: bool = True
    allow: list[Network] = field(default_factory=lambda: parse_allow(DEFAULT_ALLOW))
    user: str = ""
    password: str = ""
    agents: dict[str, str] = field(default_factory=dict)
    public_ip: str = ""  # advertised in SDP and Contact when the gateway sits behind NAT
    rtp_latch: bool = False  # accept RTP from the signalling address instead of the SDP one (callers behind NAT)

    @classmethod
    def from_env(cls, host: str, port: int) -> SipSettings:
        env = os.environ.get
        return cls(
            host=host,
            port=port,
            tcp=env("HOTLINE_SIP_TCP", "1") != "0",
            allow=parse_allow(env("HOTLINE_SIP_ALLOW", DEFAULT_ALLOW)),
            user=env("HOTLINE_SIP_USER", ""),
            password=env("HOTLINE_SIP_PASSWORD", ""),
            agents=parse_agents(env("HOTLINE_SIP_AGENTS", "")),
            public_ip=env("HOTLINE_SIP_PUBLIC_IP", ""),
            rtp_latch=env("HOTLINE_SIP_RTP_LATCH", "") == "1",
        )

    def admits(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allow)
