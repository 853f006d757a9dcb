"""A marked turn's audio: the caller's side of the call recording, cut around the turn.

Only calls that were recorded have it: the hotline records when the operator turns recording on, and then every
call opens with the consent notice (recorder.py). The gateway writes each heard turn's span in wall-clock
seconds (`spoke` in the call's turns); the recording's header has its own start. The snippet is made in memory
for the trainer who asked and never written to disk in clear.
"""

from __future__ import annotations

import difflib
import io
import wave
from pathlib import Path
from typing import Any

from voice_gateway.recorder import RecordingError, decrypt
from voice_gateway.training.review import normalised

MARGIN_S = 0.3


def heard_span(turns: list[dict[str, Any]], text: str, index: int) -> tuple[float, float] | None:
    """The span of the heard turn that best matches a caller turn: by text, then by order (index: 0-based
    among the call's spoken turns)."""
    heard = [t for t in turns if t.get("kind") == "heard" and t.get("caller") and t.get("spoke")]
    if not heard:
        return None
    wanted = normalised(text)

    def score(pair: tuple[int, dict[str, Any]]) -> tuple[float, int]:
        position, turn = pair
        ratio = difflib.SequenceMatcher(None, normalised(str(turn["caller"])), wanted).ratio()
        return ratio, -abs(position - index)

    _, best = max(enumerate(heard), key=score)
    start, end = best["spoke"]
    return float(start), float(end)


def snippet_wav(recording: Path, key: bytes, span: tuple[float, float]) -> bytes | None:
    """The caller's channel of `recording` between the span's ends (Unix seconds) as a mono WAV; None when
    the file is unreadable or the span lies outside it."""
    try:
        audio = decrypt(recording, key)
    except (OSError, RecordingError, ValueError):
        return None
    started = float(audio.meta.get("started") or 0.0)
    first = max(0, round((span[0] - started - MARGIN_S) * audio.rate))
    last = min(len(audio.caller), round((span[1] - started + MARGIN_S) * audio.rate))
    if last - first < audio.rate // 10:
        return None
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.rate)
        w.writeframes(audio.caller[first:last].tobytes())
    return out.getvalue()
