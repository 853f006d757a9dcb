"""One SIP call as the rest of the gateway sees it: a caller leg (voice_gateway.calls.CallerLeg).

Its dialog's phases live in `InviteDialog` (dialog.py), and SipServer does what the dialog says; this class
holds what the wire needs per call and is where the caller's audio and keys reach the call. The call's bridge
paces its audio: one RTP packet per 20 ms tick, silence when nobody speaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from aiosipua.dialog import Dialog
from aiosipua.message import SipRequest

from hotline_domain.contract import Handoff
from voice_gateway.bridge import Pacing
from voice_gateway.flow import EndReason
from voice_gateway.transports.sip.channels import Channel
from voice_gateway.transports.sip.dialog import HangUp, InviteDialog, TransferAccepted
from voice_gateway.transports.sip.media import RtpStream
from voice_gateway.transports.sip.sdp import MediaOffer

if TYPE_CHECKING:
    from voice_gateway.calls import Call
    from voice_gateway.transports.sip.server import SipServer

log = logging.getLogger("hotline.sip")
DIALOG_ENDS = {  # how a dialog's end, as the state machine names it, ends the call
    "caller_hung_up": EndReason.CALLER_HUNG_UP,
    "caller_cancelled": EndReason.CALLER_CANCELLED,
    "transferred": EndReason.TRANSFERRED,
    "no_ack": EndReason.CONNECTION_LOST,
    "internal_error": EndReason.INTERNAL_ERROR,
    "gateway_stopping": EndReason.GATEWAY_STOPPING,
}


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
    call: Call | None = None  # once the call has started
    media_on: bool = False  # answered: RTP flows
    end_reason: EndReason = EndReason.CALLER_HUNG_UP
    last_response: bytes = b""  # the INVITE's latest answer, for retransmissions
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None  # the dialog's next Tick
    tasks: list[asyncio.Task] = field(default_factory=list)

    wire: ClassVar[str] = "sip"
    pacing: ClassVar[Pacing] = Pacing(lead_frames=0, send_silence=True)  # RTP: a packet every 20 ms, on time

    # --- from the caller to the call ---
    def heard(self, pcm: bytes) -> None:
        if self.call is not None:
            self.call.audio(pcm)

    def key(self, key: str, via: str) -> None:
        if self.call is not None:
            log.info("%s: key from %s", self.name, via)
            self.call.key(key)

    def ended(self, reason: str) -> None:
        """The dialog is over (either side hung up, or it failed): the call ends with that reason."""
        self.end_reason = DIALOG_ENDS.get(reason, EndReason.CONNECTION_LOST)

    # --- the caller leg ---
    async def send_audio(self, pcm: bytes | None) -> None:
        if self.media is None or not self.media_on:
            return
        if pcm is None:
            self.media.send_silence()
        else:
            self.media.send_frame(pcm)
        self.media.check_inbound(time.monotonic())  # a caller silent on the wire: time still passes

    async def clear(self) -> None:
        pass  # RTP plays what arrives: nothing is buffered ahead at the far end (the bridge sends on time)

    async def hang_up(self, reason: EndReason, detail: str = "") -> None:
        """BYE (if the call was answered), and back once it is answered or given up."""
        self.server.handle(self, HangUp(detail or reason.value, time.monotonic()))
        await self.done.wait()

    async def transfer(self, handoff: Handoff) -> bool:
        """Blind transfer (REFER) to the agent URI configured for the handoff's queue; False if none is."""
        agents = self.server.settings.agents
        target = agents.get(handoff.queue.value) or agents.get("default")
        if not target or not self.dialog.in_call:
            return False
        status = await self.server.request(
            self, "REFER", {"Refer-To": f"<{target}>", "Referred-By": f"<{self.sip_dialog.local_uri}>"}
        )
        log.info("%s: REFER to queue %s answered %s", self.name, handoff.queue.value, status)
        if status is None or not 200 <= status < 300:
            return False
        self.server.handle(self, TransferAccepted(target, time.monotonic()))
        return True
