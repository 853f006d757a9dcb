"""What a caller waiting for a person hears between the announcements: hold music made by the product itself.

`HoldMusic` is a soft, slow arpeggio (a major chord, one note at a time, each with a gentle attack and a long
fade, then a rest), made with numpy at the call's own rate once and played in a loop, 20 ms at a time, quiet
enough (about -24 dBFS at its peaks) that the announcements stand out. `Hold` is one call's place in the hold:
which step of it the caller is at (waiting, keying a callback number, confirming it, being said goodbye to) and
the times the flow needs; the flow (voice_gateway/flow.py) drives it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from voice_gateway.audio import frame_bytes

NOTES_HZ = (523.25, 659.25, 783.99, 659.25)  # C5 E5 G5 E5
NOTE_S = 0.45
REST_S = 1.2
LEVEL = 2000.0  # of 32767


def hold_pattern(rate: int) -> np.ndarray:
    """One loop of the hold music at `rate`, 16-bit samples."""
    n = int(NOTE_S * rate)
    t = np.arange(n) / rate
    envelope = np.minimum(1.0, t / 0.03) * np.exp(-t * 4.0)  # a soft attack, then a bell-like fade
    notes = []
    for hz in NOTES_HZ:
        tone = np.sin(2 * np.pi * hz * t) + 0.25 * np.sin(2 * np.pi * hz * 2 * t)  # a little warmth
        notes.append(LEVEL / 1.25 * envelope * tone)
    loop = np.concatenate([*notes, np.zeros(int(REST_S * rate))])
    return loop.astype("<i2")


class HoldMusic:
    """The hold music for one call, played frame by frame in a loop."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._loop = hold_pattern(rate)
        self._size = frame_bytes(rate) // 2
        self._at = 0

    def next_frame(self) -> bytes:
        end = self._at + self._size
        if end <= len(self._loop):
            frame = self._loop[self._at : end]
        else:
            frame = np.concatenate([self._loop[self._at :], self._loop[: end - len(self._loop)]])
        self._at = end % len(self._loop)
        return frame.tobytes()


class HoldPhase(enum.Enum):
    WAITING = "waiting"  # music and announcements; 1 takes the callback offer when it is open
    NUMBER = "number"  # keying the callback number, ended with #
    CONFIRM = "confirm"  # 1: that number, 2: key it again
    CLOSING = "closing"  # the callback is being registered, then a goodbye


@dataclass
class Hold:
    """One call's time on hold (monotonic seconds)."""

    since: float
    phase: HoldPhase = HoldPhase.WAITING
    announced_at: float = 0.0
    checking: bool = False  # a CheckQueue is out, its QueueStatus not back yet
    offer_open: bool = False  # the callback offer was made: 1 takes it
    can_call_back: bool = False
    limit_at: float | None = None  # the waiting limit was reached (a last offer, then a goodbye)
    keyed_at: float = 0.0  # the last key of a callback number, or when it was asked for
    number: str = ""  # in memory only, until it is registered (sealed) or dropped
