"""A Vosk utterance closed from one thread while another still feeds it (a caller hanging up mid-sentence):
the recognizer must not go back to the pool while in use (using one twice at once crashed libvosk: SIGSEGV)."""

from __future__ import annotations

import json
import threading
import time

from voice_gateway.asr import VoskUtterance


class SlowKaldi:
    """Stands in for a KaldiRecognizer: notes overlapping calls."""

    def __init__(self) -> None:
        self.busy = False
        self.overlaps = 0

    def _enter(self) -> None:
        if self.busy:
            self.overlaps += 1
        self.busy = True

    def AcceptWaveform(self, pcm: bytes) -> bool:
        self._enter()
        time.sleep(0.2)
        self.busy = False
        return False

    def PartialResult(self) -> str:
        return json.dumps({"partial": ""})

    def FinalResult(self) -> str:
        self._enter()
        self.busy = False
        return json.dumps({"text": ""})


class Pool:
    def __init__(self) -> None:
        self.returned: list[tuple[float, object]] = []

    def _give_back(self, rate: int, rec: object, uses: int) -> bool:
        self.returned.append((time.monotonic(), rec))
        return True


def test_closing_waits_for_the_audio_being_fed() -> None:
    kaldi, pool = SlowKaldi(), Pool()
    utterance = VoskUtterance(kaldi, 8000, pool)  # type: ignore[arg-type]
    feeding = threading.Thread(target=utterance.accept, args=(b"\x00" * 320,))
    feeding.start()
    time.sleep(0.05)  # accept() is inside Kaldi now
    started = time.monotonic()
    utterance.close()
    feeding.join()
    assert kaldi.overlaps == 0
    assert len(pool.returned) == 1 and pool.returned[0][0] - started > 0.1, "pooled only after accept() returned"
