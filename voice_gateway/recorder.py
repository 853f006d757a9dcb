"""Recording a call to a stereo WAV: the caller on the left channel, the agent on the right, on one timeline.

Only when the operator turns it on (`HOTLINE_RECORDING=1`), and then every call starts with the consent notice,
which cannot be interrupted. Audio is placed by when it was heard: the caller's as it arrived, the agent's at the
moment each frame was due at the caller's ear (agent audio dropped by a barge-in `clear` within the last 100 ms
may still be in the file). Files are written with mode 0600: they hold callers' voices and what they said.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np


class CallRecorder:
    def __init__(self, path: Path, sample_rate: int, started: float) -> None:
        self.path = path
        self.rate = sample_rate
        self.started = started
        self._caller: list[tuple[float, bytes]] = []
        self._agent: list[tuple[float, bytes]] = []

    def caller(self, pcm: bytes, at: float) -> None:
        """Caller audio that arrived at `at` (monotonic seconds)."""
        self._caller.append((at, pcm))

    def agent(self, pcm: bytes, at: float) -> None:
        """Agent audio the caller hears from `at` on."""
        self._agent.append((at, pcm))

    def _track(self, pieces: list[tuple[float, bytes]], length: int) -> np.ndarray:
        track = np.zeros(length, dtype="<i2")
        cursor = 0  # a piece never overwrites the one before it (arrival times jitter)
        for at, pcm in pieces:
            samples = np.frombuffer(pcm, dtype="<i2")
            start = max(cursor, round((at - self.started) * self.rate))
            end = min(length, start + len(samples))
            track[start:end] = samples[: end - start]
            cursor = end
        return track

    def save(self) -> Path | None:
        """Write the WAV (blocking: run it in a thread); None when nothing was heard."""
        ends = [round((at - self.started) * self.rate) + len(pcm) // 2 for at, pcm in self._caller + self._agent]
        if not ends:
            return None
        length = max(ends) + self.rate  # room for pieces pushed later by the no-overlap rule
        stereo = np.stack([self._track(self._caller, length), self._track(self._agent, length)], axis=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(self.path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(np.ascontiguousarray(stereo).tobytes())
        os.chmod(self.path, 0o600)
        return self.path
