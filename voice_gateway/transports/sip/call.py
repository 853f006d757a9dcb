"""One SIP call as the rest of the gateway sees it: the leg CallSession talks back to (the CallTransport).

Its dialog's phases live in `InviteDialog` (dialog.py), and SipServer does what the dialog says; this class
holds what the wire needs per call and is where the caller's audio and keys reach the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosipua.dialog import Dialog
from aiosipua.message import SipRequest

from voice_gateway.transports.sip.channels import Channel
from voice_gateway.transports.sip.dialog import HangUp, InviteDialog, TransferAccepted
from voice_gateway.transports.sip.media import RtpStream
from voice_gateway.transports.sip.sdp import MediaOffer

if TYPE_CHECKING:
    from voice_gateway.transports.sip.server import SipServer

log = logging.getLogger("hotline.sip")


@dataclass
class SipCall:
    """One SIP call: its dialog's state, the way back to the caller, and the leg CallSession uses (CallTransport)."""

    server: SipServer
    invite: SipRequest
    sip_dialog: Dialog  # aiosipua's record (tags, CSeq, route set): builds our in-dialog requests
    dialog: InviteDialog
    addr: tuple[str, int]
    channel: Channel
    offer: MediaOffer
    name: str
    sample_rate: int = 8000
    media: RtpStream | None = None
    session: Any = None
    last_response: bytes = b""  # the INVITE's latest answer, for retransmissions
    done: asyncio.Event = field(default_factory=asyncio.Event)
    clock: asyncio.Task | None = None  # the RTP stream's 20 ms clock
    timer: asyncio.TimerHandle | None = None  # the dialog's next Tick
    tasks: list[asyncio.Task] = field(default_factory=list)

    # --- from the caller to the session ---
    def heard(self, pcm: bytes) -> None:
        if self.session is not None:
            self.session.audio(pcm)

    def key(self, key: str, via: str) -> None:
        if self.session is not None:
            log.info("%s: key from %s", self.name, via)
            self.session.key(key)

    def ended(self, reason: str) -> None:
        """The dialog is over: the session hears why (it may be what hung up)."""
        if self.session is not None:
            self.server.spawn(self.session.close(reason))

    # --- CallTransport ---
    async def send_audio(self, pcm: bytes) -> None:
        if self.media is not None:
            self.media.out.append(pcm)

    async def clear(self) -> None:
        if self.media is not None:
            self.media.out.clear()

    async def hang_up(self, reason: str) -> None:
        """BYE (if the call was answered), and back once it is answered or given up."""
        self.server.handle(self, HangUp(reason, time.monotonic()))
        await self.done.wait()

    async def transfer(self, payload: dict) -> bool:
        """Blind transfer (REFER) to the agent URI configured for the payload's queue; False if none is."""
        agents = self.server.settings.agents
        target = agents.get(str(payload.get("queue") or "")) or agents.get("default")
        if not target or not self.dialog.in_call:
            return False
        status = await self.server.request(
            self, "REFER", {"Refer-To": f"<{target}>", "Referred-By": f"<{self.sip_dialog.local_uri}>"}
        )
        log.info("%s: REFER to queue %s answered %s", self.name, payload.get("queue"), status)
        if status is None or not 200 <= status < 300:
            return False
        self.server.handle(self, TransferAccepted(target, time.monotonic()))
        return True
