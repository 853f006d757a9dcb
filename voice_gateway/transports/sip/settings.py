"""SIP settings: one plain dataclass, built from the gateway's settings (which read HOTLINE_SIP_* once)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voice_gateway.config import GatewaySettings

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


def parse_outbound(text: str) -> str:
    """HOTLINE_SIP_OUTBOUND: where the calls we place go, a sip: URI with `{number}` in it ("" : no dialling out)."""
    text = text.strip()
    if text and (not re.match(r"^sip:\S*\{number\}\S*@\S+$", text) or text.count("{") != 1 or text.count("}") != 1):
        raise ValueError(f"HOTLINE_SIP_OUTBOUND: expected sip:{{number}}@host[:port], got {text!r}")
    return text


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
    outbound: str = ""  # calls we place (callbacks): a URI template with {number}, "sip:{number}@pbx:5060"; "": none
    outbound_from: str = "12333"  # the user part of our From when we place a call: the number the callee sees

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> SipSettings:
        """From the HOTLINE_SIP_* variables the gateway's settings read: HOTLINE_SIP_TCP, _ALLOW, _USER,
        _PASSWORD, _AGENTS, _PUBLIC_IP, _RTP_LATCH, _OUTBOUND, _OUTBOUND_FROM (docs/sip.md)."""
        env = gateway.sip.get
        return cls(
            host=gateway.sip_host or gateway.host,
            port=gateway.sip_port,
            tcp=env("HOTLINE_SIP_TCP", "1") != "0",
            allow=parse_allow(env("HOTLINE_SIP_ALLOW", DEFAULT_ALLOW)),
            user=env("HOTLINE_SIP_USER", ""),
            password=env("HOTLINE_SIP_PASSWORD", ""),
            agents=parse_agents(env("HOTLINE_SIP_AGENTS", "")),
            public_ip=env("HOTLINE_SIP_PUBLIC_IP", ""),
            rtp_latch=env("HOTLINE_SIP_RTP_LATCH", "") == "1",
            outbound=parse_outbound(env("HOTLINE_SIP_OUTBOUND", "")),
            outbound_from=env("HOTLINE_SIP_OUTBOUND_FROM", "12333"),
        )

    def admits(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allow)
